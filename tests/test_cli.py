"""The `vmmaker-sim` CLI: the demo under both interpreters, `run` argument errors, `serve`."""
import http.client
import json
import queue
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "host_sim.cli"]
REQUIRED = ("flow", "region", "service", "expected", "observed", "ok", "interpreter",
            "attempts", "statuses", "server")


def cli(*args, timeout=120):
    return subprocess.run(CLI + list(args), cwd=str(ROOT), capture_output=True, text=True,
                          timeout=timeout)


def test_demo_json(interp):
    args = ["demo", "--json"] + (["--python"] if interp == "cpython" else [])
    t0 = time.monotonic()
    proc = cli(*args)
    elapsed = time.monotonic() - t0
    rows = json.loads(proc.stdout)  # the summary alone on stdout; the narration is on stderr
    bad = ["%s: %s" % (r["flow"], "; ".join(r["problems"])) for r in rows if not r["ok"]]
    assert not bad, "deviating flows:\n" + "\n".join(bad) + "\n" + proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert elapsed < 60
    assert len(rows) >= 10
    for r in rows:
        for key in REQUIRED:
            assert key in r, (r["flow"], key)
        assert r["interpreter"] == interp
    by_number = {r["number"]: r for r in rows if r["number"]}
    assert sorted(by_number) == list(range(1, 10))  # all nine seed flows
    where = {n: (by_number[n]["region"], by_number[n]["service"]) for n in by_number}
    assert where == {1: ("tr", "own"), 2: ("tr", "api"), 3: ("tr", "cloud"), 4: ("fr", "api"),
                     5: ("fr", "cloud"), 6: ("usa", "api"), 7: ("usa", "cloud"), 8: ("de", "api"),
                     9: ("de", "cloud")}
    # Who answered, per the seed: the region's backup, except the regional outage (flow 7).
    for n, r in by_number.items():
        expected = "de/cloud/primary" if n == 7 else "%s/%s/backup" % where[n]
        assert r["server"] == expected, (n, r["server"])
        assert r["attempts"] >= 2 and len(r["statuses"]) >= r["attempts"]
    assert by_number[1]["statuses"][:2] == [500, 302]
    assert [by_number[n]["statuses"][0] for n in (2, 3, 4, 5, 6, 7, 8, 9)] == \
        [503, 429, 504, 422, 502, 503, 403, 503]
    get6 = by_number[6]["calls"][0]
    assert get6["temporary"] is True
    names = {r["name"] for r in rows}
    assert {"primary-refused", "primary-bad-tls"} <= names  # unreachable primary -> backup
    for r in rows:
        if r["name"].startswith("primary-"):
            assert r["server"] == "%s/%s/backup" % (r["region"], r["service"])
            assert r["statuses"][0] in ("connect", "tls", "timeout")


def test_demo_text_says_what_it_shortened():
    proc = cli("demo", "--python", "--flow", "network-error", "--flow", "overload")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = proc.stdout.split("\n\n")[0]
    assert "SHORTENED FOR THE DEMO" in head and "backoff_base" in head
    assert "attempt 1 api-tr.vmmaker.com (primary): 503 network-error" in proc.stdout
    assert "2/2 flows ok" in proc.stdout


def test_demo_unknown_flow_exits_2():
    proc = cli("demo", "--flow", "no-such-flow")
    assert proc.returncode == 2
    assert "network-error" in proc.stderr  # lists the valid names


@pytest.mark.parametrize("args, words", [
    (["--region", "mars"], ["unknown region 'mars'", "tr, fr, usa, de"]),
    (["--region", "tr", "--scenario", "meteor"], ["unknown scenario 'meteor'", "maintenance"]),
    (["--region", "de", "--service", "own"], ["'own'", "'tr' only"]),
    (["--region", "tr", "--timeout", "-1"], ["--timeout", "seconds"]),
    (["--region", "tr", "--timeout", "nan"], ["--timeout", "seconds"]),
    (["--region", "tr", "--heap", "abc"], ["--heap", "128K"]),
    (["--region", "tr", "--heap", "1"], ["--heap", "at least 8K"]),
])
def test_run_rejects_bad_arguments(args, words):
    proc = cli("run", "examples/device_app.py", *args, "--python", timeout=30)
    assert proc.returncode == 2
    for w in words:
        assert w in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_streams_the_app_and_returns_its_status():
    proc = cli("run", "examples/device_app.py", "--region", "de", "--service", "cloud",
               "--scenario", "maintenance", "--python", "--set", "backoff_base=0.05", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(l[len("RESULT "):]) for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert [r["server"] for r in results] == ["de/cloud/backup", "de/cloud/backup"]
    assert "what the servers saw" in proc.stderr
    bad = cli("run", "examples/device_app.py", "--region", "de", "--python",
              "--set", "api_key=wrong", timeout=60)
    assert bad.returncode == 1
    assert '"error": "AuthError"' in bad.stdout


def test_run_sigterm_stops_the_device_process(tmp_path):
    # `kill` on vmmaker-sim run must not leave the device script running (a CI runner
    # cancelling a job sends SIGTERM).
    app = tmp_path / "spin.py"
    app.write_text("import os\nopen('pid', 'w').write(str(os.getpid()))\nwhile True:\n    pass\n")
    proc = subprocess.Popen(CLI + ["run", str(app), "--region", "tr", "--python"], cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        child = None
        deadline = time.monotonic() + 30
        while child is None and time.monotonic() < deadline:
            for p in Path(tempfile.gettempdir()).glob("vmmaker-flash-*/pid"):
                if p.stat().st_mtime >= time.time() - 60 and p.read_text().strip():
                    child = int(p.read_text())
            time.sleep(0.1)
        assert child, "the device script did not start"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while Path("/proc/%d" % child).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path("/proc/%d" % child).exists(), "device process %d still running" % child


def test_serve_config_out_unwritable_is_a_clear_error(tmp_path):
    proc = cli("serve", "--config-out", str(tmp_path / "no" / "such" / "dir.json"), timeout=30)
    assert proc.returncode == 2
    assert "--config-out" in proc.stderr and "Traceback" not in proc.stderr


def _lines(stream, q):
    for line in stream:
        q.put(line)
    q.put(None)


def test_serve_prints_addresses_and_serves(tmp_path):
    config_out = tmp_path / "vmmaker.json"
    proc = subprocess.Popen(CLI + ["serve", "--scenario", "tr/api/network-error",
                                   "--config-out", str(config_out)],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    q = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, q), daemon=True).start()
    out = []
    try:
        deadline = time.monotonic() + 30
        while True:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "serve exited early:\n" + "".join(out) + proc.stderr.read()
            out.append(line)
            if line.startswith("ready"):
                break
        text = "".join(out)
        addr = {}
        for line in out:
            parts = line.split()
            if len(parts) == 3 and parts[1] == "->":
                host, port = parts[0], int(parts[2].rsplit(":", 1)[1])
                assert parts[2].startswith("127.0.0.1:")
                addr[host] = port
        assert len(addr) == 18 and "clod-api-usa.vmmaker.com" in addr
        ca_path = [l.split(": ", 1)[1].strip() for l in out if l.startswith("CA certificate:")][0]
        config = json.loads(config_out.read_text())
        assert config["region"] == "tr" and config["service"] == "api"
        assert config["hosts"]["api-tr.vmmaker.com"][1] == addr["api-tr.vmmaker.com"]
        assert "scenario: tr/api network-error" in text
        # The world is live and the scenario is on: a real TLS request to the primary.
        ctx = ssl.create_default_context(cafile=ca_path)

        class Conn(http.client.HTTPSConnection):
            def connect(self):  # connect to loopback, verify the VM Maker name
                import socket
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sock = ctx.wrap_socket(sock, server_hostname=self.host)

        conn = Conn("api-tr.vmmaker.com", addr["api-tr.vmmaker.com"], context=ctx, timeout=5)
        conn.request("GET", "/v1/command", headers={"X-API-Key": config["api_key"]})
        resp = conn.getresponse()
        assert resp.status == 503 and resp.getheader("X-VMM-Reason") == "network-error"
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    assert not Path(ca_path).exists()  # the temp CA file is cleaned up


def test_serve_rejects_bad_scenario():
    proc = cli("serve", "--scenario", "tr/api", timeout=30)
    assert proc.returncode == 2
    assert "REGION/SERVICE/FLOW" in proc.stderr


def test_demo_says_when_it_falls_back_to_cpython(monkeypatch, capsys):
    # A platform without a MicroPython build: the runner uses CPython and the demo says so.
    from host_sim import cli as cli_module, runner
    monkeypatch.setattr(runner, "micropython_path", lambda: None)
    monkeypatch.setattr(cli_module, "micropython_path", lambda: None)
    rc = cli_module.main(["demo", "--json", "--flow", "network-error"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(captured.out)
    assert rows[0]["interpreter"] == "cpython"
    assert "running on CPython instead" in rows[0]["interpreter_note"]
    assert "NOTE: no MicroPython build" in captured.err
