# b. TCP hold: live slot's container stopped; clients connect and send a
# line; switch after <delay> s (or never).
import sys, time
from lib import *
F = ip('hpx-front')
delay = sys.argv[1]
api('set server app_line/blue state ready'); api('set server app_line/green state maint')
api('set server app_line/green fqdn hpx-green'); time.sleep(1.5)
log('before:', tcp(F, 7000))
log('docker stop hpx-blue'); sh('docker stop -t 1 hpx-blue'); log('stopped')
ths = [bg(tcp, F, 7000, b'hello %d\n' % i, label=f'tcp{i}') for i in range(3)]
if delay != 'never':
    time.sleep(float(delay))
    api('set server app_line/green state ready'); api('set server app_line/blue state maint'); log('switched')
for th, _ in ths: th.join()
sh('docker start hpx-blue')
