"""`vmmaker-sim`: run device code on a laptop against the mocked VM Maker world.

    vmmaker-sim demo  [--python] [--heap SIZE] [--json] [--flow NAME ...] [--jobs N]
    vmmaker-sim run   APP.py --region R --service S --scenario FLOW [--python] [--heap SIZE]
    vmmaker-sim serve [--scenario REGION/SERVICE/FLOW ...] [--config-out FILE]
    vmmaker-sim board [--flash DIR] [--socket | --pty] [--heap SIZE] [--log FILE] [--echo]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from host_sim import demo
from host_sim.runner import Device, micropython_path
from host_sim.world import REGIONS, World, host_name

EXIT_USAGE = 2


def _interpreter(args):
    return "cpython" if args.python else "micropython"


def _usage_error(msg):
    sys.stderr.write("vmmaker-sim: %s\n" % msg)
    return EXIT_USAGE


def _check_endpoint(region, service, scenario):
    """-> error message or None, naming the valid values."""
    if region not in REGIONS:
        return "unknown region %r: valid regions are %s" % (region, ", ".join(REGIONS))
    if service not in demo.SERVICES:
        return "unknown service %r: valid services are %s" % (service, ", ".join(demo.SERVICES))
    if not demo.valid_endpoint(region, service):
        return "service 'own' (TR own systems, JWT) exists in region 'tr' only"
    if scenario not in demo.SCENARIOS:
        return "unknown scenario %r: valid scenarios are %s" % (scenario, ", ".join(demo.SCENARIOS))
    return None


def _interpreter_banner(interp, heap, out):
    device = Device(interp, heap=heap, source=True)  # no build: just resolve the interpreter
    try:
        if device.note:
            out.write("NOTE: %s\n" % device.note)
        if device.interpreter == "micropython":
            out.write("interpreter: MicroPython (%s), firmware as .mpy%s\n" % (
                micropython_path(), (", heap %s" % heap) if heap else ", default heap"))
        else:
            out.write("interpreter: CPython %s (firmware sources)\n" % sys.version.split()[0])
        return device.interpreter, device.note
    finally:
        device.close()


# -- demo ------------------------------------------------------------------------------------

def cmd_demo(args):
    flows = demo.catalogue()
    if args.flow:
        # A flow is named as in the table: "network-error", or its seed number "2".
        known = {f.name for f in flows} | {str(f.number) for f in flows if f.number}
        unknown = [n for n in args.flow if n not in known]
        if unknown:
            return _usage_error("unknown flow %s: valid flows are %s (or the numbers 1-9)" % (
                ", ".join(unknown), ", ".join(f.name for f in flows)))
        flows = [f for f in flows if f.name in args.flow or str(f.number) in args.flow]
    interp = _interpreter(args)
    out = sys.stderr if args.json else sys.stdout
    t0 = time.monotonic()
    out.write("VM Maker simulator demo: %d flows, each in a fresh world with a fresh simulated board\n"
              % len(flows))
    _interpreter_banner(interp, args.heap, out)
    out.write("SHORTENED FOR THE DEMO: %s; blackhole/slow-primary flows use %s. Retry-After is "
              "not shortened (the backup answers at once; the primary stays fenced).\n"
              % (demo.FAST_NOTE, demo.SHORT_NOTE))
    out.write("device app: %s (GET /v1/%s, then POST /v1/%s)\n" % (
        demo.APP, demo.COMMAND, demo.TELEMETRY))
    out.flush()
    rows = demo.run_all(flows, interp, args.heap, jobs=args.jobs)
    elapsed = time.monotonic() - t0
    for row in rows:
        demo.print_timeline(row, out)  # to stderr with --json, so stdout stays pure JSON
    if not args.json:
        demo.print_table(rows, out)
    notes = sorted({r["interpreter_note"] for r in rows if r["interpreter_note"]})
    for n in notes:
        out.write("NOTE: %s\n" % n)
    bad = [r["flow"] for r in rows if not r["ok"]]
    out.write("\n%d/%d flows ok in %.1f s on %s%s\n" % (
        len(rows) - len(bad), len(rows), elapsed, ", ".join(sorted({r["interpreter"] for r in rows})),
        ("; DEVIATING: " + ", ".join(bad)) if bad else ""))
    if args.json:
        for r in rows:
            if not r["ok"]:
                out.write("[%s] %s\n" % (r["flow"], "; ".join(r["problems"])))
        json.dump([demo.summary_row(r) for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if bad else 0


# -- run -------------------------------------------------------------------------------------

def _parse_sets(items):
    """--set key=value (value is JSON, else a string) -> dict."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError("--set wants KEY=VALUE, not %r" % item)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_run(args):
    msg = _check_endpoint(args.region, args.service, args.scenario)
    if msg:
        return _usage_error(msg)
    if not os.path.isfile(args.app):
        return _usage_error("no such device script %r" % args.app)
    try:
        overrides = _parse_sets(args.set)
    except ValueError as e:
        return _usage_error(str(e))
    app = os.path.abspath(args.app)
    log = sys.stderr
    with World() as world:
        demo.seed_data(world)
        demo.apply_scenario(world, args.region, args.service, args.scenario)
        config = world.device_config(args.region, args.service, **overrides)
        with Device(_interpreter(args), heap=args.heap, source=args.source) as device:
            if device.note:
                log.write("[vmmaker-sim] NOTE: %s\n" % device.note)
            device.write_config(config)
            log.write("[vmmaker-sim] %s/%s, scenario %s; %s on %s (flash %s)\n" % (
                args.region, args.service, args.scenario, os.path.basename(app),
                device.interpreter, device.flash))
            if overrides:
                log.write("[vmmaker-sim] config overrides: %s\n" % json.dumps(overrides))
            log.flush()
            cmd = device.command(app) + list(args.args)
            proc = subprocess.Popen(cmd, cwd=str(device.flash), env=device.env())
            # SIGTERM (a CI runner, `kill`) must not orphan the device process.
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                rc = proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                log.write("[vmmaker-sim] %s ran longer than %s s: killed\n" % (
                    os.path.basename(app), args.timeout))
                rc = 124
            except KeyboardInterrupt:
                rc = 130
            finally:
                signal.signal(signal.SIGTERM, previous)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        _print_world_log(world, log)
    return rc


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _heap_size(text):
    """argparse type for --heap: a byte count with an optional K/M suffix, at least 8K."""
    t = text.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    digits = t[:-1] if mult > 1 else t
    if not digits.isdigit() or int(digits) * mult < 8192:
        raise argparse.ArgumentTypeError("%r is not a heap size: use bytes or K/M, at least 8K, "
                                         "e.g. 128K" % text)
    return text.strip()


def _seconds(text):
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v < 86400:
        raise argparse.ArgumentTypeError("%r: give a number of seconds between 0 and 86400" % text)
    return v


def _print_world_log(world, log):
    """Everything the servers saw and recorded, in time order."""
    lines = []
    for host, server in world.servers.items():
        for r in server.requests:
            lines.append((r.time, "%-34s %-6s %-18s -> %s %s" % (
                host, r.method, r.target, r.status, r.reason or "")))
        for c in server.connections:
            if c.error or c.mode != "normal":
                lines.append((c.time, "%-34s connection in mode %s%s" % (
                    host, c.mode, (": " + c.error) if c.error else "")))
    for e in world.events:
        lines.append((e["time"], "event %s on %s by %s (%s)" % (e["kind"], e["on"], e["by"], e["request"])))
    log.write("[vmmaker-sim] what the servers saw:\n")
    for _, text in sorted(lines, key=lambda item: item[0]):
        log.write("[vmmaker-sim]   %s\n" % text.rstrip())
    if not lines:
        log.write("[vmmaker-sim]   nothing\n")


# -- serve -----------------------------------------------------------------------------------

def _parse_scenario(text):
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError("--scenario wants REGION/SERVICE/FLOW, e.g. tr/api/network-error; not %r" % text)
    msg = _check_endpoint(*parts)
    if msg:
        raise ValueError(msg)
    return parts


def cmd_serve(args):
    try:
        scenarios = [_parse_scenario(s) for s in args.scenario or ()]
    except ValueError as e:
        return _usage_error(str(e))
    first = scenarios[0] if scenarios else ("tr", "api")
    region = args.region or first[0]
    service = args.service or (first[1] if region == first[0] else "api")
    msg = _check_endpoint(region, service, "none")
    if msg:
        return _usage_error(msg)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    tmp = tempfile.mkdtemp(prefix="vmmaker-serve-")
    ca_path = os.path.join(tmp, "vmmaker-ca.pem")
    out = sys.stdout
    try:
        with World() as world:
            demo.seed_data(world)
            for r, s, flow in scenarios:
                demo.apply_scenario(world, r, s, flow)
            with open(ca_path, "wb") as f:
                f.write(world.ca_pem)
            out.write("VM Maker simulator world (every host is a real TLS server on loopback)\n")
            for host, (ip, port) in sorted(world.hosts.items()):
                out.write("  %-36s -> %s:%d\n" % (host, ip, port))
            for r, s, flow in scenarios:
                out.write("scenario: %s/%s %s\n" % (r, s, flow))
            out.write("CA certificate: %s\n" % ca_path)
            config = world.device_config(region, service)
            text = json.dumps(config, indent=2)
            if args.config_out:
                try:
                    with open(args.config_out, "w") as f:
                        f.write(text + "\n")
                except OSError as e:
                    return _usage_error("cannot write --config-out %s: %s" % (args.config_out, e.strerror))
                out.write("device config (%s/%s): written to %s\n" % (region, service, args.config_out))
            else:
                out.write("device config (%s/%s), save as vmmaker.json on the simulated board:\n%s\n"
                          % (region, service, text))
            host = host_name(region, service)
            port = world.hosts[host][1]
            key = ('-H "Authorization: Bearer %s"' % config["token"]) if service == "own" else \
                ('-H "X-API-Key: %s"' % config["api_key"])
            out.write("try it: curl --cacert %s --resolve %s:%d:127.0.0.1 %s https://%s:%d/v1/%s\n"
                      % (ca_path, host, port, key, host, port, demo.COMMAND))
            out.write("device code on this machine: vmmaker.Client.from_file(<config>) (the hosts "
                      "map points every VM Maker name at 127.0.0.1)\n")
            out.write("ready; Ctrl-C to stop\n")
            out.flush()
            while not stop.wait(0.2):
                pass
            out.write("stopping\n")
            out.flush()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        try:
            os.remove(ca_path)
            os.rmdir(tmp)
        except OSError:
            pass
    return 0


# -- board -----------------------------------------------------------------------------------

def cmd_board(args):
    from host_sim.board import Board, BoardError

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    out = sys.stdout
    try:
        try:
            board = Board(args.flash, transport="pty" if args.pty else "socket", heap=args.heap,
                          port=args.port, console_file=args.log)
        except (BoardError, OSError, ValueError) as e:
            return _usage_error("board: %s" % e)
        with board:
            out.write("board: %s\n" % board.address)
            out.write("flash: %s%s\n" % (board.flash, "" if args.flash else
                                         " (temporary: removed when the board stops)"))
            out.write("use: mpremote connect %s fs ls   (or exec, run, cp, mip install, "
                      "reset...%s)\n" % (board.address, "" if args.pty else "; repl needs --pty"))
            if args.log:
                out.write("console log: %s\n" % args.log)
            out.write("running; Ctrl-C or SIGTERM stops it\n")
            out.flush()
            pos = 0
            while not stop.wait(0.1):
                if args.echo:
                    text, pos = board.program_text(pos)
                    if text:
                        out.write(text)
                        out.flush()
                if board.state == "down":
                    out.write("board: the interpreter does not start; see the console output\n")
                    out.write(board.console_text())
                    return 1
            out.write("board: stopped\n")
            out.flush()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0


# -- entry -----------------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(prog="vmmaker-sim", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", metavar="{demo,run,serve,board}")
    sub.required = True

    def device_opts(sp):
        sp.add_argument("--python", action="store_true",
                        help="run the device code under CPython instead of MicroPython")
        sp.add_argument("--heap", metavar="SIZE", type=_heap_size,
                        help="MicroPython GC heap, passed as -X heapsize=SIZE, e.g. 96K; the SDK and "
                             "the sample app need about 96K on the 64-bit unix port (a 32-bit "
                             "ESP32 needs less: pointers are half the size)")

    d = sub.add_parser("demo", help="run every seed failure flow on a simulated board and check it")
    device_opts(d)
    d.add_argument("--json", action="store_true", help="print the summary as JSON (timeline to stderr)")
    d.add_argument("--flow", action="append", metavar="NAME", help="run only this flow (repeatable)")
    d.add_argument("--jobs", type=int, default=1, help="flows run in parallel, each with its own world")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run your device script against the world with one scenario on")
    r.add_argument("app", metavar="APP.py")
    r.add_argument("args", nargs="*", help="arguments for the script")
    r.add_argument("--region", default="tr", help="tr, fr, usa or de (default tr)")
    r.add_argument("--service", default="api", help="api, cloud or own (default api)")
    r.add_argument("--scenario", default="none", help="one of: " + ", ".join(demo.SCENARIOS))
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a device config key (VALUE is JSON), e.g. --set backoff_base=0.05")
    r.add_argument("--source", action="store_true", help="MicroPython: load firmware .py, not .mpy")
    r.add_argument("--timeout", type=_seconds, default=120, help="kill the script after this many seconds")
    device_opts(r)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("serve", help="start the world and keep it running for your own board/code")
    s.add_argument("--scenario", action="append", metavar="REGION/SERVICE/FLOW",
                   help="switch a flow on (repeatable); FLOW is one of: " + ", ".join(demo.SCENARIOS))
    s.add_argument("--region", help="region of the printed device config (default: the first "
                   "scenario's, else tr)")
    s.add_argument("--service", help="service of the printed device config (default: the first "
                   "scenario's, else api)")
    s.add_argument("--config-out", metavar="FILE", help="write the device config to FILE")
    s.set_defaults(func=cmd_serve)

    b = sub.add_parser("board", help="an emulated MicroPython board for mpremote (raw REPL over a "
                       "socket or a pseudo-terminal)",
                       description="Start an emulated board (the MicroPython unix port behind a "
                       "raw-REPL console) and print 'board: ADDRESS' first; give ADDRESS to "
                       "`mpremote connect`. Runs until Ctrl-C or SIGTERM.")
    b.add_argument("--flash", metavar="DIR", help="the board's filesystem (default: a temporary "
                   "directory, removed at exit)")
    t = b.add_mutually_exclusive_group()
    t.add_argument("--socket", action="store_true", help="console on socket://127.0.0.1:PORT "
                   "(the default)")
    t.add_argument("--pty", action="store_true", help="console on a pseudo-terminal /dev/pts/N")
    b.add_argument("--port", type=int, default=0, help="with --socket: the TCP port (default: any "
                   "free one)")
    b.add_argument("--heap", metavar="SIZE", type=_heap_size,
                   help="MicroPython GC heap for device code, e.g. 128K, as with `run --heap` (the "
                   "board adds 12K for its own agent); default: the unix port's")
    b.add_argument("--log", metavar="FILE", help="append everything the board prints to FILE")
    b.add_argument("--echo", action="store_true",
                   help="also print here what programs on the board print (boot.py, main.py, REPL "
                        "commands; not the raw-REPL traffic of mpremote or vmmaker-deploy)")
    b.set_defaults(func=cmd_board)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
