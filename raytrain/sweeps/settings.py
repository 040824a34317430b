"""A sweep's settings: what it runs, where, and with which searcher, scheduler and trackers,
saved beside its Tune folder (runs/_tune/<sweep>.sweep.json) so `resume` rebuilds the same sweep.
Plain data and file checks: no Tuner here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from raytrain import artifacts
from raytrain.errors import UserError
from raytrain.naming import adaptive_trial_name
from raytrain.sweeps import storage as tune_storage

SWEEP_FILE_SUFFIX = ".sweep.json"  # runs/_tune/<sweep>.sweep.json: what `resume` needs to rebuild it


class SweepError(UserError):
    """A sweep that cannot start as asked (no GPU, nothing to resume, no terminal for the prompt)."""


@dataclass
class SweepSettings:
    """Everything `resume` needs to rebuild the sweep, saved beside its Tune folder."""

    name: str
    data_root: str
    runs_dir: str
    storage: str  # a local folder or a pyarrow URI (s3://...); the Tune experiment lives under it
    experiments: list[dict]  # resolved configs, resources concrete
    max_concurrent: int | None = None
    scheduler: dict | None = None
    address: str | None = None
    # an adaptive search: {algorithm, num_samples, max_concurrent, seed, space}; experiments then
    # holds its one base config, named after the search
    search: dict | None = None
    # the experiment trackers to mirror runs/ to: {"mlflow": tracking URI, "wandb": project}; None: TensorBoard only
    tracking: dict | None = None
    # started with --force: may replace an experiment in runs/ that holds another config's run
    force: bool = False

    @property
    def experiment_path(self) -> str:
        return tune_storage.join(self.storage, self.name)

    def planned_names(self) -> list[str]:
        """Every trial name the sweep plans: its experiments, or an adaptive search's whole budget."""
        if self.search:
            search = self.experiments[0]["name"]
            return [adaptive_trial_name(search, n) for n in range(1, self.search["num_samples"] + 1)]
        return [experiment["name"] for experiment in self.experiments]

    def save(self) -> None:
        artifacts.write_json(sweep_file(Path(self.runs_dir), self.name), self.__dict__)

    @classmethod
    def load(cls, path: Path) -> SweepSettings:
        try:
            return cls(**artifacts.read_json(path))._moved_to(Path(path).parent.parent)
        except (OSError, ValueError, TypeError) as err:  # unreadable, torn JSON, or other keys
            raise SweepError(
                f"{path}: cannot read this sweep's settings ({type(err).__name__}: {str(err)[:200]}); it cannot be "
                "resumed. Its finished experiments are safe in the runs folder: run the same `raytrain sweep` "
                "command again and only the unfinished ones run"
            ) from None

    def _moved_to(self, runs_dir: Path) -> SweepSettings:
        """The settings as they apply where the runs folder is now: a moved (or copied) runs/ keeps
        its Tune experiment inside, at runs/_tune, so both paths follow it. Other storage stays."""
        here = str(runs_dir.resolve())
        if self.runs_dir != here:
            if self.storage == str(Path(self.runs_dir) / artifacts.TUNE_DIR):
                self.storage = str(Path(here) / artifacts.TUNE_DIR)
            self.runs_dir = here
        return self


# The sweeps this driver process runs, by name, as they apply here and now. Tune pickles the callbacks
# into the Tune experiment and `resume` gets them back as they were, paths and all; a runs folder moved
# since must not send results back to where it was. So the callbacks keep only the sweep's name and
# look its folders up here, where run_sweep put the settings it was given.
_RUNNING: dict[str, SweepSettings] = {}


def register_running(settings: SweepSettings) -> None:
    _RUNNING[settings.name] = settings


def running(sweep: str) -> SweepSettings:
    """The settings of sweep `sweep`, which this process is running (run_sweep registered them)."""
    try:
        return _RUNNING[sweep]
    except KeyError:
        raise RuntimeError(f"sweep {sweep} is not running in this process: run_sweep registers it") from None


def sweep_file(runs_dir: Path, name: str) -> Path:
    return artifacts.within(Path(runs_dir) / artifacts.TUNE_DIR, f"{name}{SWEEP_FILE_SUFFIX}")


def unused_sweep_name(runs_dir: Path, name: str) -> str:
    """`name`, or `name` and the time where a sweep of that name ran before (the same trials, run
    again with --force): that sweep's record is kept."""
    if sweep_file(runs_dir, name).exists():
        return f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    return name


def latest_sweep(runs_dir: Path) -> Path:
    candidates = sorted(
        (Path(runs_dir) / artifacts.TUNE_DIR).glob(f"*{SWEEP_FILE_SUFFIX}"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise SweepError(f"{Path(runs_dir) / artifacts.TUNE_DIR}: no sweep to resume; start one with `raytrain sweep`")
    return candidates[-1]


def require_writable(runs_dir: str | Path, storage: str | None) -> None:
    """Called before Ray starts, so a read-only or full disk, or a bucket this machine cannot write
    (wrong name, endpoint or credentials), fails the command before any training."""
    artifacts.check_writable(Path(runs_dir))
    if storage and tune_storage.is_remote(storage):
        tune_storage.check_reachable(storage)
    elif storage:
        artifacts.check_writable(Path(storage))


def unwritable(settings: SweepSettings) -> str | None:
    """Why the sweep's runs folder (or local Tune storage) cannot take a file now, or None."""
    try:
        require_writable(settings.runs_dir, settings.storage)
    except (artifacts.UnwritableRuns, tune_storage.StorageError) as err:
        return str(err)
    return None
