# Device side of `vmmaker-bench`: runs under the MicroPython unix port (with the firmware as
# .mpy on MICROPYPATH) against the loopback servers that tools/bench.py starts. Parameters come
# from bench.json in the working directory (the simulated flash); results are printed as one
# line "RESULT <json>" so that a heap-exhausted run cannot be mistaken for a result.
#
# Modes (argv[1], or main(mode) when imported as a compiled module):
#   import  RAM cost of `import vmmaker` and the vmmaker modules it pulls in
#   alloc   heap bytes allocated per request: SDK (http, tls, failover) and baseline `requests`
#   speed   requests per second, SDK vs baseline and failover vs happy, in alternated rounds
#   flows   every failover flow of docs/PROTOCOL.md over TLS (plain HTTP with flows_http);
#           prints ALL-FLOWS-OK when all pass
import gc
import sys


def _import_cost():
    # Measured first, before this script imports anything else: after a full collection the
    # live heap holds only what is reachable, so the difference is what `import vmmaker`
    # keeps resident (module objects, their globals, classes, bytecode, sys.modules slots).
    gc.collect()
    before = gc.mem_alloc()
    import vmmaker  # noqa: F401
    gc.collect()
    after = gc.mem_alloc()
    names = sorted(k for k in sys.modules if k == "vmmaker" or k.startswith("vmmaker."))
    return {"ram_after_import": after - before, "modules": names}


def _romfs_cost():
    # The package as a ROMFS image (what `mpremote romfs deploy` puts in a flash partition):
    # MicroPython then runs the bytecode in place instead of copying it into the heap. The
    # image is read into RAM here only because the unix port has no flash; its own size is
    # measured before the mount and not counted, as on a board it lives in flash.
    import vfs
    with open("vmmaker.romfs", "rb") as f:
        img = f.read()
    vfs.mount(vfs.VfsRom(img), "/rom")
    sys.path.insert(0, "/rom")
    gc.collect()
    before = gc.mem_alloc()
    import vmmaker
    gc.collect()
    after = gc.mem_alloc()
    return {"ram_after_import_romfs": after - before, "from": vmmaker.__file__}


def _config():
    import json
    with open("bench.json") as f:
        return json.load(f)


def _ticks():
    import time
    if hasattr(time, "ticks_us"):
        return time.ticks_us, time.ticks_diff
    return (lambda: int(time.perf_counter() * 1000000)), (lambda a, b: a - b)


def _result(obj):
    import json
    print("RESULT " + json.dumps(obj))


def _sdk(cfg, tls=False, **extra):
    import vmmaker
    opts = dict(region="tr", service="api", api_key=cfg["api_key"], backoff_base=0,
                hosts=cfg["tls_hosts" if tls else "http_hosts"])
    if tls:
        opts["ca"] = cfg["ca"]
    else:
        opts["insecure_http"] = True
    opts.update(extra)
    return vmmaker.Client(**opts)


def _probe_extra(cfg, client):
    # Sensitivity check (--probe-extra-alloc): add a known allocation to every SDK transport
    # send, so the bench can be shown to see it.
    n = cfg.get("probe_extra_alloc") or 0
    if not n:
        return
    send = client.transport.send

    def wrapped(*a):
        client._probe = bytearray(n)
        return send(*a)
    client.transport.send = wrapped


def _calls(cfg):
    """-> dict name -> zero-argument function doing one complete call (body read, closed)."""
    import requests
    http = _sdk(cfg)
    tls = _sdk(cfg, tls=True)
    # A failing primary must be tried on every call: keep its breaker closed.
    fo = _sdk(cfg, breaker_threshold=1 << 30)
    for c in (http, tls, fo):
        _probe_extra(cfg, c)
    base_url = cfg["baseline_url"]

    def sdk_http():
        r = http.get("ping")
        if r.status_code != 200 or not r.content:
            raise RuntimeError("sdk http: %d" % r.status_code)
        r.close()

    def sdk_tls():
        r = tls.get("ping")
        if r.status_code != 200 or not r.content:
            raise RuntimeError("sdk tls: %d" % r.status_code)
        r.close()

    def baseline():
        r = requests.get(base_url)
        if r.status_code != 200 or not r.content:
            raise RuntimeError("baseline: %d" % r.status_code)
        r.close()

    def happy():
        r = fo.get("ping")
        if r.status_code != 200:
            raise RuntimeError("happy: %d" % r.status_code)
        r.close()

    def failover():
        r = fo.get("flow/network-error/tr")
        if r.status_code != 200 or r.headers.get("x-vmm-server") != "tr/api/backup":
            raise RuntimeError("failover: %d %s" % (r.status_code, r.headers.get("x-vmm-server")))
        r.close()

    return {"sdk_http": sdk_http, "sdk_tls": sdk_tls, "baseline": baseline,
            "happy": happy, "failover": failover}


def _alloc_per_call(fn, n):
    # With the collector disabled nothing is reclaimed, so the growth of gc.mem_alloc() over
    # n calls is every heap byte they allocated (in whole GC blocks) minus what the runtime
    # freed explicitly (buffer reallocations, mbedTLS' tracked allocations): the garbage a
    # call leaves for the collector plus anything it retains. The heap must hold n calls'
    # garbage, hence the large -X heapsize of this mode.
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        i = 0
        while i < n:
            fn()
            i += 1
        b = gc.mem_alloc()
    finally:
        gc.enable()
    return (b - a) / n


def _noop():
    pass


def run_alloc(cfg):
    n = cfg["n"]
    calls = _calls(cfg)
    out = {}
    # The loop itself allocates nothing, which the no-op measurement confirms (and corrects).
    loop = _alloc_per_call(_noop, n)
    for name in ("sdk_http", "baseline", "sdk_tls", "failover", "happy"):
        fn = calls[name]
        for _ in range(cfg["warmup"]):
            fn()
        out[name] = _alloc_per_call(fn, n) - loop
    out["loop_overhead"] = loop
    _result(out)


def _pair(fa, fb, k, flip, now, diff):
    # One round: k calls of each side, alternating call by call (a b a b ..., or b a b a ..
    # when flip), each timed on its own, so slow drift (CPU frequency, the server's threads,
    # the other core's load, a collection) hits both sides alike. -> mean us per call.
    gc.collect()
    ta = tb = 0
    i = 0
    while i < k:
        if flip:
            t0 = now()
            fb()
            t1 = now()
            fa()
            t2 = now()
            tb += diff(t1, t0)
            ta += diff(t2, t1)
        else:
            t0 = now()
            fa()
            t1 = now()
            fb()
            t2 = now()
            ta += diff(t1, t0)
            tb += diff(t2, t1)
        i += 1
    return ta / k, tb / k


def run_speed(cfg):
    now, diff = _ticks()
    calls = _calls(cfg)
    k = cfg["n"]
    pairs = {"http": ("sdk_http", "baseline"), "failover": ("happy", "failover")}
    out = {}
    for name in pairs:
        a, b = pairs[name]
        for _ in range(cfg["warmup"]):
            calls[a]()
            calls[b]()
        ra, rb = [], []
        for r in range(cfg["rounds"]):
            ta, tb = _pair(calls[a], calls[b], k, r % 2, now, diff)
            ra.append(ta)
            rb.append(tb)
        out[a] = ra
        out[b] = rb
    _result(out)


# (reason, region, service, answering server, temporary) per seed flow of docs/PROTOCOL.md
FLOWS = (
    ("db-error", "tr", "own", "tr/own/backup", False),
    ("network-error", "tr", "api", "tr/api/backup", False),
    ("overload", "tr", "cloud", "tr/cloud/backup", False),
    ("timeout", "fr", "api", "fr/api/backup", False),
    ("data-corruption", "fr", "cloud", "fr/cloud/backup", False),
    ("auth-down", "usa", "api", "usa/api/backup", True),
    ("regional-outage", "usa", "cloud", "de/cloud/primary", False),
    ("security-breach", "de", "api", "de/api/backup", False),
    ("maintenance", "de", "cloud", "de/cloud/backup", False),
)


def run_flows(cfg):
    import vmmaker
    bad = 0
    tls = not cfg.get("flows_http")
    for reason, region, service, server, temporary in FLOWS:
        opts = dict(region=region, service=service, backoff_base=0,
                    hosts=cfg["tls_hosts" if tls else "http_hosts"])
        if tls:
            opts["ca"] = cfg["ca"]
        else:
            opts["insecure_http"] = True
        if service == "own":
            opts["token"] = cfg["token"]
        else:
            opts["api_key"] = cfg["api_key"]
        try:
            c = vmmaker.Client(**opts)
            r = c.get("flow/%s/%s" % (reason, region))
            got = (r.status_code, r.server, r.temporary)
            ok = got == (200, server, temporary) and r.json()["server"] == server
            r.close()
        except Exception as e:  # MemoryError, a TLS allocation failure, ...
            got = "%s: %s" % (type(e).__name__, e)
            ok = False
        print("FLOW %s %s %s" % (reason, "ok" if ok else "FAILED", got))
        bad += not ok
        c = r = None
        gc.collect()
    if not bad:
        print("ALL-FLOWS-OK")


def main(mode=None):
    if mode is None:
        mode = sys.argv[1] if len(sys.argv) > 1 else "import"
    if mode == "import":
        _result(_import_cost())
    elif mode == "romfs":
        _result(_romfs_cost())
    elif mode == "alloc":
        run_alloc(_config())
    elif mode == "speed":
        run_speed(_config())
    elif mode == "flows":
        run_flows(_config())
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
