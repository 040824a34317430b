"""Mirrors of runs/ in the trackers people already keep their runs in: MLflow, W&B and TensorBoard.

runs/ stays the source of truth. Each tracker is a Tune callback on the sweep's driver, after the
RunsPublisher: it sees every epoch's result as Tune does, and a finished trial once runs/ holds it,
so its summaries are read from the published files (the best epoch that raytrain ranks by). A
tracker that fails (a server that went down mid-sweep) is warned about once and left alone for the
rest of the sweep: it never fails a trial. Imports no tracker package until one is asked for.
Driver-side: ray, never torch (`make lint` checks).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from raytrain import artifacts
from raytrain.errors import UserError
from raytrain.naming import EXPERIMENT_KEY, FAILED, REPLAYED, first_line
from raytrain.sweeps.settings import running

# per-epoch keys without a "/" that are still metrics; the rest of Tune's result (time_this_iter_s,
# pid, training_iteration, ...) is Tune's bookkeeping
EPOCH_SCALARS = ("lr", "epoch_time_s")
SPLIT_PREFIXES = {"val": "best/val/", "test": "test/"}  # the summary's names in MLflow and TensorBoard


class TrackerError(UserError):
    """A tracker that cannot be used as asked: its package is missing or its server does not answer."""


def missing_package(flag: str, extra: str, err: ImportError) -> TrackerError:
    return TrackerError(
        f"{flag} needs the {extra} package, which is not installed ({err}): pip install 'raytrain[{extra}]'"
    )


@dataclass
class Finished:
    """A trial's end as runs/ records it: experiment_log.jsonl's line and, unless it failed, its files."""

    status: str  # completed, pruned or failed
    error: str | None
    files: artifacts.ExperimentFiles | None
    folder: Path


def finished(runs_dir: str | Path, sweep: str, trial) -> Finished:
    """Read after the RunsPublisher (earlier in the callbacks list) has published the trial."""
    name = trial.config[EXPERIMENT_KEY]["name"]
    last = artifacts.last_logged(Path(runs_dir), sweep, name)
    status = last["status"] if last else FAILED
    error = last.get("error") if last else "no line in experiment_log.jsonl"
    files = None
    if status != FAILED:
        try:
            files = artifacts.read_experiment(Path(runs_dir), name)
        except artifacts.DamagedExperiment as damage:
            status, error = FAILED, damage.message
    return Finished(status, error, files, artifacts.experiment_dir(Path(runs_dir), name))


def epoch_metrics(result: dict) -> dict[str, float]:
    """The numbers the trainable reported for one epoch (train/*, val/*, lr, ...), without the
    running best (best/*: the summary holds the best epoch) and without Tune's own keys."""
    metrics = {}
    for key, value in result.items():
        wanted = key in EPOCH_SCALARS or ("/" in key and not key.startswith(("best/", "config/")))
        if wanted and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[key] = float(value)
    return metrics


def summary_metrics(files: artifacts.ExperimentFiles) -> dict[str, float]:
    """The best epoch's val metrics as best/val/* and test's as test/*: accuracy, macro_f1, loss and
    per-class precision, recall and f1 (`best/val/f1/happy`); the values results.load shows."""
    out = {"best_epoch": float(files.best["epoch"])}
    for metrics in (files.best, files.test):
        if metrics is None:
            continue
        prefix = SPLIT_PREFIXES[metrics["split"]]
        out |= {f"{prefix}{key}": float(metrics[key]) for key in ("accuracy", "macro_f1", "loss")}
        for cls, values in metrics["per_class"].items():
            out |= {f"{prefix}{key}/{cls}": float(values[key]) for key in ("precision", "recall", "f1")}
    return out


class Tracker(tune.Callback):
    """One tracker's callback. Subclasses implement start/log_epoch/finish/close; every call goes
    through _safely, so a tracker's failure is one warning and never reaches Tune. Pickled into
    the Tune experiment (tuner.pkl) when the sweep starts and restored by `resume`: live clients
    are made in setup() and left out of the pickle."""

    name = "tracker"

    def __init__(self, sweep: str):
        self.sweep = sweep
        self.down = False

    @property
    def runs_dir(self) -> str:
        """Where the sweep's runs folder is now, not where it was when Tune pickled this tracker."""
        return running(self.sweep).runs_dir

    def __getstate__(self) -> dict:
        return {"sweep": self.sweep, **self.settings()}

    def __setstate__(self, state: dict) -> None:
        state.pop("runs_dir", None)  # pickled before raytrain 0.2.1: the folder as it was then
        self.__init__(**state)

    def settings(self) -> dict:
        """The constructor's own arguments besides sweep."""
        return {}

    def setup(self, **info) -> None:
        self._safely(self.open)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._safely(self.start, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not result.get(REPLAYED):  # an epoch this tracker already has
            self._safely(self.log_epoch, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._safely(lambda: self.finish(trial, finished(self.runs_dir, self.sweep, trial)))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._safely(lambda: self.finish(trial, finished(self.runs_dir, self.sweep, trial)))

    def on_experiment_end(self, trials, **info) -> None:
        self._safely(self.close)

    def open(self) -> None: ...

    def start(self, trial) -> None: ...

    def log_epoch(self, trial, result: dict) -> None: ...

    def finish(self, trial, end: Finished) -> None: ...

    def close(self) -> None: ...

    def _safely(self, call, *args) -> None:
        if self.down:
            return
        try:
            call(*args)
        except Exception as err:  # any failure of a mirror: a trial must never fail because of it
            self.down = True
            print(
                f"warning: {self.name}: {first_line(err, typed=True)}; stopped logging to it for the rest of this "
                "sweep "
                f"(training goes on; {self.runs_dir} has every result)",
                file=sys.stderr,
                flush=True,
            )


def check_trackers(tracking: dict | None) -> None:
    """Before any training: each asked-for tracker's package is installed and its server answers."""
    tracking = tracking or {}
    if tracking.get("mlflow"):
        from raytrain.trackers.mlflow_tracker import check_mlflow

        check_mlflow(tracking["mlflow"])
    if tracking.get("wandb"):
        from raytrain.trackers.wandb_tracker import check_wandb

        check_wandb(tracking["wandb"])


def tracker_callbacks(sweep: str, tracking: dict | None) -> list[tune.Callback]:
    """TensorBoard always (tensorboardX comes with ray[tune]); MLflow and W&B when asked for."""
    from raytrain.trackers.tensorboard_tracker import TensorBoardTracker

    tracking = tracking or {}
    callbacks: list[tune.Callback] = [TensorBoardTracker(sweep)]
    if tracking.get("mlflow"):
        from raytrain.trackers.mlflow_tracker import MLflowTracker

        callbacks.append(MLflowTracker(sweep, uri=tracking["mlflow"]))
    if tracking.get("wandb"):
        from raytrain.trackers.wandb_tracker import WandbTracker

        callbacks.append(WandbTracker(sweep, project=tracking["wandb"]))
    return callbacks
