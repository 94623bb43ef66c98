"""Helpers for the front-door experiment (see ../FINDINGS.md). Host side:
talks to the runtime API over the bind-mounted unix socket and to the front
container over the docker network."""
import hashlib, http.client, json, socket, subprocess, threading, time

SOCK = '/tmp/hpx-gemctl/admin.sock'
T0 = time.monotonic()

def now():
    return time.monotonic() - T0

def api(cmd, sock=SOCK):
    """One runtime API command over the unix socket; returns its answer."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(cmd.encode() + b'\n')
    out = b''
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    s.close()
    return out.decode()

def sh(cmd):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout.strip()

def ip(name):
    return sh("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' " + name)

def log(*a):
    print(f'{now():7.3f}', *a, flush=True)

def req(host, method='GET', path='/', body=None, port=80, timeout=60):
    """-> (status or error string, headers dict, body text, seconds)"""
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request(method, path, body=body)
        r = c.getresponse()
        b = r.read().decode(errors='replace')
        res = (r.status, dict(r.getheaders()), b.strip(), time.monotonic() - t)
        c.close()
        return res
    except Exception as e:
        return (type(e).__name__ + ': ' + str(e), {}, '', time.monotonic() - t)

def tcp(host, port, line=b'status\n', timeout=60):
    t = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=timeout)
        s.sendall(line)
        out = b''
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
        s.close()
        return (out.decode().strip(), time.monotonic() - t)
    except Exception as e:
        return (type(e).__name__ + ': ' + str(e), time.monotonic() - t)

def bg(fn, *a, label='', **kw):
    """Runs fn in a thread, logging start and result."""
    res = {}
    def run():
        start = now()
        r = fn(*a, **kw)
        res['r'] = r
        log(f'[{label}] started {start:.3f} ->', r if not isinstance(r, tuple) or len(r) < 3 else (r[0], r[2][:120], f'{r[-1]:.3f}s'))
    th = threading.Thread(target=run)
    th.start()
    return th, res

def body(n):
    b = (b'0123456789abcdef' * (n // 16 + 1))[:n]
    return b, hashlib.md5(b).hexdigest()
