# d. drain: requests in flight to blue finish after the switch; how to see
# that blue has no connections left. Arg: "drain" (drain, wait empty, maint)
# or "maint" (straight to maint while requests are in flight).
import sys, time
from lib import *
F = ip('hpx-front')
mode = sys.argv[1]
api('set server app/green fqdn hpx-green'); api('set server app_line/green fqdn hpx-green')
for be in ('app', 'app_line'):
    api(f'set server {be}/blue state ready'); api(f'set server {be}/green state maint')
time.sleep(1)
def conns():
    out = {}
    for be in ('app', 'app_line'):
        for l in api(f'show servers conn {be}').splitlines()[1:]:
            f = l.split()
            if len(f) > 6: out[f[0]] = f[6]   # used_cur
    stat = {}
    for l in api('show stat').splitlines()[1:]:
        f = l.split(',')
        if len(f) > 17 and f[1] in ('blue', 'green'): stat[f'{f[0]}/{f[1]}'] = f'scur={f[4]} status={f[17]}'
    return out, stat
log('show servers conn header:', api('show servers conn app').splitlines()[0])
ths = [bg(req, F, path='/slow?s=3', label=f'slow{i}') for i in range(3)]
# a TCP session in flight: connects now, sends its line 3 s later
def tcp_late():
    s = socket.create_connection((F, 7000)); time.sleep(3); s.sendall(b'late\n')
    out = s.recv(100).decode().strip(); s.close(); return (out,)
ths.append(bg(tcp_late, label='tcp in flight'))
time.sleep(0.5)
log('in flight:', conns())
for be in ('app', 'app_line'):
    api(f'set server {be}/green state ready')
    api(f'set server {be}/blue state ' + ('drain' if mode == 'drain' else 'maint'))
log('switched, blue ->', mode)
log('new GET ->', req(F)[:3:2], ' new tcp ->', tcp(F, 7000)[0])
while True:
    c, s = conns()
    log('used_cur:', c, 'stat:', s)
    if all(s[k].startswith('scur=0 ') for k in ('app/blue', 'app_line/blue')): break
    time.sleep(0.5)
if mode == 'drain':
    for be in ('app', 'app_line'): api(f'set server {be}/blue state maint')
    log('blue -> maint')
for th, _ in ths: th.join()
log('final:', conns())
