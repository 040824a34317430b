"""Start-up timing: marks on the way from `raytrain run` to a trial's first training step.

Off unless RAYTRAIN_STARTUP_LOG names a file; then each mark appends one JSON line {event, t, pid}
to it (the driver and the trial processes alike: Ray's workers inherit the driver's environment).
tests/bench/bench_scale.py --part startup reads them. No imports beyond the standard library.
"""

from __future__ import annotations

import json
import os
import time

STARTUP_LOG_ENV = "RAYTRAIN_STARTUP_LOG"


def mark(event: str) -> None:
    path = os.environ.get(STARTUP_LOG_ENV)
    if not path:
        return
    with open(path, "a") as log:  # one short line per write: appends from several processes stay whole
        log.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid()}) + "\n")
