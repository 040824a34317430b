"""Timing marks for the benchmarks: from `raytrain run` to a trial's first training step, and the
bytes each checkpoint writes.

Off unless RAYTRAIN_TRACE_LOG names a file; then each mark appends one JSON line {event, t, pid,
...fields} to it, from the driver and the trial processes alike (Ray's workers inherit the driver's
environment). tests/bench/bench_scale.py reads them. Standard library only.
"""

from __future__ import annotations

import json
import os
import time

TRACE_LOG_ENV = "RAYTRAIN_TRACE_LOG"


def mark(event: str, **fields) -> None:
    path = os.environ.get(TRACE_LOG_ENV)
    if not path:
        return
    with open(path, "a") as log:  # one short line per write: appends from several processes stay whole
        log.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")
