//! The front door (`front:` in the spec): one long-lived HAProxy container,
//! `<project>-front`, owns the public ports and forwards each to the live
//! generation's app over the private network. What it forwards to is decided here,
//! purely: the two server slots of every backend (`blue`, `green`) and which
//! generation's app each names ([`FrontState`]), and the configuration HAProxy is
//! started from ([`render`]). The executor (`execute::front`) writes both under
//! `<storage>/.gemctl/front/` and drives the running front through HAProxy's
//! runtime API, a unix socket in that same directory, never published.
//!
//! How a cut-over holds instead of refusing: before the live app stops, the front
//! is told to hold — its slot goes to maintenance and the third server of every
//! backend, `hold`, an address where nothing listens, becomes the only one ready.
//! Every try is refused and HAProxy retries once a second, each time
//! redispatching, for `hold`. The switch makes the new app's slot ready and puts
//! `hold` in maintenance, and the next retry of every held request lands on the new
//! app. (Holding on the stopped app's own slot would not do: Docker may give its
//! address to the next container made, and held requests would go there.)
//! After `hold`, an HTTP request gets `503.http` (Retry-After and a short page); a
//! TCP connection is closed. Measured with HAProxy 2.6 before this was built:
//! `images/haproxy/FINDINGS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desired::{self, Role};
use crate::observed::STATE_DIR;
use crate::spec::{FrontMode, FrontSpec, Spec};

/// The front's directory under `<storage>/.gemctl/`, mounted at [`MOUNT`].
pub const DIR: &str = "front";
/// Where the front container sees its directory.
pub const MOUNT: &str = "/gemctl";
/// The configuration file, in the front's directory.
pub const CONFIG_FILE: &str = "haproxy.cfg";
/// The answer after `hold`, a whole HTTP response, in the front's directory.
pub const PAGE_FILE: &str = "503.http";
/// The runtime API's socket, in the front's directory.
pub const SOCKET_FILE: &str = "admin.sock";
/// The record of which generation each slot names, in the front's directory.
pub const STATE_FILE: &str = "state.json";
/// HTTP ports answer this path with 200 whatever the app does, for a balancer in
/// front of the host.
pub const HEALTH_URI: &str = "/__gemctl/front";
/// The maintenance switch, message and Retry-After, read by the configuration's
/// rules (`map(…)`), in the front's directory; changed at runtime by `set map`.
pub const MAP_FILE: &str = "state.map";
/// The TCP maintenance answer (a Lua service), in the front's directory.
pub const LUA_FILE: &str = "maint.lua";
/// The HTTP maintenance answer's body (a HAProxy log-format file: the message is
/// read from the map at each request), in the front's directory.
pub const MAINT_PAGE_FILE: &str = "maint.lf";
/// The built-in page, for a spec without `front.page`.
pub const DEFAULT_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Temporarily \
unavailable</title><h1>Temporarily unavailable</h1><p>{{message}}</p>\n";
/// What a request held longer than `hold` is told.
const HELD_MESSAGE: &str = "A new release is being put in place. Please retry in a few seconds.";

/// The TCP maintenance answer: `front.line` with the message, then the connection
/// is closed.
pub fn lua(front: &FrontSpec) -> String {
    let (before, after) = front
        .line
        .split_once("{message}")
        .unwrap_or((front.line.as_str(), ""));
    format!(
        "-- Written by gemctl: the front's TCP maintenance answer, one line.\n\
         core.register_service(\"maint_line\", \"tcp\", function(applet)\n\
         \tapplet:send({} .. (applet:get_var(\"txn.message\") or \"\") .. {} .. \"\\n\")\n\
         end)\n",
        lua_string(before),
        lua_string(after)
    )
}

/// A Lua string literal of `text` (one line).
fn lua_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The spec's page, or the built-in one.
fn page_template(front: &FrontSpec) -> &str {
    front.page_html.as_deref().unwrap_or(DEFAULT_PAGE)
}

/// The maintenance answer's body as a log-format file: the page, its `%` kept
/// literal, `{{message}}` read from the map at each request.
pub fn maintenance_page(front: &FrontSpec) -> String {
    let map_file = format!("{MOUNT}/{MAP_FILE}");
    page_template(front)
        .replace('%', "%%")
        .replace("{{message}}", &format!("%[str(message),map({map_file},)]"))
}

/// The server of every backend that holds requests: while it is the only one
/// ready, each try is refused and retried, for `hold`.
pub const HOLD_SERVER: &str = "hold";
/// A retry of a held connection is one second apart.
const RETRY_EVERY_SECS: u64 = 1;

/// `<project>-front`.
pub fn container_name(spec: &Spec) -> String {
    format!("{}-front", spec.project)
}

/// `<storage>/.gemctl/front`.
pub fn dir(storage: &Path) -> PathBuf {
    storage.join(STATE_DIR).join(DIR)
}

/// One of the two server slots every backend of the front has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// The first slot.
    Blue,
    /// The second slot.
    Green,
}

impl Slot {
    /// The server's name in every backend.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
}

/// Which generation's app each slot names, and which slot takes traffic
/// (`<storage>/.gemctl/front/state.json`). The configuration is rendered from it,
/// so a front that restarts comes back forwarding where it was left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontState {
    /// The generation whose app the blue slot names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue: Option<u64>,
    /// The generation whose app the green slot names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green: Option<u64>,
    /// The slot that took traffic last; `None` before the first switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Slot>,
    /// Requests are held (no app takes them): from before the live app stops
    /// until the next switch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holding: bool,
    /// Set by `gemctl maintenance on`: every request gets the maintenance answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

/// What the front answers in maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Shown on the HTTP page and after `MAINT ` on TCP ports; one line.
    pub message: String,
    /// The `Retry-After` header, in seconds.
    pub retry_after_secs: u64,
    /// When it was switched on (RFC 3339 UTC).
    pub since: String,
}

impl FrontState {
    /// The generation whose app `slot` names.
    pub fn named(&self, slot: Slot) -> Option<u64> {
        match slot {
            Slot::Blue => self.blue,
            Slot::Green => self.green,
        }
    }

    /// The generation the front forwards to; `None` while it holds requests.
    pub fn live_generation(&self) -> Option<u64> {
        self.live
            .filter(|_| !self.holding)
            .and_then(|s| self.named(s))
    }

    /// The slot that takes traffic, unless requests are held.
    pub fn serving_slot(&self) -> Option<Slot> {
        self.live.filter(|_| !self.holding)
    }

    /// The state once the front holds requests instead of forwarding them.
    pub fn held(&self) -> FrontState {
        FrontState {
            holding: true,
            ..self.clone()
        }
    }

    /// The slot that names generation `g`, if one does.
    pub fn slot_of(&self, g: u64) -> Option<Slot> {
        [Slot::Blue, Slot::Green]
            .into_iter()
            .find(|s| self.named(*s) == Some(g))
    }

    /// The slot generation `g` gets: the one naming it already, else the one that
    /// does not take traffic; and the state with it naming `g`.
    pub fn prepared(&self, g: u64) -> (Slot, FrontState) {
        if let Some(slot) = self.slot_of(g) {
            return (slot, self.clone());
        }
        let slot = self.live.map_or(Slot::Blue, Slot::other);
        let mut next = self.clone();
        match slot {
            Slot::Blue => next.blue = Some(g),
            Slot::Green => next.green = Some(g),
        }
        (slot, next)
    }

    /// The state once the front forwards to generation `g` (prepared first if no
    /// slot names it yet).
    pub fn switched(&self, g: u64) -> FrontState {
        let (slot, mut next) = self.prepared(g);
        next.live = Some(slot);
        next.holding = false;
        next
    }
}

/// The fingerprint of what the spec decides about the front container: a change
/// means it is made again (its public ports close for a moment).
pub fn spec_hash(front: &FrontSpec) -> String {
    let mut canonical = serde_json::to_string(front).expect("front spec serialises");
    // The page's text, not only its path: editing the page remakes the front.
    if let Some(page) = &front.page_html {
        canonical.push_str(page);
    }
    desired::fingerprint(canonical.as_bytes())
}

/// The labels of the front's container: this project's, role `front`, and the
/// fingerprint of the spec's `front:`.
pub fn labels(spec: &Spec, front: &FrontSpec) -> std::collections::BTreeMap<String, String> {
    [
        (crate::labels::PROJECT, spec.project.clone()),
        (crate::labels::ROLE, crate::labels::ROLE_FRONT.to_string()),
        (crate::labels::SPEC_HASH, spec_hash(front)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The backend of the front's port that forwards to the app's port `app_port`.
pub fn backend(app_port: u16) -> String {
    format!("app_{app_port}")
}

/// Every backend's name, in the spec's order.
pub fn backends(front: &FrontSpec) -> Vec<String> {
    front
        .ports
        .iter()
        .map(|p| backend(p.port.container_port))
        .collect()
}

/// HAProxy's configuration for the spec's front with the slots as `state` says.
/// The front listens on the app's port number inside its container; Docker
/// publishes it on the spec's host address and port.
pub fn render(spec: &Spec, front: &FrontSpec, state: &FrontState) -> String {
    // Every try at the hold server is refused at once and retried a second later:
    // `hold` seconds are that many retries.
    let retries = front.hold.get().as_secs().div_ceil(RETRY_EVERY_SECS).max(1);
    let mut cfg = format!(
        "# Written by gemctl from the spec's `front:` section and {STATE_FILE}; \
         rewritten at every switch.\n\
         global\n\
         \tlog stdout format raw local0\n\
         \tstats socket {MOUNT}/{SOCKET_FILE} mode 600 level admin\n\
         {lua}\
         \n\
         # Docker's DNS: a slot follows its container's address. A stopped container's\n\
         # name does not resolve; the long `hold nx` keeps the slot's last address so\n\
         # that requests keep being held rather than refused at once.\n\
         resolvers docker\n\
         \tnameserver dns 127.0.0.11:53\n\
         \t# Asked often: a new app's address is known within a fraction of a second,\n\
         \t# and the switch in the freeze waits for it.\n\
         \ttimeout resolve 200ms\n\
         \thold valid 200ms\n\
         \thold nx 3600s\n\
         \thold obsolete 3600s\n\
         \n\
         defaults\n\
         \tlog global\n\
         \ttimeout connect {RETRY_EVERY_SECS}s\n\
         \ttimeout client 60s\n\
         \ttimeout server 60s\n\
         \t# The hold: about one try a second for `hold` ({hold}), each redispatched.\n\
         \tretries {retries}\n\
         \toption redispatch 1\n\
         \t# No health checks: a checked slot would go down, and with no server up\n\
         \t# HAProxy answers at once instead of holding.\n\
         \tdefault-server init-addr last,libc,none resolvers docker\n",
        hold = humantime::format_duration(front.hold.get()),
        lua = if front.ports.iter().any(|p| p.mode == FrontMode::Tcp) {
            format!("\tlua-load {MOUNT}/{LUA_FILE}\n")
        } else {
            String::new()
        },
    );
    let map_file = format!("{MOUNT}/{MAP_FILE}");
    let in_maintenance = format!("{{ str(maint),map({map_file},off) -m str on }}");
    for port in &front.ports {
        let p = port.port.container_port;
        let mode = port.mode;
        let _ = write!(cfg, "\nfrontend {mode}_{p}\n\tmode {mode}\n\tbind :{p}\n");
        if mode == FrontMode::Http {
            // The health URI is answered before any rule: 200 in maintenance too.
            let _ = writeln!(
                cfg,
                "\toption httplog\n\tmonitor-uri {HEALTH_URI}\n\
                 \thttp-request return status 503 content-type \"text/html; charset=utf-8\" \
                 hdr Retry-After \"%[str(retry_after),map({map_file},30)]\" hdr Cache-Control no-store \
                 lf-file {MOUNT}/{MAINT_PAGE_FILE} if {in_maintenance}"
            );
        } else {
            let _ = writeln!(
                cfg,
                "\toption tcplog\n\
                 \ttcp-request content set-var(txn.message) str(message),map({map_file},)\n\
                 \ttcp-request content use-service lua.maint_line if {in_maintenance}"
            );
        }
        let _ = write!(
            cfg,
            "\tdefault_backend {be}\n\nbackend {be}\n\tmode {mode}\n",
            be = backend(p)
        );
        if mode == FrontMode::Http {
            let _ = writeln!(
                cfg,
                "\t# Also replays a request whose connection closed unanswered (an app stopping).\n\
                 \tretry-on conn-failure empty-response\n\
                 \terrorfile 503 {MOUNT}/{PAGE_FILE}"
            );
        }
        for slot in [Slot::Blue, Slot::Green] {
            let host = match state.named(slot) {
                Some(g) => desired::container_name(spec, Role::App, g),
                // Never resolves: the slot is disabled until a generation is named.
                None => format!("{}-unused", container_name(spec)),
            };
            let disabled = if state.serving_slot() == Some(slot) {
                ""
            } else {
                " disabled"
            };
            let _ = writeln!(cfg, "\tserver {} {host}:{p}{disabled}", slot.name());
        }
        // Nothing listens there: while it is the one server, every try is refused
        // and retried a second later, so requests wait for the next switch.
        let holding = if state.serving_slot().is_none() {
            ""
        } else {
            " disabled"
        };
        let _ = writeln!(cfg, "\tserver {HOLD_SERVER} 127.0.0.1:1{holding}");
    }
    cfg
}

/// The map's keys and values as `state` says, in file order.
fn map_entries(state: &FrontState) -> [(&'static str, String); 3] {
    let m = state.maintenance.as_ref();
    [
        (
            "retry_after",
            m.map_or(30, |m| m.retry_after_secs).to_string(),
        ),
        (
            "message",
            m.map_or(String::new(), |m| html_escape(&m.message)),
        ),
        ("maint", if m.is_some() { "on" } else { "off" }.to_string()),
    ]
}

/// The map file: `key value` lines (a value is the rest of its line).
pub fn map(state: &FrontState) -> String {
    map_entries(state)
        .iter()
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect()
}

/// The runtime commands that make the running front's map what `state` says;
/// the switch itself last, so the page is complete when it shows.
pub fn map_commands(state: &FrontState) -> Vec<String> {
    map_entries(state)
        .iter()
        .map(|(k, v)| format!("set map {MOUNT}/{MAP_FILE} {k} {}", cli_escape(v)))
        .collect()
}

/// The runtime API splits on spaces and `;`; a backslash escapes them.
fn cli_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if matches!(c, ' ' | ';' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message goes into an HTML page: no markup, one line.
fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            c if c.is_control() => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Whether a line of `show servers state` says the server has `app`'s address:
/// `srv_addr` (5th field) set, not in maintenance for want of resolution
/// (`srv_admin_state`, 7th, bit 0x20), and `srv_fqdn` (18th) naming `app`.
pub fn resolved(line: &str, app: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    let addr_set = f.get(4).is_some_and(|a| *a != "-" && *a != "0.0.0.0");
    let resolving = f
        .get(6)
        .and_then(|s| s.parse::<u32>().ok())
        .is_none_or(|s| s & 0x20 != 0);
    addr_set && !resolving && f.get(17) == Some(&app)
}

/// The connections open to `server` in `backends`, from `show stat -1 4 -1`
/// (CSV: `pxname,svname,qcur,qmax,scur,…`).
pub fn open_connections(stats: &str, backends: &[String], server: &str) -> u64 {
    stats
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && backends.iter().any(|b| b == f[0]) && f[1] == server)
        .filter_map(|f| f[4].parse::<u64>().ok())
        .sum()
}

/// The answer to a request held longer than `hold`: a whole HTTP response.
pub fn page(front: &FrontSpec) -> String {
    let body = page_template(front).replace("{{message}}", HELD_MESSAGE);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Retry-After: {}\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {body}",
        front.hold.get().as_secs().max(1),
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maintenance_message_is_one_line_of_text_escaped_for_the_runtime_api() {
        let state = FrontState {
            maintenance: Some(Maintenance {
                message: "Back at 5; <b>soon</b>\nreally".into(),
                retry_after_secs: 120,
                since: "2026-12-05T00:00:00Z".into(),
            }),
            ..FrontState::default()
        };
        assert_eq!(
            map(&state),
            "retry_after 120\nmessage Back at 5; &lt;b&gt;soon&lt;/b&gt; really\nmaint on\n"
        );
        let commands = map_commands(&state);
        assert_eq!(
            commands[1],
            "set map /gemctl/state.map message Back\\ at\\ 5\\;\\ &lt\\;b&gt\\;soon&lt\\;/b&gt\\;\\ really"
        );
        assert_eq!(commands[2], "set map /gemctl/state.map maint on");
    }

    #[test]
    fn a_generation_gets_the_idle_slot_and_keeps_it_through_the_switch() {
        let s = FrontState::default();
        assert_eq!(s.live_generation(), None);
        let one = s.switched(1);
        assert_eq!(one.live_generation(), Some(1));
        assert_eq!(one.slot_of(1), Some(Slot::Blue));
        let (slot, prepared) = one.prepared(2);
        assert_eq!(slot, Slot::Green);
        assert_eq!(
            prepared.live_generation(),
            Some(1),
            "preparing switches nothing"
        );
        let two = prepared.switched(2);
        assert_eq!(two.live_generation(), Some(2));
        assert_eq!(
            two.slot_of(1),
            Some(Slot::Blue),
            "1 stays named: a way back"
        );
        // A rollback to 1 is a switch back to its slot, not a new slot.
        assert_eq!(two.switched(1).live, Some(Slot::Blue));
        assert!(map(&two).contains("maint off"));
        // Generation 3 takes the slot that does not serve: 1's, also while held.
        assert_eq!(two.prepared(3).0, Slot::Blue);
        let held = two.held();
        assert_eq!(held.live_generation(), None);
        assert_eq!(held.prepared(3).0, Slot::Blue, "2's slot is the way back");
        assert_eq!(held.switched(2).live_generation(), Some(2));
    }

    fn front(extra: &str) -> FrontSpec {
        serde_yaml::from_str(&format!(
            "image: haproxy:2.6\nports:\n  - {{ port: \"80:8080\", mode: http }}\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_tcp_line_is_the_spec_s_with_the_message_in_a_safe_lua_string() {
        let default = lua(&front(""));
        assert!(
            default.contains(
                r#"applet:send("MAINT " .. (applet:get_var("txn.message") or "") .. "" .. "\n")"#
            ),
            "{default}"
        );
        let custom = lua(&front("line: 'DOWN \"{message}\" \\ back soon'\n"));
        assert!(
            custom.contains(r#"applet:send("DOWN \"" .. (applet:get_var("txn.message") or "") .. "\" \\ back soon" .. "\n")"#),
            "{custom}"
        );
    }

    #[test]
    fn the_page_keeps_its_percent_signs_and_reads_the_message_from_the_map() {
        let mut f = front("");
        f.page_html = Some("<p>100% {{message}}</p>".into());
        assert_eq!(
            maintenance_page(&f),
            "<p>100%% %[str(message),map(/gemctl/state.map,)]</p>"
        );
        assert!(
            page(&f).ends_with(&format!("<p>100% {HELD_MESSAGE}</p>")),
            "{}",
            page(&f)
        );
        assert!(maintenance_page(&front("")).contains("<h1>Temporarily unavailable</h1>"));
        // Editing the page's text remakes the front.
        assert_ne!(spec_hash(&f), spec_hash(&front("")));
    }
}
