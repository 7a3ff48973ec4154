# The device side of the emulated board (host_sim/board.py): runs under the MicroPython unix
# port, one interpreter process per boot (a soft or hard reset starts a fresh one, so nothing
# survives a reset, as on a board).
#
#   micropython board_agent.py FLASH_DIR BOOT SHIMS_DIR RESET_CAUSE CMD_FD RESULT_FD
#
# BOOT: "main" runs boot.py then main.py (friendly-REPL boot), "boot" runs boot.py only (soft
# reset from the raw REPL). RESET_CAUSE: the machine.reset_cause() value of this boot.
#
# Pipes: fd 0 = the console input the host did not keep for the REPL (what device code reads
# from sys.stdin), fd 1 (and 2) = the console output, CMD_FD = commands from the host,
# RESULT_FD = results to the host. A frame is: 1 byte kind, 4 bytes sequence number, 4 bytes length
# (little-endian), payload.
#   host -> agent: X raw-REPL code (file input), S friendly-REPL line (single input, results
#                  echoed), P friendly-REPL paste (file input)
#   agent -> host: b boot scripts start, B boot done (payload: banner, then "\nR" when
#                  machine.soft_reset() was called), D done (payload: status O ok, E error +
#                  traceback text, X SystemExit, R soft reset), H machine.reset() called
# Everything here is plain MicroPython; the host never blocks device code.
import sys
import os
import io
import gc
import vfs

_argv = list(sys.argv)
_SELF = _argv[0]
_FLASH, _BOOT, _SHIMS, _CAUSE = _argv[1], _argv[2], _argv[3], int(_argv[4])

_cin = open(int(_argv[5]), "rb")
_cout = open(int(_argv[6]), "wb")


def _frame(kind, seq, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    return (kind.encode() + bytes((seq & 255, (seq >> 8) & 255, (seq >> 16) & 255, seq >> 24,
                                   n & 255, (n >> 8) & 255, (n >> 16) & 255, n >> 24)) + payload)


def _send(kind, seq, payload=b""):
    data = _frame(kind, seq, payload)
    # A stray Ctrl-C (SIGINT) must not lose a result: retry; the host drops a duplicate.
    while True:
        try:
            _cout.write(data)
            return
        except KeyboardInterrupt:
            pass


def _readn(n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = _cin.read(n - len(buf))
        except KeyboardInterrupt:
            continue
        if not chunk:
            sys.exit(0)  # host gone
        buf += chunk
    return buf


class _SoftReset(SystemExit):
    pass


def _soft_reset():
    raise _SoftReset()


def _hard_reset():
    # Like the reset line: never returns; the host ends this interpreter and boots a new one.
    _send("H", 0)
    import time
    for _ in range(200):
        try:
            time.sleep(0.05)
        except BaseException:
            pass
    sys.exit(1)


def _reset_cause():
    return _CAUSE


# Board modules that only a real board has (network, machine...): loaded from the host's shim
# directory now, before the flash becomes the root filesystem; a board has them built in. They
# are the hardware, so their open() sees the host's files (e.g. the VMMAKER_LINK link state),
# through a host filesystem object that is not mounted: device code sees only the flash.
_host = vfs.VfsPosix()


def _host_open(path, mode="r", *args):
    return _host.open(path, mode)


sys.path[:] = [_SHIMS, ".frozen"]
for _name in os.listdir(_SHIMS):
    if _name.endswith(".py") and not _name.startswith("_"):
        try:
            _mod = __import__(_name[:-3])
            _mod.open = _host_open
        except Exception as e:
            print("board: shim %s failed to load: %r" % (_name, e))
try:
    import machine

    machine.reset = _hard_reset
    machine.soft_reset = _soft_reset
    if not hasattr(machine, "reset_cause"):
        machine.reset_cause = _reset_cause
        machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET = 1, 2, 3
        machine.DEEPSLEEP_RESET, machine.SOFT_RESET = 4, 5
except Exception as e:
    print("board: machine module: %r" % (e,))

# The flash directory is the whole filesystem: '/main.py' and 'main.py' are the same file.
vfs.umount("/")
vfs.mount(vfs.VfsPosix(_FLASH), "/")
os.chdir("/")
sys.path[:] = ["", ".frozen", "/lib"]
sys.argv[:] = []


# os.ilistdir() as on a board's littlefs/FAT filesystem: (name, type, inode, size); the unix
# port's VfsPosix leaves out the size (mpremote `fs ls` would show 0 for every file).
class _Os:
    def __repr__(self):
        return "<module 'os'>"


def _ilistdir(*args):
    path = args[0] if args else ""
    sep = b"/" if isinstance(path, bytes) else "/"
    for e in os.ilistdir(*args):
        size = 0
        if e[1] == 0x8000:
            try:
                size = os.stat(path.rstrip(sep) + sep + e[0] if path else e[0])[6]
            except OSError:
                pass
        yield (e[0], e[1], e[2], size)


# os.rename(): the unix port's VfsPosix with a root directory builds both paths in one buffer,
# so it renames the new name to itself (ENOENT, or nothing at all when that name exists). On
# the flash, rename through the host filesystem object instead; elsewhere (another mount, e.g.
# mpremote's /remote) the VFS's own rename.
def _flash_path(path):
    if not path.startswith("/"):
        path = os.getcwd().rstrip("/") + "/" + path
    for _obj, point in vfs.mount():
        if point != "/" and (path == point or path.startswith(point + "/")):
            return None
    return _FLASH + path


def _rename(old, new):
    a, b = _flash_path(old), _flash_path(new)
    if a is None or b is None:
        return os.rename(old, new)
    return _host.rename(a, b)


# The flash is the board's whole filesystem: a path that climbs above its root stays at the
# root, as on a board ('/..' is '/'). The unix port's VfsPosix(_FLASH) only prefixes its root,
# so '/../x' would reach the host's files next to the flash directory: every path device code
# (and mpremote's fs commands) gives os and open() is made absolute and its '.'/'..' resolved
# first. (The shims keep their own host filesystem object: they are the hardware.)
_getcwd = os.getcwd


def _norm(path):
    if isinstance(path, str):
        sep, dot, up = "/", ".", ".."
    elif isinstance(path, bytes):
        sep, dot, up = b"/", b".", b".."
    else:
        return path  # let the VFS raise its own TypeError
    if not path:
        return path  # '' means the current directory to listdir, ENOENT to open: as before
    if not path.startswith(sep):
        cwd = _getcwd()
        path = (cwd if isinstance(sep, str) else cwd.encode()) + sep + path
    parts = []
    for part in path.split(sep):
        if part == up:
            if parts:
                parts.pop()
        elif part and part != dot:
            parts.append(part)
    return sep + sep.join(parts)


def _confined(fn):
    def call(*args, **kw):
        if args:
            args = (_norm(args[0]),) + args[1:]
        return fn(*args, **kw)
    return call


def _confined_rename(old, new):
    return _rename(_norm(old), _norm(new))


_os = _Os()
for _k in dir(os):
    if not _k.startswith("__"):
        setattr(_os, _k, getattr(os, _k))
_os.ilistdir = _confined(_ilistdir)
_os.rename = _confined_rename
for _k in ("listdir", "stat", "lstat", "statvfs", "remove", "unlink", "rmdir", "mkdir", "chdir"):
    if hasattr(os, _k):
        setattr(_os, _k, _confined(getattr(os, _k)))
sys.modules["os"] = _os
import builtins

builtins.open = _confined(open)

# Not covered: io.open (the unix port's io module cannot be patched) and device code that
# mounts a VfsPosix of its own; this keeps paths on the flash, it is not a sandbox.

# import searches sys.path through the VFS too: an entry with a '..' component (sys.path
# .append('/..')) is resolved the same way while the import runs.
_import = builtins.__import__


def _confined_import(*args):
    path = sys.path
    if any(".." in p.split("/") for p in path if isinstance(p, str)):
        sys.path = [_norm(p) if isinstance(p, str) and ".." in p.split("/") else p
                    for p in path]
        try:
            return _import(*args)
        finally:
            sys.path = path
    return _import(*args)


builtins.__import__ = _confined_import

_ns = {"__name__": "__main__"}
_BANNER = "MicroPython v%d.%d.%d on unix port; vmmaker-sim board with %s" % (
    sys.implementation.version[:3] + (getattr(sys.implementation, "_machine", sys.platform),))


def _strip(text):
    # Drop this agent's own frames: the traceback then reads as on a board.
    mark = '  File "%s"' % _SELF
    return "".join(line for line in text.splitlines(True) if not line.startswith(mark))


def _run(src, name, mode, show):
    """Compile and run `src` in the board's __main__ namespace -> (status, traceback text).
    show: print the traceback on the console (friendly REPL, boot scripts) instead."""
    try:
        try:
            if mode == "exec":
                _ns["__file__"] = name
            exec(compile(src, name, mode), _ns)
            return "O", ""
        except SystemExit as e:
            return ("R" if isinstance(e, _SoftReset) else "X"), ""
        except BaseException as e:
            buf = io.StringIO()
            sys.print_exception(e, buf)
            text = _strip(buf.getvalue())
            buf = None
            if show:
                sys.stdout.write(text)
            return "E", text
    except KeyboardInterrupt:  # a second Ctrl-C while reporting the first
        text = "KeyboardInterrupt: \n"
        if show:
            sys.stdout.write(text)
        return "E", text


def _run_file(name):
    # As a board's pyexec_file_if_exists(): no such file, or not a regular file (e.g. a
    # directory called main.py), is skipped; the source is read as bytes, so bytes that are not
    # UTF-8 do not stop the file (the board's lexer does not check them either). Any other
    # failure to read it is printed like a traceback and the boot goes on to the REPL: the
    # interpreter must not die here, or the board reboots for ever and mpremote never gets in.
    try:
        if os.stat(name)[0] & 0xF000 != 0x8000:
            return "O"
    except OSError:
        return "O"
    try:
        with open(name, "rb") as f:
            src = f.read()
    except Exception as e:
        buf = io.StringIO()
        sys.print_exception(e, buf)
        sys.stdout.write(_strip(buf.getvalue()))
        return "E"
    status = _run(src, name, "exec", True)[0]
    src = None
    return status


def _boot():
    _send("b", 0)
    status = _run_file("boot.py")
    if _BOOT == "main" and status != "R":
        status = _run_file("main.py")
    return status


def _serve():
    while True:
        cur = None
        try:
            head = _cin.read(9)
            if not head:
                sys.exit(0)
            if len(head) < 9:
                head += _readn(9 - len(head))
            cur = head[1] | head[2] << 8 | head[3] << 16 | head[4] << 24
            n = head[5] | head[6] << 8 | head[7] << 16 | head[8] << 24
            kind = chr(head[0])
            src = str(_readn(n), "utf8") if n else ""
            gc.collect()
            if kind == "X":
                res = _run(src, "<stdin>", "exec", False)
            elif kind == "S":
                res = _run(src, "<stdin>", "single", True)
            else:
                res = _run(src, "<stdin>", "exec", True)
            src = None
        except KeyboardInterrupt:
            if cur is None:
                continue  # a Ctrl-C that came after its code had ended
            res = ("E", "KeyboardInterrupt: \n")
        _send("D", cur, res[0] + res[1])


try:
    _status = _boot()
except KeyboardInterrupt:
    _status = "O"
gc.collect()
_send("B", 0, _BANNER + ("\nR" if _status == "R" else ""))
_serve()
