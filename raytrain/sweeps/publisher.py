"""Publishing, in the driver: as each trial finishes, its artifacts go to runs/<experiment>/ and one
line to runs/experiment_log.jsonl, then its Tune checkpoints are pruned to the small files.
A Tune callback, pickled with the experiment: `resume` continues with the same one, which finds the
runs folder where the sweep is now (settings.running), not where it was when it was pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ray import tune

from raytrain import artifacts, lineage
from raytrain.config import ConfigError, ExperimentConfig, config_hash, published_config_hash, to_yaml
from raytrain.naming import COMPLETED, EXPERIMENT_KEY, FAILED, FINISHED_STATUSES, PRUNED
from raytrain.provenance import FORMAT, CodeState, code_provenance, git_commit
from raytrain.results import index as results_index
from raytrain.sweeps.failures import error_summary
from raytrain.sweeps.locks import runs_folder_lock
from raytrain.sweeps.policy import stopped_by_scheduler
from raytrain.sweeps.progress import EpochLines
from raytrain.sweeps.settings import SweepSettings, running
from raytrain.sweeps.tune_state import tune_trials
from raytrain.training import checkpoints


@dataclass(frozen=True)
class SweepProvenance:
    """What the driver records each time it runs a sweep (start or resume) for the publisher to
    write beside every experiment: the code it runs, and the data part of provenance.json of the
    dataset an experiment's trial gets (`data_of(experiment config)`, None if it has none)."""

    code: CodeState
    data_of: Callable[[dict], dict | None]


# by sweep, in this process: the publisher is pickled with the Tune experiment, this is not (a
# resumed sweep records the code and data it resumes with)
_PROVENANCE: dict[str, SweepProvenance] = {}


def register_provenance(sweep: str, provenance: SweepProvenance) -> None:
    _PROVENANCE[sweep] = provenance


def published(runs_dir: str | Path, experiment: str) -> bool:
    try:
        artifacts.read_experiment(Path(runs_dir), experiment)
    except artifacts.DamagedExperiment:
        return False
    return True


def publish_unpublished(settings: SweepSettings) -> None:
    """Publish every trial Tune finished that is not whole in runs/: its publishing failed (a full
    disk) or the folder was damaged since. The trial's last checkpoint holds every artifact."""
    publisher = RunsPublisher(settings.name)
    for trial in tune_trials(settings) or []:
        if trial.status == "TERMINATED" and not published(settings.runs_dir, trial.config[EXPERIMENT_KEY]["name"]):
            publisher.on_trial_complete(None, [], trial)


class RunsPublisher(tune.Callback):
    """Driver-side: as each trial finishes, its artifacts go to runs/<experiment>/ and one line to
    runs/experiment_log.jsonl. Idempotent per sweep and experiment, so a restored sweep that sees
    a trial finish again (it finished just before the kill) logs it once; a failed trial that a
    resume retries successfully gets its completed line after the failed one."""

    def __init__(self, sweep: str):
        self.sweep = sweep
        self.commit = git_commit()

    @property
    def runs_dir(self) -> Path:
        # a property: also over the runs_dir that publishers pickled before raytrain 0.2.1 hold
        return Path(running(self.sweep).runs_dir)

    def on_trial_complete(self, iteration, trials, trial, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if self._logged_status(name) in FINISHED_STATUSES and published(self.runs_dir, name):
            if trial.checkpoint is not None and not _member(trial):  # it finished just before a kill
                _prune(trial.checkpoint, name)
            return
        if trial.checkpoint is None:
            self._append(trial, FAILED, error="finished without reporting a checkpoint")
            return
        status = PRUNED if stopped_by_scheduler(experiment, trial.last_result or {}) else COMPLETED
        try:
            # only the published files are fetched from the storage (never state.pt)
            with checkpoints.trial_artifacts(trial.checkpoint) as folder:
                if folder is None:  # published and pruned earlier; runs/<name>/ was damaged since
                    self._append(
                        trial,
                        FAILED,
                        error=(
                            f"damaged in {artifacts.experiment_dir(self.runs_dir, name)} after it was published, and "
                            "its "
                            "Tune checkpoint no longer keeps the weights; run its config again (`raytrain sweep`/`run`)"
                        ),
                    )
                    return
                config = ExperimentConfig.model_validate(_published_config(trial, folder))
                # one publish at a time into the runs folder: two sweeps never mix their files in one
                with runs_folder_lock(self.runs_dir):
                    other = self._another_run_in_place(name, config)
                    if other is not None:
                        self._append(trial, FAILED, error=other)
                        return
                    record, patch = self._provenance(experiment, folder)
                    artifacts.publish_experiment(
                        self.runs_dir, name, folder, to_yaml(config), provenance=record, patch=patch
                    )
                best = artifacts.read_json(folder / artifacts.BEST_METRICS)
                test_path = folder / artifacts.TEST_METRICS
                test = artifacts.read_json(test_path) if test_path.is_file() else None
        except OSError as err:  # a full disk: the trial's checkpoint keeps it for `resume`
            self._append(
                trial,
                FAILED,
                error=(
                    f"trained, but could not be copied to {artifacts.experiment_dir(self.runs_dir, name)} "
                    f"({err.strerror or err}); `raytrain resume --runs-dir {self.runs_dir}` copies it once there is "
                    "space"
                ),
            )
            return
        self._append(trial, status, best=best, test=test, config=config)
        results_index.record(self.runs_dir, name)  # so a `compare` during the sweep need not read it
        if not _member(trial):
            _prune(trial.checkpoint, name)

    def on_experiment_end(self, trials, **info):
        # a population member's checkpoints may be copied by another member until the last one
        # ends: they are pruned together, once the population has finished
        for trial in trials:
            name = trial.config[EXPERIMENT_KEY]["name"]
            if _member(trial) and trial.status == "TERMINATED" and trial.checkpoint is not None:
                if self._logged_status(name) in FINISHED_STATUSES and published(self.runs_dir, name):
                    _prune(trial.checkpoint, name)

    def _another_run_in_place(self, name: str, config: ExperimentConfig) -> str | None:
        """Why this trial must not replace runs/<name>/, or None. It holds a whole run of another
        config that this sweep did not plan to replace (it was absent or damaged at planning, or the
        sweep ran without --force): another sweep published it while this one trained."""
        folder = artifacts.experiment_dir(self.runs_dir, name)
        if running(self.sweep).force or not published(self.runs_dir, name):
            return None
        try:
            there = published_config_hash(self.runs_dir, name)
        except ConfigError:  # a config this version cannot read: not a run to keep over this one
            return None
        if there == config_hash(config):
            return None
        return (
            f"{folder} holds another run of {name} (config hash {there}), published by another sweep while this one "
            f"trained it; kept that one. `raytrain sweep --force` runs this config ({config_hash(config)}) in its place"
        )

    def _provenance(self, experiment: dict, folder: Path) -> tuple[dict, str | None]:
        """provenance.json for a trial published from `folder` (its machine part is the trial's own),
        and the uncommitted diff it names."""
        recorded = _PROVENANCE.get(self.sweep)
        try:
            machine = artifacts.read_json(folder / artifacts.PROVENANCE).get("machine")
        except (OSError, ValueError, AttributeError):  # from a trial of an older raytrain, or torn
            machine = None
        record = {
            "format": FORMAT,
            "experiment": experiment["name"],
            "sweep": self.sweep,
            "data": recorded.data_of(experiment) if recorded else None,
            "code": code_provenance(recorded.code, artifacts.UNCOMMITTED_PATCH) if recorded else None,
            "machine": machine,
        }
        return record, recorded.code.patch if recorded else None

    def on_trial_error(self, iteration, trials, trial, **info):
        if self._logged_status(trial.config[EXPERIMENT_KEY]["name"]) is None:
            self._append(trial, FAILED, error=error_summary(trial))

    def _logged_status(self, name: str) -> str | None:
        """The status of this sweep's latest log line for `name`, None if it has none."""
        last = artifacts.last_logged(self.runs_dir, self.sweep, name)
        return last["status"] if last else None

    def _append(self, trial, status: str, *, best=None, test=None, error=None, config=None) -> None:
        experiment = trial.config[EXPERIMENT_KEY]
        last = trial.last_result or {}
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sweep": self.sweep,
            "experiment": experiment["name"],
            "status": status,
            "config_hash": config_hash(config or ExperimentConfig.model_validate(experiment)),
            "git_commit": self.commit,
            "best_epoch": best["epoch"] if best else None,
            "epochs_run": last.get("epoch"),
            "val_macro_f1": best["macro_f1"] if best else None,
            "val_accuracy": best["accuracy"] if best else None,
            "test_macro_f1": test["macro_f1"] if test else None,
            "test_accuracy": test["accuracy"] if test else None,
            "duration_s": round(last.get("time_total_s", 0.0), 1),
            "node_id": last.get("node_id"),
            "trial_id": trial.trial_id,
            "error": error,
        }
        try:
            artifacts.append_log(self.runs_dir, record)
        except OSError as err:  # a full disk: say it here at least; the sweep's summary says it again
            print(
                f"[{record['experiment']}] could not write {self.runs_dir / artifacts.EXPERIMENT_LOG}: "
                f"{err.strerror or err}",
                flush=True,
            )
        if status == COMPLETED:
            print(
                f"[{record['experiment']}] done: best epoch {record['best_epoch']}, val macro F1 "
                f"{record['val_macro_f1']:.3f}",
                flush=True,
            )
        elif status == PRUNED:
            print(
                f"[{record['experiment']}] pruned by the scheduler after epoch {record['epochs_run']}: "
                f"best epoch {record['best_epoch']}, val macro F1 {record['val_macro_f1']:.3f}",
                flush=True,
            )
        else:
            print(f"[{record['experiment']}] FAILED: {error}", flush=True)


def _member(trial) -> bool:
    """A member of a population (pbt, pb2): its knobs changed as it trained (raytrain/lineage.py)."""
    return lineage.POPULATION_KEY in trial.config


def _published_config(trial, folder: Path) -> dict:
    """What config.yaml says the run is: the trial's config, or for a population member the knob
    values in force at its best epoch, which are what its best.pt was trained with (the whole
    schedule is schedule.csv beside it)."""
    experiment = trial.config[EXPERIMENT_KEY]
    if not _member(trial):
        return experiment
    best = artifacts.read_json(folder / artifacts.BEST_METRICS)
    return lineage.config_at(experiment, artifacts.read_json(folder / artifacts.HISTORY), best["epoch"])


def _prune(checkpoint, name: str) -> None:
    """A published trial keeps only small files in the Tune storage: its weights are in runs/, and
    nothing reads state.pt again (a finished trial is never continued). Best effort: a storage that
    refuses the delete costs disk, not results."""
    try:
        checkpoints.prune_published(checkpoint)
    except OSError as err:
        print(
            f"[{name}] note: could not prune its Tune checkpoints at {checkpoint.path} ({err}); they only take space",
            flush=True,
        )


class RunsPublisherWithEpochLines(EpochLines, RunsPublisher):
    """What a sweep started before raytrain 0.2 pickled as raytrain.sweep.RunsPublisher: the publisher
    that also printed the epoch lines. raytrain/moved.py maps the old name here, so such a sweep
    resumes with both."""
