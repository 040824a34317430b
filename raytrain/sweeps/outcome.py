"""What a sweep came to: the trials completed, pruned, failed (with their one-line reason) and
unfinished, read from Tune's record of the experiment or, where that is damaged, from
runs/experiment_log.jsonl. Decides the exit code and what `resume` has left to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ray import tune

from raytrain import artifacts
from raytrain.naming import EXPERIMENT_KEY, FAILED, PRUNED
from raytrain.sweeps import storage as tune_storage
from raytrain.sweeps.failures import error_summary
from raytrain.sweeps.policy import stopped_by_scheduler
from raytrain.sweeps.publisher import published
from raytrain.sweeps.settings import SweepError, SweepSettings, sweep_file
from raytrain.sweeps.tune_state import tune_trials


@dataclass
class SweepOutcome:
    completed: list[str]
    failed: dict[str, str]
    unfinished: list[str]  # an adaptive search's trials not yet proposed included, by their names to be
    pruned: list[str] = field(default_factory=list)  # stopped by the scheduler: finished, not failed

    @property
    def exit_code(self) -> int:
        if self.failed:
            return 1
        if self.unfinished:
            return 130  # interrupted: as a shell reports Ctrl+C
        return 0


def summarize(settings: SweepSettings) -> SweepOutcome:
    # the in-memory ResultGrid calls unfinished trials TERMINATED; the files on disk do not (docs/ray-notes.md)
    trials = tune_trials(settings)
    return _summarize_from_log(settings) if trials is None else _summarize_trials(settings, trials)


def _summarize_trials(settings: SweepSettings, trials: list) -> SweepOutcome:
    completed, failed, unfinished, pruned = [], {}, [], []
    logged = _last_logged(settings)
    for trial in trials:
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if trial.status == "ERROR":
            failed[name] = error_summary(trial)
        elif trial.status == "TERMINATED" and (
            # trained, but its publishing failed (a full disk; another sweep's run of it was there)
            (error := _logged_error(logged, name)) or not published(settings.runs_dir, name)
        ):
            failed[name] = (
                error or f"trained, but is not whole in {settings.runs_dir}/{name}/; `raytrain resume` copies it"
            )
        elif trial.status == "TERMINATED" and stopped_by_scheduler(experiment, trial.last_result or {}):
            pruned.append(name)
        elif trial.status == "TERMINATED":
            completed.append(name)
        else:
            unfinished.append(name)
    if settings.search:
        # the searcher has not proposed these yet; it numbers them in order, so their names are known
        unfinished += settings.planned_names()[len(trials) :]
    return SweepOutcome(sorted(completed), failed, sorted(unfinished), sorted(pruned))


def _summarize_from_log(settings: SweepSettings) -> SweepOutcome:
    completed, failed, unfinished, pruned = [], {}, [], []
    logged = _last_logged(settings)
    for name in settings.planned_names():
        last = logged.get(name)
        if published(settings.runs_dir, name):
            (pruned if last and last["status"] == PRUNED else completed).append(name)
        elif last and last["status"] == FAILED:
            failed[name] = last.get("error") or "failed (no reason was logged)"
        else:
            unfinished.append(name)
    return SweepOutcome(sorted(completed), failed, sorted(unfinished), sorted(pruned))


def _last_logged(settings: SweepSettings) -> dict[str, dict]:
    """The sweep's latest log record of each experiment, from one read of the log (a sweep of
    thousands of trials must not read it once per trial)."""
    return {r["experiment"]: r for r in artifacts.read_log(Path(settings.runs_dir)) if r.get("sweep") == settings.name}


def _logged_error(logged: dict[str, dict], name: str) -> str | None:
    last = logged.get(name)
    return last.get("error") if last and last["status"] == FAILED else None


def interrupted_sweep(runs_dir: Path, name: str) -> list[str] | None:
    """The unfinished trials of sweep `name` if it exists and can be restored, else None."""
    path = sweep_file(runs_dir, name)
    if not path.is_file():
        return None
    try:
        settings = SweepSettings.load(path)
    except SweepError:
        artifacts.warn_damaged(
            f"{path}: unreadable, so sweep {name} cannot be resumed; its unfinished trials start anew"
        )
        return None
    if tune_storage.is_remote(settings.storage):
        tune_storage.check_reachable(settings.storage)  # one message, not pyarrow's traceback, if it cannot be read
    if not tune.Tuner.can_restore(settings.experiment_path):
        return None
    trials = tune_trials(settings)
    if trials is None:  # Tune could not restore it either
        return None
    return _summarize_trials(settings, trials).unfinished or None
