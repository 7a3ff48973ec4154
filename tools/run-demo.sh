#!/usr/bin/env bash
# Sets up .venv if needed, then runs the simulator demo: every seed failover flow,
# device code on the real MicroPython interpreter against the mocked regional world.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
cd "$ROOT"
exec vmmaker-sim demo "$@"
