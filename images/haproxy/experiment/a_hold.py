# a. HTTP hold: live slot's container stopped, requests held, then answered
# by the other slot after the switch. Usage: a_hold.py <delay before switch s|never>
import sys, time
from lib import *
F = ip('hpx-front')
delay = sys.argv[1]
api('set server app/blue state ready'); api('set server app/green state maint')
log('before:', req(F)[:3])
log('docker stop hpx-blue'); sh('docker stop -t 1 hpx-blue'); log('stopped')
small, small_md5 = body(1000)
big, big_md5 = body(100_000)
log('md5 1000 =', small_md5, ' md5 100000 =', big_md5)
ths = [bg(req, F, label='GET'), bg(req, F, 'POST', '/p', small, label='POST 1k'),
       bg(req, F, 'POST', '/p', big, label='POST 100k')]
if delay != 'never':
    time.sleep(float(delay))
    log('switch:', api('set server app/green state ready').strip(), api('set server app/blue state maint').strip())
for th, _ in ths: th.join()
log('after:', req(F)[:3])
sh('docker start hpx-blue')
