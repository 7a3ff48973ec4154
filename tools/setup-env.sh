#!/usr/bin/env bash
# Creates .venv (once) and installs the project with its test tools into it.
# Sourced by run-demo.sh and run-tests.sh, so each works on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[dev]"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
