"""Sweeps: a plan -> ONE Tuner running every trial in parallel -> runs/; restore after a crash.

A sweep is either expanded experiments (one grid over whole configs) or one adaptive search (a
searcher proposes up to search.num_samples trials while the Tuner runs; searchers.py).

Owns the Tuner, each trial's resources, the restore path and the driver-side callback that
publishes each finished trial to runs/<experiment>/ and experiment_log.jsonl. Planning (plan.py)
needs no Ray; this module is where the Ray Tune driver API is used.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import ray
from ray import tune

from raytrain import artifacts
from raytrain.config import ExperimentConfig, config_hash, resolved_dict, to_yaml
from raytrain.data import load_dataset
from raytrain.errors import UserError
from raytrain.plan import SweepPlan
from raytrain.search import adaptive_trial_name, search_seed
from raytrain.train import (
    EXPERIMENT_KEY, METRIC, MODE, PatienceStopper, checkpoint_config, stopped_by_scheduler, train_experiment,
)

MAX_FAILURES = 2  # retries of a failing trial (from its last checkpoint) before it is marked failed
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

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    def save(self) -> None:
        artifacts.write_json(sweep_file(Path(self.runs_dir), self.name), self.__dict__)

    @classmethod
    def load(cls, path: Path) -> SweepSettings:
        return cls(**artifacts.read_json(path))


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
) -> SweepSettings:
    """Connect to Ray and settle each trial's resources: the settings `run_sweep` executes (and
    saves for `resume`). One Tuner has one scheduler: ASHA when any planned config asks for it."""
    _connect(address)
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
    )


def _search_settings(config: ExperimentConfig, cli_max_concurrent: int | None) -> dict:
    search = config.search
    limits = [n for n in (search.max_concurrent, cli_max_concurrent) if n is not None]
    return {
        "algorithm": search.algorithm, "num_samples": search.num_samples, "max_concurrent": min(limits, default=None),
        "seed": search_seed(config), "space": search.space,
    }


def run_sweep(settings: SweepSettings, *, restore: bool = False) -> SweepOutcome:
    """Run (or restore) the sweep's Tuner to the end or to Ctrl+C / SIGTERM. Trials are published to
    runs/ by the callback as each one finishes, so an interrupted sweep loses no finished trial."""
    _connect(settings.address)
    # object refs die with the driver: a restore rebuilds the wrapper and re-puts the data (RAY_NOTES)
    trainable = tune.with_resources(
        tune.with_parameters(raytrain_trial, datasets=_load_datasets(settings)), trial_resources
    )
    # re-passed on restore too: trials created after it would otherwise get placeholders
    param_space = _param_space(settings)
    if restore:
        tuner = tune.Tuner.restore(
            settings.experiment_path, trainable, resume_unfinished=True, resume_errored=True, param_space=param_space
        )
    else:
        settings.save()
        tuner = _new_tuner(settings, trainable, param_space)
    with _sigterm_like_ctrl_c():
        tuner.fit()
    return summarize(settings)


def _param_space(settings: SweepSettings) -> dict:
    if settings.search:
        from raytrain.searchers import adaptive_param_space

        return adaptive_param_space(settings.experiments[0], settings.search["space"])
    return {EXPERIMENT_KEY: tune.grid_search(settings.experiments)}


def _search_alg(settings: SweepSettings):
    """The searcher of an adaptive search; None for expanded experiments (Tune's grid generator).
    Tuner.restore unpickles it and reloads its state from the experiment folder."""
    if not settings.search:
        return None
    from raytrain.searchers import build_searcher

    return build_searcher(settings.search, settings.experiments[0]["name"])


def _new_tuner(settings: SweepSettings, trainable, param_space: dict) -> tune.Tuner:
    scheduler = None
    if settings.scheduler:
        scheduler = tune.schedulers.ASHAScheduler(
            metric=METRIC, mode=MODE, max_t=max(e["training"]["epochs"] for e in settings.experiments),
            grace_period=settings.scheduler["grace_period"], reduction_factor=settings.scheduler["reduction_factor"],
        )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=settings.max_concurrent, scheduler=scheduler,
            search_alg=_search_alg(settings), num_samples=settings.search["num_samples"] if settings.search else 1,
            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage,
            stop=PatienceStopper(),
            checkpoint_config=checkpoint_config(),
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            callbacks=[RunsPublisher(settings.runs_dir, settings.name)],
            verbose=0,  # RunsPublisher prints one line per epoch instead of Tune's tables
        ),
    )


def raytrain_trial(config: dict, datasets: dict) -> None:
    """The sweep's trainable: the shared train function on the dataset its config asks for."""
    train_experiment(config, datasets[dataset_key(config[EXPERIMENT_KEY])])


def trial_resources(config: dict) -> dict:
    resources = config[EXPERIMENT_KEY]["resources"]
    return {"cpu": resources["cpu"], "gpu": resources["gpu"]}


def trial_name(trial) -> str:
    return trial.config[EXPERIMENT_KEY]["name"]


def trial_dirname(trial) -> str:
    # short, unique and one folder deep: long names hit path limits (RAY_NOTES), and a repeat's
    # "baseline/seed-2" would nest
    return f"{trial.config[EXPERIMENT_KEY]['name'][:60].replace('/', '__')}_{trial.trial_id}"


def dataset_key(experiment: dict) -> str:
    """Trials share a decoded dataset when they decode and split it alike."""
    return f"channels={experiment['data']['channels']},val_fraction={experiment['data']['val_fraction']}"


def _load_datasets(settings: SweepSettings) -> dict:
    keys = {dataset_key(e): e for e in settings.experiments}
    return {
        key: load_dataset(
            settings.data_root, channels=e["data"]["channels"], val_fraction=e["data"]["val_fraction"],
            workers=max(x["other"]["workers"] for x in settings.experiments),
        )
        for key, e in keys.items()
    }


def _connect(address: str | None) -> None:
    # a checkpoint every epoch with num_to_keep=1 forces frequent experiment snapshots, which is
    # what we want; Tune warns about it on every epoch otherwise (RAY_NOTES)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")  # set inside a Ray Job
    if not address:
        # a private local Ray for this sweep; its dashboard would only cost start-up time
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    if address != "auto" and Path.home().joinpath(".ray/auth_token").is_file():
        # Ray 2.60 turns token auth on by default, but a client given an explicit address does not
        # send its token unless told to (RAY_NOTES); without it the connection fails after ~20 s
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    ray.init(address=address, log_to_driver=False, configure_logging=False)


def _with_concrete_resources(config: ExperimentConfig) -> dict:
    gpus_in_cluster = ray.cluster_resources().get("GPU", 0)
    data = resolved_dict(config)
    gpu = config.resources.gpu
    if gpu is None:
        gpu = 1.0 if gpus_in_cluster else 0.0  # a GPU per trial where there are GPUs, else the CPU
    if gpu > 0 and gpus_in_cluster == 0:
        # Tune would keep such a trial PENDING forever without an error (RAY_NOTES)
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
        self.commit = _git_commit()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        print(
            f"[{experiment['name']}] epoch {result['epoch']}/{experiment['training']['epochs']}  "
            f"val macro F1 {result['val/macro_f1']:.3f} (best {result['best/val/macro_f1']:.3f} @ {result['best_epoch']})  "
            f"train loss {result['train/loss']:.3f}  {result['train/images_per_s']:.0f} img/s",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if self._logged_status(name) in FINISHED_STATUSES:
            return
        if trial.checkpoint is None:
            self._append(trial, "failed", error="finished without reporting a checkpoint")
            return
        status = "pruned" if stopped_by_scheduler(experiment, trial.last_result or {}) else "completed"
        with trial.checkpoint.as_directory() as folder:
            config_yaml = to_yaml(ExperimentConfig.model_validate(experiment))
            artifacts.publish_experiment(self.runs_dir, name, Path(folder), config_yaml)
            best = artifacts.read_json(Path(folder) / artifacts.BEST_METRICS)
            test_path = Path(folder) / artifacts.TEST_METRICS
            test = artifacts.read_json(test_path) if test_path.is_file() else None
        self._append(trial, status, best=best, test=test)

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
        artifacts.append_log(self.runs_dir, record)
        if status == "completed":
            print(f"[{record['experiment']}] done: best epoch {record['best_epoch']}, val macro F1 {record['val_macro_f1']:.3f}", flush=True)
        elif status == "pruned":
            print(
                f"[{record['experiment']}] pruned by the scheduler after epoch {record['epochs_run']}: "
                f"best epoch {record['best_epoch']}, val macro F1 {record['val_macro_f1']:.3f}", flush=True,
            )
        else:
            print(f"[{record['experiment']}] FAILED: {error}", flush=True)


def _error_summary(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return "trial failed (no error file)"
    return lines[-1][:500] if lines else "trial failed"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


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
    # the in-memory ResultGrid calls unfinished trials TERMINATED; the files on disk do not (RAY_NOTES)
    analysis = tune.ExperimentAnalysis(settings.experiment_path)
    completed, failed, unfinished, pruned = [], {}, [], []
    for trial in analysis.trials:
        experiment = trial.config[EXPERIMENT_KEY]
        name = experiment["name"]
        if trial.status == "ERROR":
            failed[name] = _error_summary(trial)
        elif trial.status == "TERMINATED" and stopped_by_scheduler(experiment, trial.last_result or {}):
            pruned.append(name)
        elif trial.status == "TERMINATED":
            completed.append(name)
        else:
            unfinished.append(name)
    if settings.search:
        # the searcher has not proposed these yet; it numbers them in order, so their names are known
        search = settings.experiments[0]["name"]
        unfinished += [adaptive_trial_name(search, n) for n in range(len(analysis.trials) + 1, settings.search["num_samples"] + 1)]
    return SweepOutcome(sorted(completed), failed, sorted(unfinished), sorted(pruned))


def interrupted_sweep(runs_dir: Path, name: str) -> list[str] | None:
    """The unfinished trials of sweep `name` if it exists and can be restored, else None."""
    path = sweep_file(runs_dir, name)
    if not path.is_file():
        return None
    settings = SweepSettings.load(path)
    if not tune.Tuner.can_restore(settings.experiment_path):
        return None
    unfinished = summarize(settings).unfinished
    return unfinished or None
