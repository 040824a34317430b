"""Sweeps: a plan -> ONE Tuner running every trial in parallel -> runs/; restore after a crash.

A sweep is either expanded experiments (one grid over whole configs) or one adaptive search (a
searcher proposes up to search.num_samples trials while the Tuner runs; searchers.py).

Owns the Tuner, each trial's resources, the restore path and the driver-side callback that
publishes each finished trial to runs/<experiment>/ and experiment_log.jsonl. Planning (plan.py)
needs no Ray; this module is where the Ray Tune driver API is used.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import ray
from ray import tune

from raytrain import artifacts, trace
from raytrain.config import ExperimentConfig, config_hash, resolved_dict, to_yaml
from raytrain.config.search_space import search_seed
from raytrain.data import load_dataset
from raytrain.errors import UserError

# policy, not train: the driver never imports torch (seconds of start-up); the trials do
from raytrain.naming import EXPERIMENT_KEY, METRIC, MODE, REPLAYED, adaptive_trial_name
from raytrain.provenance import git_commit
from raytrain.results import index as results_index
from raytrain.sweeps import storage as tune_storage
from raytrain.sweeps.plan import SweepPlan
from raytrain.sweeps.policy import PatienceStopper, checkpoint_config, stopped_by_scheduler
from raytrain.sweeps.progress import StatusLineOutput, SweepProgress
from raytrain.trackers import tracker_callbacks
from raytrain.training import checkpoints

MAX_FAILURES = 2  # retries of a failing trial (from its last checkpoint) before it is marked failed
# a failure's one-line reason (summary, experiment_log.jsonl): enough for the longest of raytrain's
# own messages, which name a file and the fix; error.txt beside the trial has the rest
MAX_REASON_CHARS = 600
ERROR_FILE = "error.txt"  # what Tune names a trial's traceback file
SWEEP_FILE_SUFFIX = ".sweep.json"  # runs/_tune/<sweep>.sweep.json: what `resume` needs to rebuild it


class SweepError(UserError):
    """A sweep that cannot start as asked (no GPU, nothing to resume, no terminal for the prompt)."""


# ---------------------------------------------------------------------------------------------------
# Run


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

    @property
    def experiment_path(self) -> str:
        return tune_storage.join(self.storage, self.name)

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


def sweep_file(runs_dir: Path, name: str) -> Path:
    return Path(runs_dir) / artifacts.TUNE_DIR / f"{name}{SWEEP_FILE_SUFFIX}"


def latest_sweep(runs_dir: Path) -> Path:
    candidates = sorted(
        (Path(runs_dir) / artifacts.TUNE_DIR).glob(f"*{SWEEP_FILE_SUFFIX}"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise SweepError(f"{Path(runs_dir) / artifacts.TUNE_DIR}: no sweep to resume; start one with `raytrain sweep`")
    return candidates[-1]


def start_sweep(
    plan: SweepPlan,
    *,
    data_root: Path,
    runs_dir: Path,
    storage: str | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    tracking: dict | None = None,
    verbose: bool = False,
) -> SweepSettings:
    """Connect to Ray and settle each trial's resources: the settings `run_sweep` executes (and
    saves for `resume`). One Tuner has one scheduler: ASHA when any planned config asks for it."""
    _connect(address, verbose=verbose)
    # a relative folder would resolve inside each trial's Ray staging folder (docs/ray-notes.md)
    if storage and not tune_storage.is_remote(storage):
        storage = str(Path(storage).expanduser().resolve())
    _note_shared_storage(storage or str(Path(runs_dir).resolve() / artifacts.TUNE_DIR))
    # the planner lets an adaptive search into a sweep only on its own
    search = next((t.config.search for t in plan.to_run if t.adaptive), None)
    experiments = [_with_concrete_resources(t.config.model_copy(update={"search": None})) for t in plan.to_run]
    asha = [t.scheduler for t in plan.to_run if t.scheduler]
    if search is not None:
        asha = [search.scheduler.model_dump()] if search.scheduler.type == "asha" else []
    name = plan.name
    if sweep_file(runs_dir, name).exists():  # the same trials ran before (--force): keep that record
        name = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    return SweepSettings(
        name=name,
        data_root=str(Path(data_root).expanduser().resolve()),
        runs_dir=str(Path(runs_dir).resolve()),
        storage=storage or str(Path(runs_dir).resolve() / artifacts.TUNE_DIR),
        experiments=experiments,
        # a search limits its trials in its searcher (one ConcurrencyLimiter: Tune would wrap a
        # second one around it for max_concurrent_trials, and save only one of the two states)
        max_concurrent=max_concurrent if search is None else None,
        scheduler=asha[0] if asha else None,
        address=address,
        search=_search_settings(plan.to_run[0].config, max_concurrent) if search is not None else None,
        tracking=tracking or None,
    )


def _note_shared_storage(storage: str) -> None:
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and not tune_storage.is_remote(storage):
        # a head-local path fails only once a trial on another node checkpoints (docs/ray-notes.md)
        print(
            f"note: {len(nodes)} nodes: trials on every node write their checkpoints to {storage}, so it must be one "
            "shared folder mounted at that path on every node (NFS), or pass --storage s3://...",
            flush=True,
        )


def _search_settings(config: ExperimentConfig, cli_max_concurrent: int | None) -> dict:
    search = config.search
    limits = [n for n in (search.max_concurrent, cli_max_concurrent) if n is not None]
    return {
        "algorithm": search.algorithm,
        "num_samples": search.num_samples,
        "max_concurrent": min(limits, default=None),
        "seed": search_seed(config),
        "space": search.space,
    }


def run_sweep(settings: SweepSettings, *, restore: bool = False, verbose: bool = False) -> SweepOutcome:
    """Run (or restore) the sweep's Tuner to the end or to Ctrl+C / SIGTERM. Trials are published to
    runs/ by the callback as each one finishes, so an interrupted sweep loses no finished trial.
    `verbose`: Ray's own output too (Tune's tables, worker logs), not only raytrain's lines."""
    _connect(settings.address, verbose=verbose)
    datasets = _load_datasets(settings)
    trace.mark("dataset_loaded")
    # object refs die with the driver: a restore rebuilds the wrapper and re-puts the data (docs/ray-notes.md)
    trainable = tune.with_resources(tune.with_parameters(raytrain_trial, datasets=datasets), trial_resources)
    trace.mark("dataset_put")
    # re-passed on restore too: trials created after it would otherwise get placeholders
    param_space = _param_space(settings)
    if restore:
        tuner = _restore(settings, trainable, param_space)
    else:
        settings.save()
        tuner = _new_tuner(settings, trainable, param_space, verbose=verbose)
    if tune_storage.is_remote(settings.storage):
        # two places now, on two machines maybe: say which holds what
        print(
            f"note: the Tune experiment (checkpoints, trial logs) is in {settings.experiment_path}; the runs folder "
            f"(best.pt, metrics, experiment_log.jsonl) is {settings.runs_dir} on {socket.gethostname()}, where this "
            "driver runs",
            flush=True,
        )
    with _sigterm_like_ctrl_c(), _status_line_removed_at_exit():
        try:
            trace.mark("fit_starts")
            tuner.fit()
        except Exception as err:
            # at its end fit() reads every trial's error files back; a disk that filled up leaves
            # them empty (EOFError, docs/ray-notes.md). The outcome is read from the files below.
            problem = unwritable(settings)
            if problem is None:
                raise
            print(
                f"warning: {problem}; the sweep ended early ({type(err).__name__}: {str(err)[:200]})", file=sys.stderr
            )
    if restore:
        publish_unpublished(settings)
    return summarize(settings)


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


def publish_unpublished(settings: SweepSettings) -> None:
    """Publish every trial Tune finished that is not whole in runs/: its publishing failed (a full
    disk) or the folder was damaged since. The trial's last checkpoint holds every artifact."""
    publisher = RunsPublisher(settings.runs_dir, settings.name)
    for trial in tune_trials(settings) or []:
        if trial.status == "TERMINATED" and not published(settings.runs_dir, trial.config[EXPERIMENT_KEY]["name"]):
            publisher.on_trial_complete(None, [], trial)


def published(runs_dir: str | Path, experiment: str) -> bool:
    try:
        artifacts.read_experiment(Path(runs_dir), experiment)
    except artifacts.DamagedExperiment:
        return False
    return True


def _restore(settings: SweepSettings, trainable, param_space: dict) -> tune.Tuner:
    rerun = (
        f"Its finished experiments are safe in {settings.runs_dir}: run the same `raytrain sweep` command "
        "again and only the unfinished ones run"
    )
    if not tune.Tuner.can_restore(settings.experiment_path):
        raise SweepError(
            f"{settings.experiment_path}: sweep {settings.name}'s Tune experiment is not there (deleted or moved?), "
            f"so it cannot be resumed. {rerun}"
        )
    try:
        tune.ExperimentAnalysis(settings.experiment_path)
    except (OSError, ValueError, EOFError) as err:
        # given a torn state file (a full disk), Tuner.restore would start every trial over (docs/ray-notes.md)
        raise SweepError(
            f"{settings.experiment_path}: sweep {settings.name}'s Tune state cannot be read "
            f"({type(err).__name__}: {str(err)[:200]}), so it cannot be resumed. {rerun}"
        ) from None
    return tune.Tuner.restore(
        settings.experiment_path, trainable, resume_unfinished=True, resume_errored=True, param_space=param_space
    )


def _param_space(settings: SweepSettings) -> dict:
    if settings.search:
        from raytrain.sweeps.searchers import adaptive_param_space

        return adaptive_param_space(settings.experiments[0], settings.search["space"])
    return {EXPERIMENT_KEY: tune.grid_search(settings.experiments)}


def _search_alg(settings: SweepSettings):
    """The searcher of an adaptive search; None for expanded experiments (Tune's grid generator).
    Tuner.restore unpickles it and reloads its state from the experiment folder."""
    if not settings.search:
        return None
    from raytrain.sweeps.searchers import build_searcher

    return build_searcher(settings.search, settings.experiments[0]["name"])


def _new_tuner(settings: SweepSettings, trainable, param_space: dict, *, verbose: bool) -> tune.Tuner:
    scheduler = None
    if settings.scheduler:
        scheduler = tune.schedulers.ASHAScheduler(
            metric=METRIC,
            mode=MODE,
            max_t=max(e["training"]["epochs"] for e in settings.experiments),
            grace_period=settings.scheduler["grace_period"],
            reduction_factor=settings.scheduler["reduction_factor"],
        )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=settings.max_concurrent,
            scheduler=scheduler,
            search_alg=_search_alg(settings),
            num_samples=settings.search["num_samples"] if settings.search else 1,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage,
            stop=PatienceStopper(),
            checkpoint_config=checkpoint_config(),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # the trackers after the publisher: they read a finished trial from runs/. The callbacks
            # are saved with the Tune experiment, so `resume` continues the same trackers
            callbacks=[
                RunsPublisher(settings.runs_dir, settings.name),
                LostCheckpointRepair(),
                *tracker_callbacks(settings.runs_dir, settings.name, settings.tracking),
                SweepProgress(len(_planned_names(settings)), settings.experiments[0]["training"]["epochs"]),
            ],
            # RunsPublisher prints a line per epoch and SweepProgress the status, instead of Tune's tables
            verbose=1 if verbose else 0,
        ),
    )


def raytrain_trial(config: dict, datasets: dict) -> None:
    """The sweep's trainable: the shared train function on the dataset its config asks for."""
    trace.mark("trial_starts")
    from raytrain.training.trainable import train_experiment  # here: torch is loaded in the trial, not the driver

    trace.mark("torch_imported")
    train_experiment(config, datasets[dataset_key(config[EXPERIMENT_KEY])])


def trial_resources(config: dict) -> dict:
    resources = config[EXPERIMENT_KEY]["resources"]
    return {"cpu": resources["cpu"], "gpu": resources["gpu"]}


def trial_name(trial) -> str:
    return trial.config[EXPERIMENT_KEY]["name"]


def trial_dirname(trial) -> str:
    # short, unique and one folder deep: long names hit path limits (docs/ray-notes.md), and a repeat's
    # "baseline/seed-2" would nest
    return f"{trial.config[EXPERIMENT_KEY]['name'][:60].replace('/', '__')}_{trial.trial_id}"


def dataset_key(experiment: dict) -> str:
    """Trials share a decoded dataset when they decode and split it alike."""
    return f"channels={experiment['data']['channels']},val_fraction={experiment['data']['val_fraction']}"


def _load_datasets(settings: SweepSettings) -> dict:
    keys = {dataset_key(e): e for e in settings.experiments}
    return {
        key: load_dataset(
            settings.data_root,
            channels=e["data"]["channels"],
            val_fraction=e["data"]["val_fraction"],
            workers=max(x["other"]["workers"] for x in settings.experiments),
        )
        for key, e in keys.items()
    }


def _connect(address: str | None, *, verbose: bool = False) -> None:
    # a checkpoint every epoch with num_to_keep=1 forces frequent experiment snapshots, which is
    # what we want; Tune warns about it on every epoch otherwise (docs/ray-notes.md)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:
        # Tune's default output engine prints a configuration box and a TensorBoard hint into Ray's
        # temporary folder even at verbose=0; the legacy one prints nothing (docs/ray-notes.md)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")  # set inside a Ray Job
    trace.mark("ray_init_starts")
    with _quiet_token_auth_notice(not verbose):
        if not address:
            # a private local Ray for this sweep; its dashboard would only cost start-up time, and so
            # would the idle workers it starts for the driver, one per CPU: Tune starts each trial on a
            # worker of its own, so they only take CPU from ray.init (docs/ray-notes.md)
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
            ray.init(include_dashboard=False, log_to_driver=verbose, configure_logging=False)
            trace.mark("ray_init_done")
            return
        if address != "auto" and Path.home().joinpath(".ray/auth_token").is_file():
            # Ray 2.60 turns token auth on by default, but a client given an explicit address does not
            # send its token unless told to (docs/ray-notes.md); without it the connection fails after ~20 s
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        ray.init(address=address, log_to_driver=verbose, configure_logging=False)


@contextmanager
def _quiet_token_auth_notice(quiet: bool):
    """ray.init logs "Token authentication is enabled for this Ray cluster..." on every start: news
    the first time, noise on each run. Token auth itself stays on; only that logger is quieted."""
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    if quiet:
        notice.setLevel(logging.ERROR)
    try:
        yield
    finally:
        notice.setLevel(level)


@contextmanager
def _status_line_removed_at_exit():
    """The live status line gives the terminal back however the Tuner ends (Ctrl+C, an error)."""
    try:
        yield
    finally:
        StatusLineOutput.uninstall()


def _with_concrete_resources(config: ExperimentConfig) -> dict:
    gpus_in_cluster = ray.cluster_resources().get("GPU", 0)
    data = resolved_dict(config)
    gpu = config.resources.gpu
    if gpu is None:
        gpu = 1.0 if gpus_in_cluster else 0.0  # a GPU per trial where there are GPUs, else the CPU
    if gpu > 0 and gpus_in_cluster == 0:
        # Tune would keep such a trial PENDING forever without an error (docs/ray-notes.md)
        raise SweepError(
            f"{config.name}: resources.gpu: asks for {gpu:g} GPU per trial, but the Ray cluster has no GPU; "
            "use --gpus-per-trial 0 (or resources.gpu: 0) to train on the CPU, or connect to a cluster with GPUs (--address)"
        )
    data["resources"] = {"cpu": config.resources.cpu, "gpu": gpu}
    return data


@contextmanager
def _sigterm_like_ctrl_c():
    """While the Tuner runs, SIGTERM (what `ray job stop` and Kubernetes send) acts as Ctrl+C: Tune
    saves its state on SIGINT and fit() returns normally; on SIGTERM up to ~10 s would be lost."""
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------------
# Publishing trials to runs/ (driver only)


FINISHED_STATUSES = ("completed", "pruned")  # published to runs/ with best.pt; a pruned one has no test


class RunsPublisher(tune.Callback):
    """Driver-side: as each trial finishes, its artifacts go to runs/<experiment>/ and one line to
    runs/experiment_log.jsonl. Idempotent per sweep and experiment, so a restored sweep that sees
    a trial finish again (it finished just before the kill) logs it once; a failed trial that a
    resume retries successfully gets its completed line after the failed one."""

    def __init__(self, runs_dir: str, sweep: str):
        self.runs_dir = Path(runs_dir)
        self.sweep = sweep
        self.commit = git_commit()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        if result.get(REPLAYED):
            print(f"[{experiment['name']}] had finished before the sweep stopped; not trained again", flush=True)
            return
        print(
            f"[{experiment['name']}] epoch {result['epoch']}/{experiment['training']['epochs']}  "
            f"val macro F1 {result['val/macro_f1']:.3f} (best {result['best/val/macro_f1']:.3f} @ {result['best_epoch']})  "
            f"train loss {result['train/loss']:.3f}  {result['train/images_per_s']:.0f} img/s",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if self._logged_status(name) in FINISHED_STATUSES and published(self.runs_dir, name):
            if trial.checkpoint is not None:  # it finished just before a kill: pruning may not have run
                _prune(trial.checkpoint, name)
            return
        if trial.checkpoint is None:
            self._append(trial, "failed", error="finished without reporting a checkpoint")
            return
        status = "pruned" if stopped_by_scheduler(experiment, trial.last_result or {}) else "completed"
        try:
            # only the published files are fetched from the storage (never state.pt)
            with checkpoints.trial_artifacts(trial.checkpoint) as folder:
                if folder is None:  # published and pruned earlier; runs/<name>/ was damaged since
                    self._append(
                        trial,
                        "failed",
                        error=(
                            f"damaged in {artifacts.experiment_dir(self.runs_dir, name)} after it was published, and its "
                            "Tune checkpoint no longer keeps the weights; run its config again (`raytrain sweep`/`run`)"
                        ),
                    )
                    return
                config_yaml = to_yaml(ExperimentConfig.model_validate(experiment))
                artifacts.publish_experiment(self.runs_dir, name, folder, config_yaml)
                best = artifacts.read_json(folder / artifacts.BEST_METRICS)
                test_path = folder / artifacts.TEST_METRICS
                test = artifacts.read_json(test_path) if test_path.is_file() else None
        except OSError as err:  # a full disk: the trial's checkpoint keeps it for `resume`
            self._append(
                trial,
                "failed",
                error=(
                    f"trained, but could not be copied to {artifacts.experiment_dir(self.runs_dir, name)} "
                    f"({err.strerror or err}); `raytrain resume --runs-dir {self.runs_dir}` copies it once there is space"
                ),
            )
            return
        self._append(trial, status, best=best, test=test)
        results_index.record(self.runs_dir, name)  # so a `compare` during the sweep need not read it
        _prune(trial.checkpoint, name)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self._logged_status(trial.config[EXPERIMENT_KEY]["name"]) is None:
            self._append(trial, "failed", error=_error_summary(trial))

    def _logged_status(self, name: str) -> str | None:
        """The status of this sweep's latest log line for `name`, None if it has none."""
        lines = [r for r in artifacts.read_log(self.runs_dir) if r["sweep"] == self.sweep and r["experiment"] == name]
        return lines[-1]["status"] if lines else None

    def _append(self, trial, status: str, *, best=None, test=None, error=None) -> None:
        experiment = trial.config[EXPERIMENT_KEY]
        last = trial.last_result or {}
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sweep": self.sweep,
            "experiment": experiment["name"],
            "status": status,
            "config_hash": config_hash(ExperimentConfig.model_validate(experiment)),
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
                f"[{record['experiment']}] could not write {self.runs_dir / artifacts.EXPERIMENT_LOG}: {err.strerror or err}",
                flush=True,
            )
        if status == "completed":
            print(
                f"[{record['experiment']}] done: best epoch {record['best_epoch']}, val macro F1 {record['val_macro_f1']:.3f}",
                flush=True,
            )
        elif status == "pruned":
            print(
                f"[{record['experiment']}] pruned by the scheduler after epoch {record['epochs_run']}: "
                f"best epoch {record['best_epoch']}, val macro F1 {record['val_macro_f1']:.3f}",
                flush=True,
            )
        else:
            print(f"[{record['experiment']}] FAILED: {error}", flush=True)


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


class LostCheckpointRepair(tune.Callback):
    """On restore, points a trial whose recorded checkpoint is gone at the checkpoint that replaced it.

    When a trial reports checkpoint N, the driver deletes checkpoint N-1 (num_to_keep) at once but
    uploads the experiment state that names N only later, in the background. A driver killed in
    between (SIGKILL, a lost head node) leaves a state naming the deleted N-1, and Tune would fail
    the trial on every retry ("Could not recover from checkpoint as it does not exist on storage
    anymore"); with a bucket the gap is long enough to hit (docs/ray-notes.md). Checkpoint N is
    whole: the trial uploads it before reporting it. Pickled with the Tuner, so it runs on restore."""

    def setup(self, **info):
        self._checked = False

    def on_step_begin(self, iteration, trials, **info):
        # the first step of a fit, before any trial's actor starts and restores
        if getattr(self, "_checked", True):
            return
        self._checked = True
        for trial in trials:
            if trial.status != "TERMINATED":
                _repoint_lost_checkpoint(trial)


def _repoint_lost_checkpoint(trial) -> None:
    import pyarrow.fs

    result = trial.run_metadata.checkpoint_manager.latest_checkpoint_result
    if result is None:
        return
    filesystem, lost = result.checkpoint.filesystem, result.checkpoint.path
    if filesystem.get_file_info(lost).type != pyarrow.fs.FileType.NotFound:
        return
    replacement = tune_storage.next_checkpoint(filesystem, trial.storage.trial_fs_path, after=lost)
    if replacement is None:
        return  # nothing to continue from: Tune fails the trial with its own message, naming the path
    result.checkpoint = type(result.checkpoint)(path=replacement, filesystem=filesystem)
    # the next checkpoint gets the number after the replacement's, not the lost one's: Tune would
    # write it over the folder it continues from, then delete that folder as an old checkpoint
    trial.storage.current_checkpoint_index = tune_storage.checkpoint_index(replacement)
    print(
        f"[{trial.config[EXPERIMENT_KEY]['name']}] its last recorded checkpoint {Path(lost).name} was replaced just "
        f"before the sweep stopped; continuing from {Path(replacement).name}",
        flush=True,
    )


def _error_summary(trial) -> str:
    """The trial's last failure as one line: its exception's own message, whole lines from the
    first, up to MAX_REASON_CHARS, and where the full traceback is."""
    text = _error_text(trial)
    where = f"{tune_storage.trial_location(trial)}/{ERROR_FILE}" if trial.path else ERROR_FILE
    if text is None:
        return f"trial failed; no {ERROR_FILE} was saved (looked for {where})"
    return f"{failure_reason(text)} (full traceback: {where})"


def _error_text(trial) -> str | None:
    # the driver writes error.txt to its Ray session's staging folder and syncs it to the storage
    # later; trial.error_file needs a running Ray (docs/ray-notes.md), so a command run after the
    # sweep, without Ray, reads the synced copy from the storage
    if ray.is_initialized() and trial.error_file and Path(trial.error_file).is_file():
        return Path(trial.error_file).read_text(errors="replace")
    try:
        return trial.get_error()
    except OSError:
        return None


_TRACEBACK_FRAME = re.compile(r"^\s+File \"")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_reason(error_text: str) -> str:
    """error.txt -> the message of the exception that ended the last failure, on one line.

    error.txt holds one block per failure ("Failure # N ..."), each a traceback ending in
    `Type: message`, where the message may run over several lines: the useful part is its start.
    """
    text = _ANSI.sub("", error_text)
    block = text.split("Failure # ")[-1].splitlines()
    frames = [i for i, line in enumerate(block) if _TRACEBACK_FRAME.match(line)]
    after = block[frames[-1] + 1 :] if frames else block[1:]
    # the frame's source and caret lines are indented; the exception starts at the first line that is not
    start = next((i for i, line in enumerate(after) if line.strip() and not line.startswith((" ", "\t"))), None)
    lines = [line.strip() for line in after[start:]] if start is not None else []
    message = " ".join(line for line in lines if line)
    message = re.sub(r"^(?:[A-Za-z_][\w]*\.)+(?=\w+: )", "", message)  # raytrain.training.models.ModelError -> ModelError
    if not message:
        return "trial failed"
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 1].rsplit(" ", 1)[0] + " …"
    return message


# ---------------------------------------------------------------------------------------------------
# Outcome


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
    for trial in trials:
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if trial.status == "ERROR":
            failed[name] = _error_summary(trial)
        elif trial.status == "TERMINATED" and not published(settings.runs_dir, name):
            failed[name] = (
                _logged_error(settings, name)
                or f"trained, but is not whole in {settings.runs_dir}/{name}/; `raytrain resume` copies it"
            )
        elif trial.status == "TERMINATED" and stopped_by_scheduler(experiment, trial.last_result or {}):
            pruned.append(name)
        elif trial.status == "TERMINATED":
            completed.append(name)
        else:
            unfinished.append(name)
    if settings.search:
        # the searcher has not proposed these yet; it numbers them in order, so their names are known
        unfinished += _planned_names(settings)[len(trials) :]
    return SweepOutcome(sorted(completed), failed, sorted(unfinished), sorted(pruned))


def tune_trials(settings: SweepSettings) -> list | None:
    """The sweep's trials as Tune recorded them, or None (with a warning) where that record is gone
    or damaged: Tune writes its state file in place, so a disk that fills up can leave it torn."""
    try:
        return tune.ExperimentAnalysis(settings.experiment_path).trials
    except (OSError, ValueError, EOFError) as err:  # a torn JSON state file is a ValueError
        artifacts.warn_damaged(
            f"{settings.experiment_path}: Tune's record of sweep {settings.name} is unreadable "
            f"({type(err).__name__}: {str(err)[:120]}); the outcome is taken from {settings.runs_dir}/{artifacts.EXPERIMENT_LOG}"
        )
        return None


def _summarize_from_log(settings: SweepSettings) -> SweepOutcome:
    completed, failed, unfinished, pruned = [], {}, [], []
    for name in _planned_names(settings):
        last = _last_logged(settings, name)
        if published(settings.runs_dir, name):
            (pruned if last and last["status"] == "pruned" else completed).append(name)
        elif last and last["status"] == "failed":
            failed[name] = last.get("error") or "failed"
        else:
            unfinished.append(name)
    return SweepOutcome(sorted(completed), failed, sorted(unfinished), sorted(pruned))


def _planned_names(settings: SweepSettings) -> list[str]:
    """Every trial name the sweep plans: its experiments, or an adaptive search's whole budget."""
    if settings.search:
        search = settings.experiments[0]["name"]
        return [adaptive_trial_name(search, n) for n in range(1, settings.search["num_samples"] + 1)]
    return [experiment["name"] for experiment in settings.experiments]


def _last_logged(settings: SweepSettings, name: str) -> dict | None:
    lines = [
        r
        for r in artifacts.read_log(Path(settings.runs_dir))
        if r["sweep"] == settings.name and r["experiment"] == name
    ]
    return lines[-1] if lines else None


def _logged_error(settings: SweepSettings, name: str) -> str | None:
    last = _last_logged(settings, name)
    return last.get("error") if last and last["status"] == "failed" else None


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
