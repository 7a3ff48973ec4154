"""Shared helpers for the socket-level firmware tests (test_http_behaviours, test_flows).

- `run_device(device, config, body)`: run a device snippet (the firmware, on the device's
  interpreter, in a subprocess) with `config`; the snippet reports outcomes with
  `emit(describe(lambda: ...))`, which prints one JSON line per outcome.
- `Scripted`: a `host_sim.apiserver.ScriptedServer` that parses each request, records it, and
  lets the test answer with raw bytes (odd framings, held connections, silence).
- `fr_api_config(...)`: a plain-HTTP device config for region fr / service api whose every
  VM Maker host maps to a dead loopback port unless the test maps it to one of its servers,
  so nothing ever leaves the machine.
"""

import json
import socket
import textwrap
import threading
import time

from host_sim.apiserver import ClientGone, HttpError, ScriptedServer, read_request

API_KEY = "k3y-" + "5ecret" * 4  # recognisable, so tests can grep for it in device output

REGIONS = ("tr", "fr", "usa", "de")
PRIMARY = "api-fr.vmmaker.com"
BACKUP = "backup-api-fr.vmmaker.com"


def vmmaker_hosts():
    """Every host of the default allow-list (docs/PROTOCOL.md, Endpoints)."""
    hosts = ["api.vmmaker.com.tr", "backup-api.vmmaker.com.tr"]
    for region in REGIONS:
        for prefix in ("api-", "clod-api-"):
            primary = "%s%s.vmmaker.com" % (prefix, region)
            hosts += [primary, "backup-" + primary]
    return hosts


def dead_address():
    """A loopback port nobody listens on (connect is refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    sock.close()
    return address


def hosts_map(mapping):
    """`hosts` config: every VM Maker host -> a dead port, then `mapping` (host -> address)."""
    dead = list(dead_address())
    hosts = {host: dead for host in vmmaker_hosts()}
    for host, address in mapping.items():
        hosts[host] = list(address)
    return hosts


def fr_api_config(mapping, **overrides):
    """Plain-HTTP config for fr/api, one attempt, short timeouts (override as needed)."""
    config = {
        "region": "fr",
        "service": "api",
        "api_key": API_KEY,
        "insecure_http": True,
        "hosts": hosts_map(mapping),
        "connect_timeout": 2,
        "timeout": 2,
        "deadline": 10,
        "max_attempts": 1,
        "backoff_base": 0.01,
    }
    config.update(overrides)
    return config


# -- device side ----------------------------------------------------------------------

PRELUDE = r'''
import json
import vmmaker
from vmmaker import port

with open("test_cfg.json") as _f:
    CFG = json.load(_f)


def client(**over):
    cfg = dict(CFG)
    for k in over:
        cfg[k] = over[k]
    return vmmaker.Client(cfg)


def _text(b):
    try:
        return b.decode()
    except Exception:
        import binascii
        return "hex:" + binascii.hexlify(b).decode()


def _hist(h):
    if h is None:
        return None
    return [[a, b] for (a, b) in h]


def describe(fn):
    t0 = port.ticks_ms()
    try:
        r = fn()
    except Exception as e:
        out = {"ok": False, "error": type(e).__name__, "message": str(e),
               "vmmaker_error": isinstance(e, vmmaker.VMMakerError),
               "history": _hist(getattr(e, "history", None))}
    else:
        out = {"ok": True, "status": r.status_code, "content": _text(r.content),
               "headers": r.headers, "role": r.role, "region": r.region,
               "attempts": r.attempts, "history": _hist(r.history),
               "temporary": r.temporary, "server": r.server}
    out["elapsed_ms"] = port.ticks_diff(port.ticks_ms(), t0)
    return out


def emit(obj):
    print("RESULT " + json.dumps(obj))
'''


class DeviceRun:
    def __init__(self, proc):
        self.proc = proc
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.returncode = proc.returncode
        self.results = [json.loads(line[len("RESULT "):])
                        for line in proc.stdout.splitlines() if line.startswith("RESULT ")]

    @property
    def result(self):
        assert len(self.results) == 1, self.explain("expected one result")
        return self.results[0]

    def explain(self, what):
        return "%s; rc=%s\nstdout:\n%s\nstderr:\n%s" % (what, self.returncode, self.stdout,
                                                         self.stderr)


def run_device(device, config, body, timeout=60, check=True):
    """Run `body` (after PRELUDE) on `device` with `config` -> DeviceRun.

    With check=True the process must exit 0: the device code did not crash.
    """
    device.write_config(config, "test_cfg.json")
    proc = device.run_code(PRELUDE + "\n" + textwrap.dedent(body), timeout=timeout)
    run = DeviceRun(proc)
    if check:
        assert run.returncode == 0, run.explain("device process failed")
    return run


def device_call(device, config, expr, timeout=60):
    """One call `expr` on a client `c` made from `config` -> its outcome dict."""
    return run_device(device, config, "c = client()\nemit(describe(lambda: %s))\n" % expr,
                      timeout=timeout).result


# -- server side ----------------------------------------------------------------------


def http_response(status, body=b"", headers=(), phrase="X"):
    """Raw response bytes with a Content-Length (unless `headers` frames the body itself)."""
    lines = ["HTTP/1.1 %d %s" % (status, phrase)]
    names = [name.lower() for name, _ in headers]
    lines += ["%s: %s" % item for item in headers]
    if "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Scripted:
    """A scripted raw server: `respond(conn, request, n)` answers the n-th connection (0-based).

    `request` is the parsed RequestRecord (None with parse=False: the handler reads nothing).
    Records: `requests`, `connections` (accepted), `client_closed` (connections the device
    closed itself, counted by `wait_client_close`).
    """

    def __init__(self, respond, tls_context=None, parse=True):
        self.respond = respond
        self.parse = parse
        self.requests = []
        self.client_closed = 0
        self.errors = []
        self._n = 0
        self._lock = threading.Lock()
        self.server = ScriptedServer(self._handle, tls_context=tls_context)

    @property
    def address(self):
        return self.server.address

    @property
    def connections(self):
        return len(self.server.connections)

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _handle(self, conn):
        with self._lock:
            n = self._n
            self._n += 1
        request = None
        if self.parse:
            try:
                request = read_request(conn, None)
            except (ClientGone, HttpError, OSError) as exc:
                self.errors.append(exc)
                return
            with self._lock:
                self.requests.append(request)
        self.respond(conn, request, n)

    def hold_open(self, conn, limit_s=30.0):
        """Send nothing more; return when the client closes (True) or at stop/limit (False)."""
        conn.settimeout(0.05)
        end = time.monotonic() + limit_s
        while not self.server.stopping and time.monotonic() < end:
            try:
                if not conn.recv(4096):
                    with self._lock:
                        self.client_closed += 1
                    return True
            except socket.timeout:
                continue
            except OSError:
                return False
        return False

    wait_client_close = hold_open


def wait_for(predicate, timeout=5.0):
    """Poll until predicate() (server threads finish just after the device returns)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
