# The rendered template (render.sh) end to end, with the runtime commands
# FINDINGS.md recommends: point, switch with the live container stopped,
# drain and check empty, maintenance on/off with a message and Retry-After.
import time, threading
from lib import *
F = ip('hpx-front'); BES = ('app_80', 'app_7000')
def point(slot, container):
    for be in BES: api(f'set server {be}/{slot} fqdn {container}')
    want = ip(container)
    while any(api(f'show servers state {be}').splitlines()[2 + (slot == 'green')].split()[4] != want for be in BES):
        time.sleep(0.05)
def switch(to, frm):
    for be in BES: api(f'set server {be}/{to} state ready'); api(f'set server {be}/{frm} state drain')
def scur(slot):
    return {l.split(',')[0]: int(l.split(',')[4]) for l in api('show stat -1 4 -1').splitlines()[1:] if l.split(',')[1:2] == [slot]}
log('start:', req(F)[:3:2], tcp(F, 7000)[0], 'health', req(F, path='/__front/health')[0], req(F, port=8404, path='/__front/health')[0])
t = now(); point('green', 'hpx-green2'); log(f'point green -> hpx-green2 took {now() - t:.3f}s')
slow = [bg(req, F, path='/slow?s=3', label='in flight on blue')]
time.sleep(0.3)
switch('green', 'blue'); log('switch (green ready, blue drain); GET ->', req(F)[:3:2], tcp(F, 7000)[0])
while sum(scur('blue').values()): time.sleep(0.2)
for be in BES: api(f'set server {be}/blue state maint')
log('blue empty (show stat scur 0) -> maint', scur('blue'))
# the live one (green2) stopped, blue pointed at hpx-green and made ready 1.5 s later
sh('docker stop -t 1 hpx-green2'); log('hpx-green2 stopped')
held = [bg(req, F, 'POST', '/p', b'y' * 3000, label='POST held'), bg(tcp, F, 7000, b'held\n', label='tcp held')]
point('blue', 'hpx-green'); time.sleep(1.5); switch('blue', 'green'); log('switched to blue (=hpx-green)')
for th, _ in slow + held: th.join()
sh('docker start hpx-green2')
for be in BES: api(f'set server {be}/green state maint')
open('/tmp/hpx-gemctl/state.map', 'w').write('maint on\nretry_after 120\nmessage Upgrading to generation 7; back in 2 minutes\n')
for k, v in [('maint', 'on'), ('retry_after', '120'), ('message', r'Upgrading\ to\ generation\ 7\;\ back\ in\ 2\ minutes')]:
    api(f'set map /gemctl/state.map {k} {v}')
r = req(F); log('maint on: GET ->', r[0], 'Retry-After', r[1].get('retry-after'), r[2])
log('   tcp ->', tcp(F, 7000)[0], ' health', req(F, path='/__front/health')[0], req(F, port=8404, path='/__front/health')[0])
open('/tmp/hpx-gemctl/state.map', 'w').write('maint off\nretry_after 30\nmessage\n')
api('set map /gemctl/state.map maint off'); log('maint off: GET ->', req(F)[:3:2], tcp(F, 7000)[0])
