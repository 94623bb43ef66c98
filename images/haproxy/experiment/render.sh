#!/usr/bin/env bash
# Fills ../haproxy.cfg.example for the experiment: HTTP front on 80 -> 8080,
# TCP front on 7000 -> 7000 (two frontends, so the backends' names differ by
# port), blue live, green idle.
sed -e 's/{{CONNECT_TIMEOUT}}/1s/; s/{{RETRIES}}/10/; s/{{CLIENT_TIMEOUT}}/60s/; s/{{SERVER_TIMEOUT}}/60s/' \
	-e 's/{{HEALTH_URI}}/\/__front\/health/; s/{{HEALTH_PORT}}/8404/' \
	-e 's/{{BLUE_HOST}}/hpx-blue/; s/{{GREEN_HOST}}/hpx-green/; s/{{BLUE_DISABLED}}//; s/{{GREEN_DISABLED}}/disabled/' \
	"$(dirname "$0")/../haproxy.cfg.example" |
	awk '/^# -+ HTTP front/ { port = 80; app = 8080 } /^# -+ TCP front/ { port = 7000; app = 7000 }
		{ gsub(/\{\{PUBLIC_PORT\}\}/, port); gsub(/\{\{APP_PORT\}\}/, app); print }'
