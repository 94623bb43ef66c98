# DNS: how slots follow containers. Needs front-v2 (resolvers docker).
import time
from lib import *
F = ip('hpx-front')
def st(tag):
    for l in api('show servers state app').splitlines()[2:]:
        f = l.split()
        if len(f) > 18: log(tag, 'srv', f[3], 'addr', f[4], 'op', f[5], 'admin', f[6], 'fqdn', f[17], 'port', f[18])
log('ips: blue', ip('hpx-blue'), 'green', ip('hpx-green'), 'green2', ip('hpx-green2'))
st('start')
log('docker exec front getent hosts hpx-blue (running):', sh('docker exec hpx-front getent hosts hpx-blue || echo NXDOMAIN'))
sh('docker stop -t 1 hpx-blue')
log('docker exec front getent hosts hpx-blue (stopped):', sh('docker exec hpx-front getent hosts hpx-blue || echo NXDOMAIN'))
time.sleep(4); st('blue stopped 4s')
log(repr(api('set server app/green fqdn hpx-green2')))
time.sleep(2); st('fqdn green2 +2s')
g = ip('hpx-green')
log(repr(api(f'set server app/green addr {g} port 8080')))
st('addr set'); time.sleep(3); st('addr set +3s')
sh('docker start hpx-blue'); time.sleep(3); st('blue started +3s')
