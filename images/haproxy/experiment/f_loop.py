# f. loop clients (HTTP GET and TCP line, a new connection every 20 ms)
# through a switch: live slot green's container stopped, blue made ready
# 3 s later. Arg: switch | restart-front (contrast: docker restart of the front).
import sys, time, threading, collections
from lib import *
F = ip('hpx-front')
what = sys.argv[1]
for be in ('app', 'app_line'):
    api(f'set server {be}/green fqdn hpx-green'); api(f'set server {be}/green state ready'); api(f'set server {be}/blue state maint')
time.sleep(1.5)
stop = False
results = {'http': [], 'tcp': []}
def loop(kind):
    while not stop:
        t = now()
        if kind == 'http':
            r = req(F, timeout=30); res, dur = (r[0] if isinstance(r[0], int) else r[0].split(':')[0]) , r[3]
            if res == 200: res = f'200 {r[2]}'
        else:
            out, dur = tcp(F, 7000, timeout=30)
            res = out.split(':')[0] if 'Error' in out or 'refused' in out else ' '.join(out.split()[:2])
        results[kind].append((t, dur, res))
        time.sleep(0.02)
ths = [threading.Thread(target=loop, args=(k,)) for k in results]
for th in ths: th.start()
time.sleep(1)
if what == 'switch':
    log('docker stop hpx-green'); sh('docker stop -t 1 hpx-green'); log('stopped')
    time.sleep(3)
    for be in ('app', 'app_line'):
        api(f'set server {be}/blue state ready'); api(f'set server {be}/green state maint')
    log('switched to blue')
else:
    log('docker restart hpx-front'); sh('docker restart -t 2 hpx-front'); log('restarted')
time.sleep(2)
stop = True
for th in ths: th.join()
for kind, rs in results.items():
    log(kind, len(rs), 'attempts;', dict(collections.Counter(r[2] for r in rs)),
        f'max latency {max(r[1] for r in rs):.3f}s')
    prev = None
    for t, d, r in rs:   # transitions and slow ones
        if r != prev or d > 0.2: log(f'   {kind} at {t:.3f} took {d:.3f}s -> {r}')
        prev = r
sh('docker start hpx-green')
