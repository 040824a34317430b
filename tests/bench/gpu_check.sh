#!/usr/bin/env bash
# The GPU device check (issue 25): `prepare` here, `run` on the GPU machine, `run --dry-run` here.
# What each does: tests/bench/gpu_check.py. Python: $PYTHON, else the project's .venv, else python3
# (the GPU machine has no .venv: its python3 holds torch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
cd "$root"
exec "$python" tests/bench/gpu_check.py "$@"
