#!/usr/bin/env bash
# Sets up the front-door experiment (FINDINGS.md): network hpx-net, backends
# hpx-blue, hpx-green, hpx-green2 (backend.pl: HTTP :8080, line TCP :7000),
# and the front hpx-front with <config> (default: the rendered template) and
# /tmp/hpx-gemctl bind-mounted as /gemctl. Run as root (the socket is 0600).
#   setup.sh [front-v1.cfg | front-v2.cfg]    teardown: setup.sh --down
set -euo pipefail
cd "$(dirname "$0")"
down() {
	docker rm -f hpx-front hpx-blue hpx-green hpx-green2 >/dev/null 2>&1 || true
	docker network rm hpx-net >/dev/null 2>&1 || true
	rm -rf /tmp/hpx-gemctl
}
if [[ ${1:-} == --down ]]; then down; exit; fi
down
docker network create hpx-net >/dev/null
for n in blue green green2; do
	docker run -d --init --name "hpx-$n" --network hpx-net -e "NAME=$n" \
		-v "$PWD/backend.pl:/backend.pl:ro" gemctl-test/haproxy perl /backend.pl >/dev/null
done
mkdir -p /tmp/hpx-gemctl
if [[ -n ${1:-} ]]; then
	cp "$1" /tmp/hpx-gemctl/haproxy.cfg
	printf 'maint off\nmessage back soon\n' >/tmp/hpx-gemctl/state.map
else
	./render.sh >/tmp/hpx-gemctl/haproxy.cfg
	printf 'maint off\nretry_after 30\nmessage back soon\n' >/tmp/hpx-gemctl/state.map
fi
cp ../maint.lua ../503.http /tmp/hpx-gemctl/
docker run -d --name hpx-front --network hpx-net --restart unless-stopped \
	-v /tmp/hpx-gemctl:/gemctl gemctl-test/haproxy haproxy -W -db -f /gemctl/haproxy.cfg >/dev/null
sleep 1
docker logs hpx-front 2>&1 | tail -n 3
