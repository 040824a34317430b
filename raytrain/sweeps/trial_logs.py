"""Tune's per-trial result.json and progress.csv, kept whole when a trial starts again within a run.

Tune writes them in the driver's staging folder (the Ray session's) and copies that folder to the
storage every ~10 s. When a trial starts again, its logger first copies the storage's copy back
over the staging one (`_restore_from_remote`), for a driver that moved to another machine. Within
one run the storage's copy is the older one: every restart of a trial (PBT pauses and restarts its
members at each perturbation, and on each exploit) dropped the results since the last copy.
raytrain's loggers take the storage's copy only where the staging folder has none: a resumed sweep
(a new Ray session, an empty staging folder). docs/ray-notes.md; `results` reads these files for
trials that have not finished.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class _KeepStagedLog:
    def _restore_from_remote(self, file_name: str, trial) -> None:
        if not Path(trial.local_path, file_name).is_file():
            super()._restore_from_remote(file_name, trial)


class ResultJsonLog(_KeepStagedLog, JsonLoggerCallback):
    """Tune's result.json logger (it replaces Tune's own: an isinstance check)."""


class ProgressCsvLog(_KeepStagedLog, CSVLoggerCallback):
    """Tune's progress.csv logger (it replaces Tune's own: an isinstance check)."""
