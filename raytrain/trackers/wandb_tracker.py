"""W&B: each trial a run in the project, grouped by sweep, written by the driver with wandb's own API.

Not Ray's WandbLoggerCallback: it starts a Ray actor per trial (a process each, on a machine whose
cores train), and keeps the last epoch as the run's summary. Here the driver keeps one wandb run per
trial (wandb.init(reinit="create_new")), each with an id fixed by sweep and experiment so that a
resumed trial continues its run, and the summary is overwritten with the best epoch's val metrics
and test's. WANDB_MODE=offline writes the runs under RUNS/_wandb/wandb/offline-run-*/ for a later
`wandb sync` (WANDB_DIR moves them).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from raytrain.naming import EXPERIMENT_KEY, FAILED
from raytrain.trackers import Finished, Tracker, TrackerError, epoch_metrics, missing_package, summary_metrics

WANDB_DIR = "_wandb"  # under runs/: a folder raytrain's readers skip (it starts with _)


def check_wandb(project: str) -> None:
    try:
        import wandb
    except ImportError as err:
        raise missing_package("--wandb", "wandb", err) from None
    if not re.fullmatch(r"[\w.-]+", project):
        raise TrackerError(f"--wandb {project}: a W&B project name is letters, digits, '-', '_' and '.'")
    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")
    if not offline and not os.environ.get("WANDB_API_KEY") and not _stored_api_key(wandb):
        raise TrackerError(
            f"--wandb {project}: no W&B API key (run `wandb login` or set WANDB_API_KEY), or set "
            "WANDB_MODE=offline to write the runs locally and upload them later with `wandb sync`"
        )


def _stored_api_key(wandb) -> str | None:
    """The key `wandb login` saved, if any (wandb.Api raises UsageError where there is none)."""
    try:
        return wandb.Api().api_key
    except Exception:  # wandb.errors.UsageError: no key configured
        return None


def run_id(sweep: str, experiment: str) -> str:
    """Stable across `resume`, unique per sweep and experiment, and within W&B's id rules."""
    return hashlib.sha1(f"{sweep}\0{experiment}".encode()).hexdigest()[:16]


class WandbTracker(Tracker):
    name = "W&B"

    def __init__(self, sweep: str, project: str):
        super().__init__(sweep)
        self.project = project
        self.runs: dict[str, object] = {}  # trial id -> wandb Run

    def settings(self) -> dict:
        return {"project": self.project}

    def start(self, trial) -> None:
        if trial.trial_id in self.runs:
            return
        import wandb

        experiment = trial.config[EXPERIMENT_KEY]
        folder = Path(os.environ.get("WANDB_DIR") or Path(self.runs_dir) / WANDB_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        self.runs[trial.trial_id] = wandb.init(
            project=self.project,
            group=self.sweep,
            name=experiment["name"],
            id=run_id(self.sweep, experiment["name"]),
            resume="allow",
            config=experiment,
            dir=str(folder),
            job_type="trial",
            reinit="create_new",
            # the driver's terminal is raytrain's (one line per epoch); system stats would be the driver's, not the
            # trial's
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, x_disable_machine_info=True),
        )

    def log_epoch(self, trial, result: dict) -> None:
        self.start(trial)
        self.runs[trial.trial_id].log(epoch_metrics(result), step=int(result["epoch"]))

    def finish(self, trial, end: Finished) -> None:
        self.start(trial)
        run = self.runs.pop(trial.trial_id)
        summary = {"status": end.status}
        if end.files is not None:
            # W&B's runs table shows each key's summary: the best epoch's, not the last logged
            summary |= {key.removeprefix("best/"): value for key, value in summary_metrics(end.files).items()}
        if end.error:
            summary["error"] = end.error
        run.summary.update(summary)
        run.finish(exit_code=1 if end.status == FAILED else 0)

    def close(self) -> None:
        for run in self.runs.values():
            run.finish()
        self.runs.clear()
