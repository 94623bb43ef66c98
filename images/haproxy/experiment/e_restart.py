# e. which state survives a restart of the front. Arg: restart | kill
# (SIGKILL to the container's haproxy master from the host: a crash, which the
# restart policy unless-stopped answers; `docker kill` counts as a manual stop).
import sys, time
from lib import *
how = sys.argv[1]
def state(tag):
    F = ip('hpx-front')
    for l in api('show servers state').splitlines():
        f = l.split()
        if len(f) > 18 and f[3] in ('blue', 'green'):
            log(tag, f'{f[1]}/{f[3]} addr={f[4]} op={f[5]} admin={f[6]} fqdn={f[17]}')
    log(tag, 'map:', api('show map /gemctl/state.map').replace('\n', ' | '), ' GET / ->', req(F)[:3:2], ' tcp ->', tcp(F, 7000)[0])
# runtime changes: green -> green2 by fqdn, green ready, blue maint, maintenance on
for be in ('app', 'app_line'):
    api(f'set server {be}/green fqdn hpx-green2'); api(f'set server {be}/green state ready'); api(f'set server {be}/blue state maint')
api(r'set map /gemctl/state.map maint on'); api(r'set map /gemctl/state.map message runtime\ only')
time.sleep(1.5)
state('before')
dump = api('show servers state')
open('/tmp/hpx-gemctl/server-state', 'w').write(dump)
log('dumped show servers state to /gemctl/server-state,', len(dump), 'bytes')
t = time.monotonic()
if how == 'restart':
    sh('docker restart hpx-front')
else:
    sh('kill -9 ' + sh("docker inspect -f '{{.State.Pid}}' hpx-front"))  # a crash, not a manual stop
    while sh("docker inspect -f '{{.State.Running}} {{.RestartCount}}' hpx-front").split()[0] != 'true':
        time.sleep(0.1)
log(how, 'done; running again after', f'{time.monotonic() - t:.2f}s', sh("docker inspect -f 'restarts={{.RestartCount}}' hpx-front"))
for i in range(50):
    try: api('show info'); break
    except OSError: time.sleep(0.1)
state('after')
