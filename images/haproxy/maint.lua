-- gemctl front door, TCP maintenance answer: one line "MAINT <message>",
-- then close. The frontend sets txn.message from /gemctl/state.map
-- (haproxy.cfg.example).
core.register_service("maint_line", "tcp", function(applet)
	applet:send("MAINT " .. (applet:get_var("txn.message") or "") .. "\n")
end)
