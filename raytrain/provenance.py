"""Which code produced a result: the git commit recorded with every trial in experiment_log.jsonl.

A Ray Job runs an upload of the project without its .git (docs/ray-notes.md), so `submit` reads the
commit on the submitting machine and hands it to the job in RAYTRAIN_GIT_COMMIT. No Ray, no torch.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_ENV_VAR = "RAYTRAIN_GIT_COMMIT"


def git_commit(folder: Path | None = None) -> str | None:
    """The commit the submitting machine passed on, else this checkout's HEAD, else None."""
    if os.environ.get(COMMIT_ENV_VAR):
        return os.environ[COMMIT_ENV_VAR]
    return checkout_commit(folder)


def checkout_commit(folder: Path | None = None) -> str | None:
    """HEAD of the git checkout at `folder` (default: the working directory), short form."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=folder,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # not a git checkout
        return None
    return out.stdout.strip() or None
