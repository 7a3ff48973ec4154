#!/usr/bin/env bash
# Sets up .venv if needed, then runs the whole test suite (firmware tests run under
# both CPython and the MicroPython unix port).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
cd "$ROOT"
exec python -m pytest "$@"
