# c. maintenance switch through the runtime API (map), HTTP + TCP + health URI.
from lib import *
F = ip('hpx-front')
M = '/gemctl/state.map'
def show():
    r = req(F); h = req(F, path='/__front/health')
    log('GET / ->', r[0], {k: v for k, v in r[1].items() if k in ('retry-after', 'content-type')}, r[2][:140])
    log('GET /__front/health ->', h[0], '| tcp :7000 ->', tcp(F, 7000)[0])
show()
for cmd in [f'set map {M} maint on', f'set map {M} message Upgrading to generation 5, back in a minute']:
    log(cmd, '->', repr(api(cmd)))
log('show map:', repr(api(f'show map {M}')))
show()
log(f'set map {M} maint off ->', repr(api(f'set map {M} maint off')))
show()
