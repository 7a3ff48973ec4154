"""The emulated board (host_sim/board.py) driven by the real, unmodified mpremote, over a
socket:// address and over a pseudo-terminal, plus direct raw-REPL clients for what mpremote
does not show (raw-paste flow control, Ctrl-C, console input)."""
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_sim.board import Board, continue_with_input
from host_sim.runner import micropython_path

BIN = Path(sys.executable).parent
MPREMOTE = str(BIN / "mpremote") if (BIN / "mpremote").exists() else "mpremote"
VMMAKER_SIM = str(BIN / "vmmaker-sim")

pytestmark = pytest.mark.skipif(micropython_path() is None,
                                reason="the emulated board needs the MicroPython unix port")

TRANSPORTS = ["socket"] + (["pty"] if sys.platform.startswith("linux") else [])


@pytest.fixture(params=TRANSPORTS)
def board(request, tmp_path):
    flash = tmp_path / "flash"
    with Board(flash, transport=request.param) as b:
        b.wait_idle(10)
        yield b


@pytest.fixture
def sboard(tmp_path):
    """A socket board, for tests about the board rather than the transport."""
    with Board(tmp_path / "flash") as b:
        b.wait_idle(10)
        yield b


def mpr(board, *args, timeout=30, check=True):
    r = subprocess.run([MPREMOTE, "connect", board.address, *args], capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("mpremote %s -> %d\nstdout: %s\nstderr: %s\nconsole: %s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr, board.console_text()[-2000:]))
    return r


class Client:
    """A bare console client (socket or pty) for protocol-level checks."""

    def __init__(self, address):
        if address.startswith("socket://"):
            host, port = address[len("socket://"):].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=5)
            self.fd = self.sock.fileno()
        else:
            import tty
            self.sock = None
            self.fd = os.open(address, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.fd)
        self.buf = b""

    def write(self, data):
        if self.sock:
            self.sock.sendall(data)
        else:
            os.write(self.fd, data)

    def _fill(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        data = self.sock.recv(65536) if self.sock else os.read(self.fd, 65536)
        if not data:
            raise EOFError("console closed")
        self.buf += data
        return True

    def read_until(self, ending, timeout=10):
        deadline = time.monotonic() + timeout
        while ending not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError("no %r; got %r" % (ending, self.buf))
        i = self.buf.index(ending) + len(ending)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exactly(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(left):
                raise TimeoutError("wanted %d bytes; got %r" % (n, self.buf))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def enter_raw(self):
        self.write(b"\r\x03")
        time.sleep(0.05)
        self.buf = b""
        while self._fill(0.05):
            self.buf = b""
        self.write(b"\r\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>")

    def close(self):
        if self.sock:
            self.sock.close()
        else:
            os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- mpremote, on both transports ------------------------------------------------------------

def test_fs_commands(board, tmp_path):
    """fs cp to and from the board (text, binary, a directory with -r), ls, mkdir, cat, rm."""
    local = tmp_path / "local"
    (local / "pkg" / "sub").mkdir(parents=True)
    (local / "hello.txt").write_text("hello board\n")
    blob = bytes(range(256)) * 12 + b"\x00\x04\x03\x01\r\n"  # every byte value, REPL controls too
    (local / "blob.bin").write_bytes(blob)
    (local / "pkg" / "__init__.py").write_text("X = 1\n")
    (local / "pkg" / "sub" / "mod.py").write_text("Y = 2\n")
    r = mpr(board, "fs", "cp", str(local / "hello.txt"), ":hello.txt",
            "+", "fs", "cp", str(local / "blob.bin"), ":/blob.bin",
            "+", "fs", "mkdir", ":data",
            "+", "fs", "cp", "-r", str(local / "pkg"), ":",
            "+", "fs", "ls",
            "+", "fs", "ls", ":/pkg/sub",
            "+", "fs", "cat", ":hello.txt",
            "+", "fs", "cp", ":blob.bin", str(tmp_path / "back.bin"),
            "+", "fs", "cp", "-r", ":pkg", str(tmp_path / "pkg_back"))
    flash = board.flash
    assert (flash / "hello.txt").read_text() == "hello board\n"
    assert (flash / "blob.bin").read_bytes() == blob
    assert (flash / "data").is_dir()
    assert (flash / "pkg" / "sub" / "mod.py").read_text() == "Y = 2\n"
    assert (tmp_path / "back.bin").read_bytes() == blob
    assert (tmp_path / "pkg_back" / "sub" / "mod.py").read_text() == "Y = 2\n"
    out = r.stdout
    assert "%d blob.bin" % len(blob) in out          # sizes, as a board's filesystem lists them
    assert "12 hello.txt" in out and "data/" in out and "pkg/" in out
    assert "6 mod.py" in out
    assert "hello board" in out
    r = mpr(board, "fs", "rm", ":hello.txt", "+", "fs", "rm", "-r", ":pkg", "+", "fs", "rmdir",
            ":data", "+", "fs", "ls", ":/")
    assert sorted(os.listdir(flash)) == ["blob.bin"]
    assert r.stdout.rstrip().endswith("ls :/\n        3078 blob.bin")
    r = mpr(board, "fs", "cat", ":missing.txt", check=False)
    assert r.returncode != 0 and "No such file" in (r.stdout + r.stderr)


def test_exec_eval_run_and_tracebacks(board, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys, os\nprint('running on', sys.platform)\n"
                      "print('cwd', os.getcwd(), sorted(os.listdir('/')))\n"
                      "for i in range(3):\n    print('line', i)\n")
    (board.flash / "onflash.txt").write_text("x")
    r = mpr(board, "exec", "print(1+1)", "+", "eval", "6*7", "+", "run", str(script))
    lines = r.stdout.splitlines()
    assert lines[:2] == ["2", "42"]
    assert "running on linux" in r.stdout
    assert "cwd / ['onflash.txt']" in r.stdout  # the flash is the whole filesystem
    assert "line 2" in r.stdout
    r = mpr(board, "exec", "def f():\n    return 1/0\nf()", check=False)
    assert r.returncode == 1
    assert ("Traceback (most recent call last):\n"
            '  File "<stdin>", line 3, in <module>\n'
            '  File "<stdin>", line 2, in f\n'
            "ZeroDivisionError: divide by zero" in r.stdout.replace("\r\n", "\n"))
    assert "board_agent" not in r.stdout
    r = mpr(board, "exec", "print('a'", check=False)
    assert r.returncode == 1 and "SyntaxError" in r.stdout


def test_soft_reset_resume_and_reset_runs_main(board):
    # state survives between mpremote sessions only with `resume` (no soft reset)
    mpr(board, "exec", "counter = 41")
    assert mpr(board, "resume", "eval", "counter + 1").stdout.strip() == "42"
    assert mpr(board, "exec", "print('counter' in globals())").stdout.strip() == "False"
    mpr(board, "exec", "counter = 1", "+", "soft-reset")
    assert mpr(board, "resume", "exec", "print('counter' in globals())").stdout.strip() == "False"

    # a soft reset from the raw REPL does not run main.py (as on a board); a reset does
    (board.flash / "boot.py").write_text("print('BOOT.PY RAN')\n")
    (board.flash / "main.py").write_text(
        "import machine, sys\n"
        "print('MAIN.PY RAN, reset cause', machine.reset_cause())\n"
        "with open('main_ran.txt', 'a') as f:\n    f.write('x')\n"
        "from_main = 'yes'\n"
        "sys.exit(0)\n")
    mark = board.mark()
    mpr(board, "soft-reset")
    board.wait_idle(10)
    text = board.console_text(mark)
    assert "MPY: soft reboot" in text and "BOOT.PY RAN" in text and "MAIN.PY" not in text
    assert not (board.flash / "main_ran.txt").exists()

    mark = board.mark()
    boots = board.boots
    mpr(board, "reset")
    board.wait_for("MAIN.PY RAN, reset cause 2", since=mark)
    board.wait_for(">>> ", since=mark)  # sys.exit() ends main.py: the friendly REPL follows
    board.wait_idle(10)
    text = board.console_text(mark)
    assert text.index("BOOT.PY RAN") < text.index("MAIN.PY RAN") < text.index("Type \"help()\"")
    assert (board.flash / "main_ran.txt").read_text() == "x"
    assert board.boots == boots + 2  # mpremote's soft reset on connecting, then the reset
    # main.py ran in the REPL's namespace; `resume` keeps it
    assert mpr(board, "resume", "eval", "from_main").stdout.strip() == "yes"


def test_mip_install_from_local_package(board, tmp_path):
    pkg = tmp_path / "tinypkg"
    pkg.mkdir()
    (pkg / "tinymod.py").write_text("def hello():\n    return 'hello from tinymod'\n")
    (pkg / "package.json").write_text(
        '{"urls": [["tinymod.py", "tinymod.py"]], "version": "0.1"}')
    r = mpr(board, "mip", "install", "--target", "/lib", str(pkg / "package.json"))
    assert "Done" in r.stdout
    assert (board.flash / "lib" / "tinymod.py").exists()
    r = mpr(board, "exec", "import tinymod; print(tinymod.hello(), tinymod.__file__)")
    assert r.stdout.strip() == "hello from tinymod /lib/tinymod.py"
    # without --target mip finds /lib on sys.path, as on a board
    r = mpr(board, "mip", "install", str(pkg / "package.json"))
    assert "/lib/tinymod.py" in r.stdout


def test_os_rename_on_the_flash(sboard):
    """os.rename works as on a board (the unix port's rooted VfsPosix alone renames the new name
    to itself)."""
    (sboard.flash / "a.txt").write_text("A")
    (sboard.flash / "d").mkdir()
    (sboard.flash / "exists.txt").write_text("E")
    r = mpr(sboard, "exec",
            "import os\nos.rename('/a.txt', 'b.txt')\nos.chdir('/d')\n"
            "os.rename('../b.txt', 'c.txt')\nos.rename('/d/c.txt', '/exists.txt')\n"
            "try:\n    os.rename('/nope', '/x')\nexcept OSError as e:\n    print('error', e)")
    assert "error [Errno 2] ENOENT" in r.stdout
    assert sorted(os.listdir(sboard.flash)) == ["d", "exists.txt"]
    assert (sboard.flash / "exists.txt").read_text() == "A"


def test_mpremote_mount(sboard, tmp_path):
    """mpremote mount: its binary file protocol runs through the raw REPL's console input and
    output, which the board passes byte for byte."""
    local = tmp_path / "mnt"
    local.mkdir()
    (local / "mounted_mod.py").write_text("VALUE = 'from the host'\n")
    (local / "data.bin").write_bytes(bytes(range(256)))
    r = mpr(sboard, "mount", str(local), "exec",
            "import mounted_mod, os\nprint(mounted_mod.VALUE, os.getcwd())\n"
            "print(open('data.bin', 'rb').read() == bytes(range(256)))\n"
            "open('made_on_board.txt', 'w').write('hi')")
    assert "from the host /remote" in r.stdout and "True" in r.stdout
    assert (local / "made_on_board.txt").read_text() == "hi"


@pytest.mark.skipif("pty" not in TRANSPORTS, reason="pseudo-terminals: Linux only here")
def test_mpremote_repl_over_pty(tmp_path):
    """`mpremote repl` (it needs a terminal, so it runs in one): the friendly REPL, and a
    Ctrl-D soft reset that shows main.py's output, as watching a board's console."""
    import pty
    with Board(tmp_path / "flash", transport="pty") as b:
        b.wait_idle()
        (b.flash / "main.py").write_text("print('app says hi')\n")
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover (the child)
            os.execv(MPREMOTE, [MPREMOTE, "connect", b.address, "repl"])
        try:
            term = Client.__new__(Client)
            term.sock, term.fd, term.buf = None, fd, b""
            term.read_until(b"Use Ctrl-] or Ctrl-x to exit this shell\r\n")
            import termios
            deadline = time.monotonic() + 10
            while termios.tcgetattr(fd)[3] & termios.ECHO:  # until mpremote has its raw mode
                assert time.monotonic() < deadline, "mpremote never set its terminal up"
                time.sleep(0.02)
            term.write(b"6*7\r")
            assert term.read_until(b">>> ").endswith(b"6*7\r\n42\r\n>>> ")
            term.write(b"\x04")
            out = term.read_until(b">>> ")
            assert b"MPY: soft reboot\r\napp says hi\r\nMicroPython v" in out
            term.write(b"\x1d")  # Ctrl-]: leave mpremote
            _, status = os.waitpid(pid, 0)
            pid = None
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)


def test_interrupted_exec_then_next_session(board):
    """mpremote exec of an endless loop (killed by a timeout): the next mpremote's Ctrl-C stops
    it and the session works."""
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([MPREMOTE, "connect", board.address, "exec",
                        "import time\nwhile True:\n    time.sleep(0.01)"],
                       capture_output=True, timeout=2)
    assert board.state == "running"
    assert mpr(board, "exec", "print('alive')").stdout.strip() == "alive"


# -- protocol details, with a bare client ----------------------------------------------------

def test_raw_repl_protocol_and_ctrl_c(board):
    with Client(board.address) as c:
        c.enter_raw()
        c.write(b"print('out')\x04")
        assert c.read_until(b"\x04>") == b"OKout\n\x04\x04>"
        c.write(b"raise ValueError('bad')\x04")
        got = c.read_until(b"\x04>")
        assert got.startswith(b"OK\x04Traceback (most recent call last):\r\n")
        assert got.endswith(b"ValueError: bad\r\n\x04>")
        # Ctrl-C stops a running loop with KeyboardInterrupt
        c.write(b"print('looping')\nwhile True:\n    pass\n\x04")
        c.read_until(b"OKlooping\n")
        time.sleep(0.2)
        c.write(b"\x03")
        got = c.read_until(b"\x04>")
        assert got.startswith(b"\x04Traceback") and b"KeyboardInterrupt" in got
        # Ctrl-C at the raw prompt clears the input; Ctrl-B leaves, Ctrl-A comes back
        c.write(b"garbage\x03print(5)\x04")
        assert c.read_until(b"\x04>") == b"OK5\n\x04\x04>"
        c.write(b"\x02")
        c.read_until(b"Type \"help()\" for more information.\r\n>>> ")
        c.write(b"\x01")
        c.read_until(b"\r\nraw REPL; CTRL-B to exit\r\n>")
        # Ctrl-D on empty input: soft reset, still in the raw REPL
        c.write(b"\x04")
        assert c.read_until(b"raw REPL; CTRL-B to exit\r\n>") == \
            b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"


def test_raw_paste_flow_control(board):
    code = b"".join(b"v%d = %d\n" % (i, i) for i in range(400)) + b"print(v399 + v1)\n"
    assert len(code) > 4 * 256
    with Client(board.address) as c:
        c.enter_raw()
        c.write(b"\x05A\x01")
        assert c.read_exactly(2) == b"R\x01"
        window = int.from_bytes(c.read_exactly(2), "little")
        assert window > 0
        remain, i, grants = window, 0, 0
        while i < len(code):
            while remain == 0 or c._fill(0):
                b = c.read_exactly(1, timeout=5)
                assert b == b"\x01", b
                remain += window
                grants += 1
            chunk = code[i:i + remain]
            c.write(chunk)
            i += len(chunk)
            remain -= len(chunk)
        c.write(b"\x04")
        got = c.read_until(b"\x04>")
        assert got.lstrip(b"\x01").startswith(b"\x04")   # end of data acknowledged
        assert got.endswith(b"400\n\x04\x04>")
        assert grants >= len(code) // window - 1
        # an unknown raw-paste variant is refused
        c.write(b"\x05B\x01")
        assert c.read_exactly(2) == b"R\x00"


def test_console_input_and_kbd_intr_off(sboard):
    """Bytes sent while code runs are its sys.stdin; with kbd_intr(-1) Ctrl-C is data too."""
    with Client(sboard.address) as c:
        c.enter_raw()
        c.write(b"import sys, micropython\nmicropython.kbd_intr(-1)\n"
                b"print(repr(sys.stdin.buffer.read(5)))\nmicropython.kbd_intr(3)\n\x04")
        c.read_until(b"OK")
        time.sleep(0.3)
        c.write(b"ab\x03cd")
        assert c.read_until(b"\x04>") == b"b'ab\\x03cd'\n\x04\x04>"
        # unread input goes back to the REPL afterwards: here a whole command
        c.write(b"import time\ntime.sleep(0.3)\n\x04")
        c.read_until(b"OK")
        c.write(b"print('queued')\x04")
        assert c.read_until(b"queued\n\x04\x04>")


def test_friendly_repl(sboard):
    with Client(sboard.address) as c:
        c.write(b"\x02")
        c.read_until(b">>> ")
        c.write(b"1 + 1\r")
        assert c.read_until(b">>> ") == b"1 + 1\r\n2\r\n>>> "
        c.write(b"for i in range(2):\r")
        c.read_until(b"... ")
        c.write(b"print('i', i)\r")      # auto-indented
        c.read_until(b"... ")
        c.write(b"\x08\r")               # backspace removes the indent; Enter runs it
        out = c.read_until(b">>> ")
        assert b"i 0\r\ni 1\r\n" in out
        c.write(b"undefined_name\r")
        out = c.read_until(b">>> ")
        assert b"NameError: name 'undefined_name' isn't defined" in out
        c.write(b"\x05")                 # paste mode
        c.read_until(b"=== ")
        c.write(b"def f():\r    return 'pasted'\rprint(f())\r\x04")
        assert b"pasted\r\n" in c.read_until(b">>> ")
        # Ctrl-D: soft reset, boot.py and main.py run again from the friendly REPL
        (sboard.flash / "main.py").write_text("print('main again')\n")
        c.write(b"\x04")
        out = c.read_until(b">>> ")
        assert b"MPY: soft reboot\r\nmain again\r\n" in out and b"MicroPython v" in out


def test_machine_resets_and_wifi_link(sboard):
    with Client(sboard.address) as c:
        c.enter_raw()
        c.write(b"import network\nw = network.WLAN(network.STA_IF)\nw.active(True)\n"
                b"w.connect('sim', 'pw')\nprint(w.isconnected())\n\x04")
        assert c.read_until(b"\x04>").startswith(b"OKTrue\n")
        sboard.set_wifi(False)
        c.write(b"print(w.isconnected())\x04")
        assert c.read_until(b"\x04>").startswith(b"OKFalse\n")
        sboard.set_wifi(True)
        # machine.soft_reset(): a soft reset, the raw REPL stays
        c.write(b"import machine\nmachine.soft_reset()\n\x04")
        assert c.read_until(b"raw REPL; CTRL-B to exit\r\n>") == \
            b"OK\x04\x04MPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
        c.write(b"print('w' in globals())\x04")
        assert c.read_until(b"\x04>") == b"OKFalse\n\x04\x04>"
        # machine.reset(): a hard reset into the friendly REPL, not catchable
        c.write(b"import machine\ntry:\n    machine.reset()\nexcept BaseException:\n"
                b"    print('caught')\n\x04")
        out = c.read_until(b">>> ")
        assert b"caught" not in out and b"MicroPython v" in out
    assert sboard.repl_mode == "friendly"


def test_board_api_reset_button_and_console_log(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import machine\nprint('hello from main', machine.reset_cause())\n")
    with Board(flash, heap="96K", env={"VMMAKER_SIM_TEST": "1"}) as b:
        b.wait_for("hello from main 1")          # power-on boot
        b.wait_idle()
        mark = b.mark()
        b.reset()
        b.wait_for("hello from main 2", since=mark)
        b.wait_idle()
        assert b.console_log.count(b"hello from main") == 2
        assert b.address.startswith("socket://127.0.0.1:")
        r = mpr(b, "exec", "import os, gc; gc.collect(); print(os.getenv('VMMAKER_SIM_TEST'), "
                "gc.mem_free())")
        env_value, free = r.stdout.split()
        assert env_value == "1"
        # about what `micropython -X heapsize=96K` leaves a script (the agent's share is added)
        assert 88 * 1024 < int(free) < 100 * 1024
    assert b.state == "down"
    assert (flash / "main.py").exists()          # a flash directory you gave is kept


def test_continuation_rule():
    assert continue_with_input("if x:")
    assert continue_with_input("f(1,")
    assert continue_with_input("s = '''abc")
    assert continue_with_input("x = 1 + \\")
    assert not continue_with_input("x = 1")
    assert not continue_with_input("if x: pass\n")
    assert not continue_with_input("print('(')")


# -- vmmaker-sim board -----------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cli_board(transport, tmp_path):
    flash = tmp_path / "flash"
    proc = subprocess.Popen([VMMAKER_SIM, "board", "--" + transport, "--flash", str(flash)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("board: ")
        address = first[len("board: "):]
        if transport == "socket":
            assert address.startswith("socket://127.0.0.1:")
        else:
            assert address.startswith("/dev/pts/")
        r = subprocess.run([MPREMOTE, "connect", address, "exec",
                            "open('/made.txt', 'w').write('ok')"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r
        assert (flash / "made.txt").read_text() == "ok"
        proc.send_signal(signal.SIGTERM if transport == "socket" else signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "board: stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_board_echo_shows_programs_not_tool_traffic(tmp_path):
    # --echo is for a person watching the board: main.py's output, not the raw-REPL traffic
    # of the tools (file contents and sha256 sums that vmmaker-deploy verifies with).
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("print('hello from main')\n")
    proc = subprocess.Popen([VMMAKER_SIM, "board", "--socket", "--echo", "--flash", str(flash)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()[len("board: "):]
        r = subprocess.run([MPREMOTE, "connect", address, "exec",
                            "print('TOOL-' + 'TRAFFIC')"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "TOOL-TRAFFIC" in r.stdout, r
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "hello from main" in out
    assert "TOOL-TRAFFIC" not in out and "raw REPL" not in out


@pytest.mark.parametrize("case", ["main-is-dir", "boot-is-dir", "main-not-utf8",
                                  "main-unreadable"])
def test_unusable_boot_files_do_not_make_a_boot_loop(tmp_path, case):
    """A main.py/boot.py that is a directory, is not UTF-8 or cannot be read: the board boots
    once and reaches the REPL (as a board does), so mpremote can get in and fix it."""
    flash = tmp_path / "flash"
    flash.mkdir()
    if case == "main-is-dir":
        (flash / "main.py").mkdir()
    elif case == "boot-is-dir":
        (flash / "boot.py").mkdir()
        (flash / "main.py").write_text("print('main ran')\n")
    elif case == "main-not-utf8":
        (flash / "main.py").write_bytes(b"print('main ran')\n# \xff\xfe not UTF-8\n")
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads a file without read permission")
        (flash / "main.py").write_text("print('main ran')\n")
        (flash / "main.py").chmod(0)
    with Board(flash) as b:
        b.wait_idle(10)
        time.sleep(1.5)
        assert b.boots == 1, b.console_text()
        assert b.state == "idle"
        text = b.console_text()
        assert ">>> " in text
        if case in ("boot-is-dir", "main-not-utf8"):
            assert "main ran" in text
        if case == "main-unreadable":
            assert "OSError" in text and "EACCES" in text
        assert "main.py" in mpr(b, "fs", "ls", ":/").stdout
        mpr(b, "fs", "rm", "-r", ":/main.py")
        assert not (flash / "main.py").exists()


def test_flash_is_the_whole_filesystem(tmp_path):
    """Paths that climb above the flash's root stay at the root, as on a board ('/..' is '/'):
    mpremote's fs commands and device code never reach the host's files next to the flash."""
    project = tmp_path / "project"
    flash = project / "flash"
    flash.mkdir(parents=True)
    (project / "notes.txt").write_text("host file\n")
    (project / "victim.txt").write_text("original\n")
    (project / "host_module.py").write_text("print('host module imported')\n")
    (flash / "on_flash.txt").write_text("flash file\n")
    (flash / "sub").mkdir()
    new = tmp_path / "new.txt"
    new.write_text("written by mpremote\n")
    with Board(flash) as b:
        b.wait_idle(10)
        def names(path):
            return sorted(line.split()[-1] for line in
                          mpr(b, "fs", "ls", path).stdout.splitlines()[1:] if line.strip())
        assert names(":/..") == names(":/") == ["on_flash.txt", "sub/"]
        assert names(":/sub/../../..") == ["on_flash.txt", "sub/"]
        mpr(b, "fs", "cp", str(new), ":/../victim.txt")
        assert (project / "victim.txt").read_text() == "original\n"
        assert (flash / "victim.txt").read_text() == "written by mpremote\n"
        r = mpr(b, "fs", "rm", ":/../notes.txt", check=False)
        assert r.returncode != 0
        assert (project / "notes.txt").exists()
        assert "host file" not in mpr(b, "fs", "cat", ":/../notes.txt", check=False).stdout
        mpr(b, "fs", "mkdir", ":/../made")
        assert (flash / "made").is_dir() and not (project / "made").exists()
        mpr(b, "fs", "rmdir", ":../../made")
        assert not (flash / "made").exists()
        r = mpr(b, "exec",
                "import os\nos.chdir('/..')\nprint('cwd', os.getcwd())\n"
                "os.chdir('sub')\nos.chdir('../../..')\nprint('cwd', os.getcwd())\n"
                "open('../../x.txt', 'w').write('x')\n"
                "print('same', sorted(os.listdir('/sub/../..')) == sorted(os.listdir('/')))\n"
                "print('ilist', sorted(e[0] for e in os.ilistdir(b'/..')))\n"
                "os.rename('/../x.txt', '../../sub/y.txt')\n"
                "try:\n    os.stat('/../notes.txt')\nexcept OSError as e:\n    print('stat', e)\n"
                "os.remove('../sub/y.txt')\nimport sys\nsys.path.append('/..')\n"
                "try:\n    import host_module\nexcept ImportError:\n    print('no import')\n"
                "print('done')")
        out = r.stdout
        assert out.count("cwd /\n") + out.count("cwd /\r\n") == 2, out
        assert "same True" in out and "stat [Errno 2] ENOENT" in out and "done" in out
        assert "no import" in out and "host module imported" not in out
        assert "ilist ['on_flash.txt', 'sub', 'victim.txt', 'x.txt']" in out, out
        assert not (project / "x.txt").exists() and not (tmp_path / "x.txt").exists()
        assert sorted(os.listdir(flash / "sub")) == []
    assert sorted(os.listdir(project)) == ["flash", "host_module.py", "notes.txt", "victim.txt"]
