"""The simulator demo: every failure flow of the seed, run by a real device app on a simulated board.

For each flow of CATALOGUE a fresh `World` is started, the flow is switched on, the device config
is written into a fresh board's flash directory and `examples/device_app.py` runs under
MicroPython (the firmware as .mpy, as on a board) or CPython. The app reads a command
(`GET /v1/command`) and posts a reading (`POST /v1/telemetry`); its `RESULT` lines say who
answered and how, and the world's records say what the servers saw. Both are checked against
what the seed (docs/PROTOCOL.md) expects.
"""
import json
import time
from concurrent.futures import ThreadPoolExecutor

from host_sim.runner import EXAMPLES, Device
from host_sim.world import ENDPOINTS, FLOWS, REGIONS, World, host_name

APP = EXAMPLES / "device_app.py"
COMMAND = "command"
TELEMETRY = "telemetry"


def command_data(region, service):
    """The command every endpoint's databases hold (seeded by `seed_data`)."""
    return {"action": "set-led", "value": "green", "rev": 7, "stored_in": "%s/%s" % (region, service)}


def seed_data(world):
    """Give every endpoint a command to serve, so answers carry data (and flow 5 can restore it)."""
    for region, service in ENDPOINTS:
        world.put_data(region, service, COMMAND, command_data(region, service))

# Settings the demo shortens so the whole run takes seconds; printed at the top of the demo.
FAST = {"backoff_base": 0.05}
FAST_NOTE = "backoff_base 0.05 s (SDK default 0.2 s)"
SHORT_TIMEOUTS = {"connect_timeout": 0.5, "timeout": 0.5}
SHORT_NOTE = "connect_timeout/timeout 0.5 s (SDK defaults 5 s / 10 s)"
WIFI = {"ssid": "vmmaker-sim", "password": "not-a-secret"}

# Scenarios a user can name: the world's flows, raw modes of the primary, or nothing at all.
PRIMARY_MODES = {
    "primary-refused": "refuse",
    "primary-blackhole": "blackhole",
    "primary-bad-tls": "bad-tls-selfsigned",
    "primary-wrong-host": "bad-tls-wronghost",
}
SCENARIOS = ("none",) + tuple(FLOWS) + tuple(PRIMARY_MODES)
SERVICES = ("api", "cloud", "own")


def valid_endpoint(region, service):
    return region in REGIONS and service in SERVICES and (service != "own" or region == "tr")


def apply_scenario(world, region, service, scenario):
    """Switch `scenario` on for region/service (a world flow or a raw mode of its primary)."""
    if scenario in (None, "none"):
        return
    if scenario in PRIMARY_MODES:
        world.set_mode(host_name(region, service, "primary"), PRIMARY_MODES[scenario])
    else:
        world.set_flow(region, service, scenario)


class Flow:
    """One demo case: where, what the world does, what the seed says must happen."""

    def __init__(self, name, number, region, service, scenario, seed, expect, checks=(),
                 overrides=None, setup=None, note=None, app_ok=True):
        self.name = name
        self.number = number        # the seed's flow number (None for the extra cases)
        self.region = region
        self.service = service
        self.scenario = scenario
        self.seed = seed            # what the seed expects, in words
        self.expect = expect        # {call: {field: expected value}} for the device's RESULTs
        self.checks = checks        # server-side checks: fn(world, ctx) -> (ok, text)
        self.overrides = overrides or {}
        self.setup = setup
        self.note = note
        self.app_ok = app_ok        # the app's exit status should be 0

    @property
    def label(self):
        return ("%d %s" % (self.number, self.name)) if self.number else self.name


GET = "GET /v1/" + COMMAND
POST = "POST /v1/" + TELEMETRY


# -- server-side checks (each: world, ctx -> (ok, text)) -------------------------------------

def _requests(world, host, method=None, name=None):
    out = []
    for r in world.server(host).requests:
        if method and r.method != method:
            continue
        if name and r.path != "/v1/" + name:
            continue
        out.append(r)
    return out


def answered_by(call):
    """The server named in the device's RESULT recorded the request and answered it with 2xx."""
    def check(world, ctx):
        res = ctx["results"].get(call) or {}
        label = res.get("server")
        if not label:
            return False, "%s: no server answered" % call
        host = host_name(*label.split("/"))
        method, path = call.split(" ", 1)
        seen = [r for r in _requests(world, host, method, path[len("/v1/"):]) if r.status and r.status < 300]
        return bool(seen), "%s recorded %s and answered %s" % (
            host, call, "/".join(str(r.status) for r in seen) or "nothing")
    return check


def event(kind, region, service):
    def check(world, ctx):
        primary = host_name(region, service, "primary")
        found = [e for e in world.server(primary).events if e["kind"] == kind]
        return bool(found), "%s event recorded on %s (%d)" % (kind, primary, len(found))
    return check


def request_count(region, service, role, n, method=None, why=""):
    def check(world, ctx):
        host = host_name(region, service, role)
        got = len(_requests(world, host, method))
        what = (method + " ") if method else ""
        return got == n, "%s received %d %srequest(s), expected %d%s" % (
            host, got, what, n, (" (" + why + ")") if why else "")
    return check


def write_once(world, ctx):
    """Every attempt of the POST carried the same Idempotency-Key; the write exists once."""
    keys = set()
    hosts = []
    for host, server in world.servers.items():
        for r in _requests(world, host, "POST", TELEMETRY):
            keys.add(r.headers.get("idempotency-key"))
            hosts.append(host)
    res = ctx["results"].get(POST) or {}
    label = res.get("server")
    if len(keys) != 1 or None in keys or not label:
        return False, "POST attempts carried Idempotency-Keys %r" % sorted(k or "-" for k in keys)
    key = keys.pop()
    region, service, role = label.split("/")
    db = world.databases[(region, service)]
    stored = db.idempotency.get(key)
    row = db.copies[role].get(TELEMETRY)
    ok = stored is not None and row == res.get("data")
    return ok, "one Idempotency-Key on %d POST attempt(s) (%s); write stored once in %s/%s" % (
        len(hosts), ", ".join(hosts), region, service)


def redirected_write(region, service):
    """The primary answered the POST with 302 and the backup got the same body (seed flow 1)."""
    def check(world, ctx):
        primary = _requests(world, host_name(region, service, "primary"), "POST", TELEMETRY)
        backup = _requests(world, host_name(region, service, "backup"), "POST", TELEMETRY)
        ok = (len(primary) == 1 and primary[0].status == 302 and len(backup) == 1
              and backup[0].body == primary[0].body and backup[0].status == 201)
        return ok, "primary answered the POST %s, backup got the same body and answered %s" % (
            "/".join(str(r.status) for r in primary) or "nothing",
            "/".join(str(r.status) for r in backup) or "nothing")
    return check


def restored(region, service):
    def check(world, ctx):
        primary = world.db(region, service, "primary")
        backup = world.db(region, service, "backup")
        got = ctx["results"].get(GET, {}).get("data")
        clean = command_data(region, service)
        ok = (not primary.corrupted and primary.get(COMMAND) == clean and got == clean
              and backup.get(COMMAND) == clean)
        return ok, "device got the clean data %s; primary copy repaired (corrupted=%s)" % (
            json.dumps(got), primary.corrupted)
    return check


def no_request_reached(region, service, role, why):
    def check(world, ctx):
        host = host_name(region, service, role)
        got = len(world.server(host).requests)
        return got == 0, "%s received no HTTP request (%s)" % (host, why) if got == 0 else \
            "%s received %d HTTP request(s) (%s)" % (host, got, why)
    return check


def _slow_primary(world):
    world.set_delay(host_name("tr", "cloud", "primary"), 1.5)


def _backup(region, service, **more):
    d = {"server": "%s/%s/backup" % (region, service), "role": "backup", "region": region}
    if more.get("status") == 200:
        d["data"] = command_data(region, service)  # synchronised: the backup has the same data
    d.update(more)
    return d


def catalogue():
    """The seed's nine flows, then the unreachable-primary cases and two contract extras."""
    return [
        Flow("db-error", 1, "tr", "own", "db-error",
             "500 database error, then 302 to the backup; data from the backup (JWT)",
             {GET: _backup("tr", "own", status=200, first=500, temporary=False),
              POST: _backup("tr", "own", status=201)},
             [event("failover-triggered", "tr", "own"), answered_by(GET),
              event("notify-failover", "tr", "own"),
              redirected_write("tr", "own"), write_once],
             note="once failed over, the primary answers 302 at once: the POST follows it with "
                  "method and body kept"),
        Flow("network-error", 2, "tr", "api", "network-error",
             "503 network error: retried via the backup, data from the backup",
             {GET: _backup("tr", "api", status=200, first=503), POST: _backup("tr", "api", status=201)},
             [answered_by(GET), event("notify-failover", "tr", "api"), write_once]),
        Flow("overload", 3, "tr", "cloud", "overload",
             "429 overload: load-balanced to the backup, Retry-After respected",
             {GET: _backup("tr", "cloud", status=200, first=429),
              POST: _backup("tr", "cloud", status=201, attempts=1)},
             [answered_by(GET), event("notify-failover", "tr", "cloud"),
              request_count("tr", "cloud", "primary", 1, why="Retry-After: 1 fences it for the POST"),
              write_once]),
        Flow("timeout", 4, "fr", "api", "timeout",
             "504 timeout: retried on the backup",
             {GET: _backup("fr", "api", status=200, first=504), POST: _backup("fr", "api", status=201)},
             [answered_by(GET), event("notify-failover", "fr", "api"), write_once]),
        Flow("data-corruption", 5, "fr", "cloud", "data-corruption",
             "422 data corruption: clean data restored from the backup",
             {GET: _backup("fr", "cloud", status=200, first=422),
              POST: {"server": "fr/cloud/primary", "status": 201, "attempts": 1}},
             [answered_by(GET), event("restore-from-backup", "fr", "cloud"), restored("fr", "cloud"),
              write_once],
             note="the backup repairs the primary copy, so the POST is served by the primary again"),
        Flow("auth-down", 6, "usa", "api", "auth-down",
             "502 auth server down: backup answers on cached auth, marked temporary",
             {GET: _backup("usa", "api", status=200, first=502, temporary=True),
              POST: _backup("usa", "api", status=201, temporary=True)},
             [answered_by(GET), event("notify-failover", "usa", "api"), write_once]),
        Flow("regional-outage", 7, "usa", "cloud", "regional-outage",
             "503 regional outage: answer from an alternate region",
             {GET: {"server": "de/cloud/primary", "region": "de", "status": 200, "first": 503,
                    "attempts": 2, "data": command_data("de", "cloud")},
              POST: {"server": "de/cloud/primary", "region": "de", "status": 201}},
             [answered_by(GET),
              request_count("usa", "cloud", "backup", 0, why="a regional outage skips the region's backup"),
              write_once]),
        Flow("security-breach", 8, "de", "api", "security-breach",
             "403 security breach: primary isolated, secure answer from the backup",
             {GET: _backup("de", "api", status=200, first=403),
              POST: _backup("de", "api", status=201, attempts=1)},
             [answered_by(GET), event("notify-failover", "de", "api"),
              request_count("de", "api", "primary", 1, why="isolated: its breaker opened at once"),
              write_once]),
        Flow("maintenance", 9, "de", "cloud", "maintenance",
             "503 maintenance: switched to the backup",
             {GET: _backup("de", "cloud", status=200, first=503),
              POST: _backup("de", "cloud", status=201, attempts=1)},
             [answered_by(GET), event("notify-failover", "de", "cloud"),
              request_count("de", "cloud", "primary", 1, why="Retry-After: 30 fences it for the POST"),
              write_once]),
        Flow("primary-refused", None, "tr", "api", "primary-refused",
             "primary unreachable (connection refused): backup",
             {GET: _backup("tr", "api", status=200, first="connect"), POST: _backup("tr", "api", status=201)},
             [answered_by(GET), event("notify-failover", "tr", "api"), write_once]),
        Flow("primary-bad-tls", None, "fr", "api", "primary-bad-tls",
             "primary unreachable (TLS: self-signed certificate): backup",
             {GET: _backup("fr", "api", status=200, first="tls"), POST: _backup("fr", "api", status=201)},
             [answered_by(GET), no_request_reached("fr", "api", "primary", "no credentials sent to it"),
              write_once]),
        Flow("primary-wrong-host", None, "de", "api", "primary-wrong-host",
             "primary unreachable (TLS: certificate for another host): backup",
             {GET: _backup("de", "api", status=200, first="tls"), POST: _backup("de", "api", status=201)},
             [answered_by(GET), no_request_reached("de", "api", "primary", "no credentials sent to it"),
              write_once]),
        Flow("primary-blackhole", None, "usa", "api", "primary-blackhole",
             "primary unreachable (accepts, never answers): backup after the timeout",
             {GET: _backup("usa", "api", status=200, first="connect"), POST: _backup("usa", "api", status=201)},
             [answered_by(GET), event("notify-failover", "usa", "api"), write_once],
             overrides=SHORT_TIMEOUTS, note="short timeouts: " + SHORT_NOTE),
        Flow("slow-primary-write", None, "tr", "cloud", "none",
             "write applied on a slow primary, answer lost: backup replays it, never doubles it",
             {GET: _backup("tr", "cloud", status=200, first="timeout"),
              POST: _backup("tr", "cloud", status=201, first="timeout", replayed=True)},
             [answered_by(GET), write_once,
              request_count("tr", "cloud", "primary", 1, "POST", why="it applied the write")],
             overrides=SHORT_TIMEOUTS, setup=_slow_primary,
             note="primary answers after 1.5 s; short timeouts: " + SHORT_NOTE),
        Flow("bad-key", None, "de", "cloud", "none",
             "plain 403 (wrong API key) is final: never retried, clear error",
             {GET: {"error": "AuthError", "attempts": 1}, POST: {"error": "AuthError", "attempts": 1}},
             [request_count("de", "cloud", "primary", 2, why="one per call, no retry"),
              request_count("de", "cloud", "backup", 0, why="a bad key never fails over")],
             overrides={"api_key": "0" * 32}, app_ok=False),
    ]


# -- running ---------------------------------------------------------------------------------

def parse_output(stdout):
    """-> (events, results, done, crash): events are ('call'|'trace'|'result', item) in order;
    crash is the traceback the app died with (MicroPython prints it on stdout), or ''."""
    events, results, done, crash = [], {}, None, []
    for line in stdout.splitlines():
        if crash or line.startswith("Traceback (most recent call last)"):
            crash.append(line)
        elif line.startswith("CALL "):
            events.append(("call", line[5:]))
        elif line.startswith("TRACE "):
            events.append(("trace", line[6:]))
        elif line.startswith("RESULT "):
            try:
                res = json.loads(line[7:])
            except ValueError:
                continue
            results[res.get("call")] = res
            events.append(("result", res))
        elif line.startswith("DONE "):
            try:
                done = json.loads(line[5:])
            except ValueError:
                pass
    return events, results, done, "\n".join(crash)


def _first(res):
    h = res.get("history") or []
    return h[0][1] if h else None


def compare(expect, res):
    """-> list of mismatches between an expectation dict and a RESULT."""
    bad = []
    if not res:
        return ["no RESULT line"]
    if "error" not in expect and res.get("error"):
        return ["%s: %s" % (res["error"], res.get("message"))]
    for k, v in expect.items():
        got = _first(res) if k == "first" else (len(res.get("history") or []) if k == "attempts"
                                                  and "error" in res else res.get(k))
        if got != v:
            bad.append("%s=%r (expected %r)" % (k, got, v))
    return bad


def run_flow(flow, interpreter="micropython", heap=None, timeout=45):
    """Run one flow in its own world -> a result dict (see `summary_row`)."""
    t0 = time.monotonic()
    with World() as world:
        seed_data(world)
        if flow.setup:
            flow.setup(world)
        apply_scenario(world, flow.region, flow.service, flow.scenario)
        config = world.device_config(flow.region, flow.service, wifi=WIFI, **dict(FAST, **flow.overrides))
        with Device(interpreter, heap=heap) as device:
            device.write_config(config)
            try:
                proc = device.run(APP, timeout=timeout)
                stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
            except Exception as e:  # a hung interpreter is a deviation, not a crash of the demo
                stdout, stderr, rc = "", "%s: %s" % (type(e).__name__, e), None
            used, note = device.interpreter, device.note
        events, results, done, crash = parse_output(stdout)
        ctx = {"results": results}
        problems = []
        for call, exp in flow.expect.items():
            problems += ["%s: %s" % (call, p) for p in compare(exp, results.get(call))]
        if crash:
            last = crash.splitlines()[-1]
            if "MemoryError" in last:
                last += " (the MicroPython heap is too small: raise --heap, e.g. --heap 128K)"
            problems.append("the device app crashed: %s" % last)
        if (rc == 0) != flow.app_ok:
            problems.append("app exit status %r" % rc)
        checks = []
        for fn in flow.checks:
            try:
                ok, text = fn(world, ctx)
            except Exception as e:
                ok, text = False, "check %s failed: %s: %s" % (getattr(fn, "__name__", "?"),
                                                                type(e).__name__, e)
            checks.append({"ok": ok, "check": text})
            if not ok:
                problems.append("server: " + text)
    return {
        "flow": flow.label, "number": flow.number, "name": flow.name, "region": flow.region,
        "service": flow.service, "scenario": flow.scenario, "expected": flow.seed,
        "observed": observed(flow, results), "ok": not problems, "problems": problems,
        "interpreter": used, "interpreter_note": note, "exit_status": rc,
        "server": (results.get(GET) or {}).get("server"),
        "attempts": _attempts(results.get(GET)), "statuses": _statuses(results.get(GET)),
        "calls": [results[c] for c in results], "checks": checks, "events": events,
        "stderr": (crash + "\n" + stderr).strip()[-3000:], "note": flow.note, "seconds": round(time.monotonic() - t0, 2),
    }


def _attempts(res):
    if not res:
        return None
    return res.get("attempts") if "attempts" in res else len(res.get("history") or [])


def _statuses(res):
    return [h[1] for h in (res or {}).get("history") or []]


def observed(flow, results):
    parts = []
    for call in (GET, POST):
        res = results.get(call)
        method = call.split()[0]
        if not res:
            parts.append("%s: no result" % method)
        elif res.get("error"):
            parts.append("%s: %s after %d attempt(s)" % (method, res["error"], _attempts(res)))
        else:
            flags = "".join([" temporary" if res.get("temporary") else "",
                             " replayed" if res.get("replayed") else ""])
            parts.append("%s: %s (%s)%s" % (method, res.get("server"),
                                            "->".join(str(s) for s in _statuses(res)), flags))
    return "; ".join(parts)


def run_all(flows, interpreter="micropython", heap=None, jobs=1):
    if jobs <= 1:
        return [run_flow(f, interpreter, heap) for f in flows]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda f: run_flow(f, interpreter, heap), flows))


# -- printing --------------------------------------------------------------------------------

def print_timeline(row, out):
    w = out.write
    head = "[%s] %s/%s - %s" % (row["flow"], row["region"], row["service"], row["expected"])
    w("\n" + head + "\n")
    if row["note"]:
        w("    note: %s\n" % row["note"])
    for kind, item in row["events"]:
        if kind == "call":
            w("    %s\n" % item)
        elif kind == "trace":
            w("      %s\n" % item)
        else:
            if item.get("error"):
                w("      => %s: %s\n" % (item["error"], item.get("message")))
            else:
                flags = "".join([", TEMPORARY (cached auth)" if item.get("temporary") else "",
                                 ", REPLAYED (already applied)" if item.get("replayed") else ""])
                w("      => %s from %s (%s, region %s), %s attempt(s)%s\n" % (
                    item.get("status"), item.get("server"), item.get("role"), item.get("region"),
                    item.get("attempts"), flags))
    for c in row["checks"]:
        w("    server %s %s\n" % ("[ok]  " if c["ok"] else "[FAIL]", c["check"]))
    for p in row["problems"]:
        w("    DEVIATION: %s\n" % p)
    if row["stderr"] and not row["ok"]:
        w("    device output: %s\n" % row["stderr"].replace("\n", "\n        "))
    w("    (%.2f s)\n" % row["seconds"])


def _wrap(text, width):
    words, lines, cur = text.split(), [], ""
    for word in words:
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = (cur + " " + word) if cur else word
    return lines + ([cur] if cur else [])


def print_table(rows, out):
    cols = [("flow", 20), ("region/service", 14), ("seed expects", 34), ("observed", 44), ("ok", 4)]
    sep = "  "
    out.write("\n" + sep.join(name.ljust(n) for name, n in cols).rstrip() + "\n")
    out.write(sep.join("-" * n for _, n in cols) + "\n")
    for r in rows:
        cells = [[r["flow"]], ["%s/%s" % (r["region"], r["service"])], _wrap(r["expected"], 34),
                 _wrap(r["observed"], 44), ["ok" if r["ok"] else "FAIL"]]
        for i in range(max(len(c) for c in cells)):
            out.write(sep.join((c[i] if i < len(c) else "").ljust(n)
                               for c, (_, n) in zip(cells, cols)).rstrip() + "\n")


SUMMARY_KEYS = ("flow", "number", "name", "region", "service", "scenario", "expected", "observed",
                "ok", "interpreter", "interpreter_note", "attempts", "statuses", "server", "exit_status", "problems",
                "checks", "calls", "seconds")


def summary_row(row):
    return {k: row[k] for k in SUMMARY_KEYS}
