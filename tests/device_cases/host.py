"""Host side of the device case scripts: list their cases, run each script once per
interpreter (one subprocess), and turn its PASS/FAIL lines into pytest results."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from host_sim.runner import Device, FIRMWARE

HERE = Path(__file__).resolve().parent
# A board-sized GC heap for MicroPython (the case scripts themselves are compiled on the
# "device" from source, which costs most of it).
HEAP = "256k"
_RUNS = {}


def case_names(script):
    """The case names a script registers, found by importing it on CPython (nothing runs)."""
    for p in (str(FIRMWARE), str(HERE)):
        if p not in sys.path:
            sys.path.insert(0, p)
    import casekit
    del casekit.CASES[:]
    spec = importlib.util.spec_from_file_location("device_case_" + script.stem, str(script))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    names = [n for n, _ in casekit.CASES]
    del casekit.CASES[:]
    dups = sorted(set(n for n in names if names.count(n) > 1))
    assert not dups, "duplicate case names in %s: %s" % (script.name, dups)
    return names


class ScriptRun:
    def __init__(self, proc, names):
        self.proc = proc
        self.lines = {}
        self.done = None
        for line in proc.stdout.splitlines():
            if line.startswith("PASS "):
                self.lines[line[5:]] = line
            elif line.startswith("FAIL "):
                self.lines[line[5:].split(":", 1)[0]] = line
            elif line.startswith("DONE "):
                self.done = line
        self.names = names

    def tail(self):
        return "exit code %s\n--- stderr ---\n%s\n--- stdout (last 20 lines) ---\n%s" % (
            self.proc.returncode, self.proc.stderr[-4000:],
            "\n".join(self.proc.stdout.splitlines()[-20:]))


def run_script(script, interp, tmp_path_factory, env=None, setup=None):
    """Run a case script once per interpreter per session (cached)."""
    key = (script.name, interp)
    if key not in _RUNS:
        flash = tmp_path_factory.mktemp("%s-%s" % (script.stem, interp))
        shutil.copy(str(HERE / "casekit.py"), str(flash))
        shutil.copy(str(script), str(flash))
        if setup is not None:
            setup(flash)
        with Device(interp, heap=HEAP, flash_dir=flash) as dev:
            proc = dev.run(flash / script.name, timeout=120, env=env)
        _RUNS[key] = ScriptRun(proc, case_names(script))
    return _RUNS[key]


def check_case(script, interp, name, tmp_path_factory, **kw):
    run = run_script(script, interp, tmp_path_factory, **kw)
    line = run.lines.get(name)
    if line is None:
        pytest.fail("case %r did not report on %s (the script stopped early?)\n%s"
                    % (name, interp, run.tail()))
    if not line.startswith("PASS "):
        pytest.fail("%s on %s" % (line, interp))


def check_complete(script, interp, tmp_path_factory, **kw):
    """The script ran to its end on this interpreter and reported every case once."""
    run = run_script(script, interp, tmp_path_factory, **kw)
    assert run.proc.returncode == 0 and run.done, run.tail()
    missing = [n for n in run.names if n not in run.lines]
    assert not missing, "cases that never reported: %s\n%s" % (missing, run.tail())
