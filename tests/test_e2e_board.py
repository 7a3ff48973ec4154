"""From laptop to (emulated) board, end to end, as a user does it.

The mocked VM Maker world runs on loopback; an emulated board (host_sim/board.py: the MicroPython
unix port behind a raw-REPL console) waits on socket://; `vmmaker-deploy` runs as a subprocess
and puts the SDK, the sample application and a device config on it over unmodified mpremote;
after the reset the board boots main.py, joins the simulated WiFi and goes through the seed's
TR api network-error flow. The result is read from the board (its RESULT lines on the console)
and from the servers (what the backup recorded, the notify-failover events).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from host_sim import mpybuild
from host_sim.runner import micropython_path
from host_sim.world import host_name
from tests.test_deploy import build_hashes as intended_files

try:
    from host_sim.board import Board
except ImportError:  # pragma: no cover
    Board = None

pytestmark = pytest.mark.skipif(Board is None or micropython_path() is None,
                                reason="no emulated board (host_sim/board.py + MicroPython)")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WIFI = {"ssid": "sim", "password": "sim-wifi-0f-the-e2e-test"}
DEPLOY_TIMEOUT = 240  # s; a deploy takes ~5 s unloaded
BOOT_TIMEOUT = 120    # s from the reset to the app's DONE line


def deploy_cmd():
    script = BIN / "vmmaker-deploy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.deploy"]


def write_config(world, tmp_path, region, service):
    config = world.device_config(region, service, wifi=WIFI)
    path = tmp_path / "vmmaker.json"
    path.write_text(json.dumps(config))
    return config, path


def secrets_of(world):
    return [world.api_key, WIFI["password"]]


def assert_no_secrets(world, *texts):
    for text in texts:
        for secret in secrets_of(world):
            assert secret not in text


def flash_files(flash):
    return {"/" + str(p.relative_to(flash)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(flash).rglob("*")) if p.is_file()}


def board_listing(address):
    """{path: sha256} of the files on the board, asked of the board itself through mpremote."""
    code = (
        "import os, hashlib, binascii\n"
        "def w(d):\n"
        " for e in os.ilistdir(d):\n"
        "  p = (d if d != '/' else '') + '/' + e[0]\n"
        "  if e[1] & 0x4000:\n"
        "   w(p)\n"
        "  else:\n"
        "   h = hashlib.sha256(open(p, 'rb').read())\n"
        "   print('FILE', p, binascii.hexlify(h.digest()).decode())\n"
        "w('/')\n")
    mpremote = str(BIN / "mpremote") if (BIN / "mpremote").exists() else "mpremote"
    r = subprocess.run([mpremote, "connect", address, "exec", code], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(line.split()[1:] for line in r.stdout.splitlines() if line.startswith("FILE "))


def results(console):
    return [json.loads(line[len("RESULT "):]) for line in console.splitlines()
            if line.startswith("RESULT ")]


@pytest.fixture
def board(tmp_path):
    with Board(tmp_path / "flash", transport="socket") as b:
        b.wait_idle(timeout=60)
        yield b


def test_deploy_boot_and_failover_against_the_world(world, board, tmp_path):
    region, service = "tr", "api"
    primary, backup = host_name(region, service), host_name(region, service, "backup")
    world.set_flow(region, service, "network-error")
    world.put_data(region, service, "command", {"led": "on"})
    config, config_path = write_config(world, tmp_path, region, service)
    intended = intended_files(b"")  # the build, made when the deploy makes it

    mark = board.mark()
    r = subprocess.run(deploy_cmd() + ["--port", board.address, "--config", str(config_path)],
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=DEPLOY_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hard reset" in r.stdout

    # The board: after the reset it runs main.py, which joins WiFi and makes its two calls.
    board.wait_for("DONE ", timeout=BOOT_TIMEOUT, since=mark)
    console = board.console_text(mark)
    assert "wifi: connected" in console
    done = [l for l in console.splitlines() if l.startswith("DONE ")][-1]
    assert json.loads(done[len("DONE "):]) == {"ok": True, "calls": 2}
    got, posted = results(console)[-2:]
    assert got["call"] == "GET /v1/command" and got["status"] == 200
    assert got["server"] == "tr/api/backup" and got["data"] == {"led": "on"}
    assert got["history"] == [[primary, 503], [backup, 200]] and got["attempts"] == 2
    assert posted["call"] == "POST /v1/telemetry" and posted["status"] == 201
    assert posted["server"] == "tr/api/backup"
    assert posted["history"] == [[primary, 503], [backup, 201]]

    # The servers: the primary refused both, the backup served both and notified the primary.
    primary_seen = [(q.method, q.path, q.status) for q in world.server(primary).requests]
    backup_seen = [(q.method, q.path, q.status) for q in world.server(backup).requests]
    assert primary_seen == [("GET", "/v1/command", 503), ("POST", "/v1/telemetry", 503)]
    assert backup_seen == [("GET", "/v1/command", 200), ("POST", "/v1/telemetry", 201)]
    telemetry = [q for q in world.server(backup).requests if q.method == "POST"][0]
    assert telemetry.json()["temp_c"] == 21.5
    assert telemetry.headers.get("x-api-key") == world.api_key
    events = [(e["kind"], e["by"], e["request"]) for e in world.endpoint_server(region,
                                                                                 service).events]
    assert events == [("notify-failover", backup, "GET /v1/command"),
                      ("notify-failover", backup, "POST /v1/telemetry")]
    assert world.db(region, service, "primary").get("telemetry")["temp_c"] == 21.5  # replicated

    # The board holds exactly the intended files; no secret was printed by the tool or the board.
    on_board = (board.flash / "vmmaker.json").read_bytes()
    assert json.loads(on_board) == config
    intended["/vmmaker.json"] = hashlib.sha256(on_board).hexdigest()
    assert flash_files(board.flash) == intended
    assert_no_secrets(world, r.stdout, r.stderr, board.console_text())


def test_interrupted_deploy_then_rerun_leaves_exactly_the_build(world, board, tmp_path):
    config, config_path = write_config(world, tmp_path, "usa", "api")
    cmd = deploy_cmd() + ["--port", board.address, "--config", str(config_path), "--no-reset"]
    want = intended_files(b"")
    # A killed deploy cannot remove its build directory: keep it in this test's tmp_path.
    env = dict(os.environ, TMPDIR=str(tmp_path))

    # 1. Killed (SIGKILL, as a pulled cable or a closed laptop) after its third file.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=str(tmp_path), env=env)
    killer = threading.Timer(DEPLOY_TIMEOUT, p.kill)  # never hang the test run
    killer.start()
    wrote = 0
    try:
        for line in p.stdout:
            if line.startswith("wrote"):
                wrote += 1
                if wrote == 3:
                    p.send_signal(signal.SIGKILL)
                    break
    finally:
        p.kill()
        p.communicate(timeout=60)
        killer.cancel()
    assert wrote == 3 and p.returncode == -signal.SIGKILL
    files = flash_files(board.flash)
    assert 3 <= len(files) < len(want), files

    # 2. Stopped half way through a file (the test hook writes half of the fifth file's .part).
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path),
                       timeout=DEPLOY_TIMEOUT, env=dict(env, VMMAKER_DEPLOY_INTERRUPT_AFTER="1"))
    assert r.returncode == 99, r.stdout + r.stderr
    assert r.stdout.count("up to date") >= 3
    assert any(p.endswith(".part") for p in flash_files(board.flash))

    # 3. The re-run resumes: what is there is skipped, the half file replaced, nothing left over.
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path),
                       timeout=DEPLOY_TIMEOUT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "half-written file of an interrupted deploy" in r.stdout
    assert r.stdout.count("up to date") >= 4
    want["/vmmaker.json"] = hashlib.sha256((board.flash / "vmmaker.json").read_bytes()).hexdigest()
    assert flash_files(board.flash) == want
    assert board_listing(board.address) == want     # and as the board itself sees its files
    assert json.loads((board.flash / "vmmaker.json").read_text()) == config
    assert_no_secrets(world, r.stdout, r.stderr, board.console_text())


def test_reset_runs_main_once_even_when_the_app_prints_an_error(world, board, tmp_path):
    """How to reset is decided from the board (machine.reset there or not), never from what the
    freshly reset application prints: an app logging an exception name must not be soft-reset
    into running twice."""
    config, config_path = write_config(world, tmp_path, "tr", "api")
    app = tmp_path / "app.py"
    app.write_text("print('APP-START')\nprint('sensor read failed: OSError 5 (Traceback-free)')\n")
    mark = board.mark()
    r = subprocess.run(deploy_cmd() + ["--port", board.address, "--config", str(config_path),
                                       "--app", str(app)],
                       capture_output=True, text=True, cwd=str(tmp_path), timeout=DEPLOY_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done: hard reset" in r.stdout
    board.wait_for("APP-START", timeout=BOOT_TIMEOUT, since=mark)
    import time
    time.sleep(5)  # the old code soft-reset within 3 s of the app's output
    assert board.console_text(mark).count("APP-START") == 1
