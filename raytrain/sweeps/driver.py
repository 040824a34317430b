"""The sweep's driver: connect to Ray, settle each trial's resources, build the one Tuner that runs
every trial of the sweep (or restore it after a crash) and run it to the end or to Ctrl+C/SIGTERM.
A sweep is expanded experiments (one grid over whole configs) or one adaptive search (searchers.py).
Imports ray, never torch: the trainable imports the training code inside the trial process.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import ray
from ray import tune

from raytrain import artifacts, trace
from raytrain.config import DataConfig, ExperimentConfig, resolved_dict
from raytrain.config.schema import DATASET_KEYS, POPULATION_ALGORITHMS, POPULATION_FIELDS
from raytrain.config.search_space import search_seed
from raytrain.data import load_dataset
from raytrain.data.duplicates import drop_cross_split_duplicates
from raytrain.data.fingerprint import data_provenance
from raytrain.naming import EXPERIMENT_KEY, METRIC, MODE, first_line
from raytrain.provenance import code_state
from raytrain.sweeps import storage as tune_storage
from raytrain.sweeps.failures import fail_user_errors_at_once
from raytrain.sweeps.outcome import SweepOutcome, summarize
from raytrain.sweeps.plan import SweepPlan
from raytrain.sweeps.policy import PatienceStopper, checkpoint_config, scheduler_decision_epochs
from raytrain.sweeps.progress import EpochLines, StatusLineOutput, SweepProgress
from raytrain.sweeps.publisher import RunsPublisher, SweepProvenance, publish_unpublished, register_provenance
from raytrain.sweeps.repair import LostCheckpointRepair
from raytrain.sweeps.settings import SweepError, SweepSettings, register_running, unwritable
from raytrain.sweeps.trial_logs import ProgressCsvLog, ResultJsonLog
from raytrain.trackers import tracker_callbacks

MAX_FAILURES = 2  # retries of a failing trial (from its last checkpoint) before it is marked failed
# "0" starts a new trial process (which imports torch, ~2 s on 2 cores) for every trial and every
# PBT exploit instead of handing the finished trial's process to the next one; for benchmarks and
# for telling a reuse problem from another (docs/ray-notes.md)
REUSE_PROCESSES_ENV = "RAYTRAIN_REUSE_TRIAL_PROCESSES"


def start_sweep(
    plan: SweepPlan,
    *,
    name: str,
    data_root: Path,
    runs_dir: Path,
    storage: str | None = None,
    address: str | None = None,
    max_concurrent: int | None = None,
    tracking: dict | None = None,
    verbose: bool = False,
) -> SweepSettings:
    """Connect to Ray and settle each trial's resources: the settings `run_sweep` executes (and
    saves for `resume`) as sweep `name` (settings.unused_sweep_name). One Tuner has one scheduler:
    ASHA when any planned config asks for it."""
    _refuse_a_limit_on_a_population(plan, max_concurrent)
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
    settings = SweepSettings(
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
        force=plan.force,
    )
    return settings


def _refuse_a_limit_on_a_population(plan: SweepPlan, max_concurrent: int | None) -> None:
    search = next((t.config.search for t in plan.to_run if t.adaptive), None)
    if max_concurrent is not None and search is not None and search.algorithm in POPULATION_ALGORITHMS:
        # Tune's grid generator limits the trials it has made, not those running (docs/ray-notes.md)
        raise SweepError(
            f"--max-concurrent {max_concurrent}: does not mix with search.algorithm {search.algorithm}: Tune would "
            "make the members in turns instead of training them together; fewer members train at once with more "
            "--cpus-per-trial (or --gpus-per-trial), the others take turns at the perturbation epochs"
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
    settings = {
        "algorithm": search.algorithm,
        "num_samples": search.trials,
        "max_concurrent": min(limits, default=None),
        "seed": search_seed(config),
        "space": search.space,
    }
    if search.algorithm in POPULATION_ALGORITHMS:
        settings |= search.model_dump(mode="json", include=set(POPULATION_FIELDS))
    return settings


def run_sweep(settings: SweepSettings, *, restore: bool = False, verbose: bool = False) -> SweepOutcome:
    """Run (or restore) the sweep's Tuner to the end or to Ctrl+C / SIGTERM. Trials are published to
    runs/ by the callback as each one finishes, so an interrupted sweep loses no finished trial.
    `verbose`: Ray's own output too (Tune's tables, worker logs), not only raytrain's lines."""
    register_running(settings)  # where the callbacks publish, whatever a restored pickle says
    _connect(settings.address, verbose=verbose)
    _quiet_ray_internals(quiet=not verbose)
    fail_user_errors_at_once()
    _require_resources_fit(settings.experiments)
    datasets, records = _load_datasets(settings)
    # once per run of the sweep, here where it is typed: the working directory's checkout (provenance.py)
    register_provenance(settings.name, SweepProvenance(code_state(), lambda e: records.get(dataset_key(e))))
    trace.mark("dataset_loaded")
    # object refs die with the driver: a restore rebuilds the wrapper and re-puts the data (docs/ray-notes.md)
    # a trial saves by time (other.checkpoint_minutes), and also wherever the scheduler may stop it
    decision_epochs = scheduler_decision_epochs(
        settings.scheduler, max(e["training"]["epochs"] for e in settings.experiments)
    )
    trainable = tune.with_resources(
        tune.with_parameters(raytrain_trial, datasets=datasets, decision_epochs=decision_epochs), trial_resources
    )
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
    try:
        # Tune unpickles tuner.pkl here: the one file under the storage that must be trusted (docs/trust.md)
        return tune.Tuner.restore(
            settings.experiment_path, trainable, resume_unfinished=True, resume_errored=True, param_space=param_space
        )
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as err:
        raise SweepError(
            f"{tune_storage.join(settings.experiment_path, 'tuner.pkl')}: sweep {settings.name}'s Tune state cannot "
            f"be read ({first_line(err, 200, typed=True)}), so it cannot be resumed. {rerun}"
        ) from None


def _param_space(settings: SweepSettings) -> dict:
    if _population(settings):
        from raytrain.sweeps.population import population_param_space

        return population_param_space(settings.experiments[0], settings.search)
    if settings.search:
        from raytrain.sweeps.searchers import adaptive_param_space

        return adaptive_param_space(settings.experiments[0], settings.search["space"])
    return {EXPERIMENT_KEY: tune.grid_search(settings.experiments)}


def _search_alg(settings: SweepSettings):
    """The searcher of an adaptive search; None for expanded experiments (Tune's grid generator).
    Tuner.restore unpickles it and reloads its state from the experiment folder."""
    if not settings.search or _population(settings):
        return None  # a population's members are its param_space, drawn up front
    from raytrain.sweeps.searchers import build_searcher

    return build_searcher(settings.search, settings.experiments[0]["name"])


def _population(settings: SweepSettings) -> bool:
    """A population based training search (pbt, pb2): members trained together, one scheduler."""
    return bool(settings.search) and settings.search["algorithm"] in POPULATION_ALGORITHMS


def _new_tuner(settings: SweepSettings, trainable, param_space: dict, *, verbose: bool) -> tune.Tuner:
    scheduler, checkpoints, search_alg = None, checkpoint_config(), _search_alg(settings)
    if _population(settings):
        from raytrain.sweeps.population import (
            PopulationMembers,
            build_population_scheduler,
            population_checkpoint_config,
        )

        scheduler, checkpoints = build_population_scheduler(settings.search), population_checkpoint_config()
        search_alg = PopulationMembers(scheduler)  # pickled with it in tuner.pkl: restored together
    elif settings.scheduler:
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
            search_alg=search_alg,
            # a population is a grid of its members: one sample of it
            num_samples=settings.search["num_samples"] if settings.search and not _population(settings) else 1,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            # a finished trial's process (torch imported, the dataset mapped) runs the next trial of
            # the same resources; the trainable resets what a trial owns (training/reuse.py)
            reuse_actors=os.environ.get(REUSE_PROCESSES_ENV, "1") != "0",
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=settings.storage,
            stop=PatienceStopper(),
            checkpoint_config=checkpoints,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            # the trackers after the publisher: they read a finished trial from runs/. The callbacks
            # are saved with the Tune experiment, so `resume` continues the same trackers
            callbacks=[
                # Tune's own result.json and progress.csv loggers, but without losing results
                # when a trial restarts (PBT restarts its members all the time)
                ResultJsonLog(),
                ProgressCsvLog(),
                EpochLines(),
                RunsPublisher(settings.name),
                LostCheckpointRepair(),
                *tracker_callbacks(settings.name, settings.tracking),
                SweepProgress(
                    len(settings.planned_names()),
                    settings.experiments[0]["training"]["epochs"],
                    settings.max_concurrent or (settings.search or {}).get("max_concurrent"),
                ),
            ],
            # EpochLines prints a line per epoch and SweepProgress the status, instead of Tune's tables
            verbose=1 if verbose else 0,
        ),
    )


def raytrain_trial(config: dict, datasets: dict, decision_epochs: tuple[int, ...] = ()) -> None:
    """The sweep's trainable: the shared train function on the dataset its config asks for."""
    trace.mark("trial_starts")
    from raytrain.training.trainable import train_experiment  # here: torch is loaded in the trial, not the driver

    trace.mark("torch_imported")
    train_experiment(config, datasets[dataset_key(config[EXPERIMENT_KEY])], decision_epochs=decision_epochs)


def trial_resources(config: dict) -> dict:
    resources = config[EXPERIMENT_KEY]["resources"]
    return {"cpu": resources["cpu"], "gpu": resources["gpu"]}


def trial_name(trial) -> str:
    return trial.config[EXPERIMENT_KEY]["name"]


def trial_dirname(trial) -> str:
    # short, unique and one folder deep: long names hit path limits (docs/ray-notes.md), and a repeat's
    # "baseline/seed-2" would nest
    return f"{trial.config[EXPERIMENT_KEY]['name'][:60].replace('/', '__')}_{trial.trial_id}"


def dataset_data(experiment: dict) -> dict:
    """The experiment's data section with every default filled in: a sweep saved before a data key
    existed (labels, class_names) resumes with that key's default."""
    return DataConfig(**experiment["data"]).model_dump()


def dataset_key(experiment: dict) -> str:
    """Trials share a decoded dataset when they decode, label, split and filter it alike
    (config.DATASET_KEYS)."""
    data = dataset_data(experiment)
    return repr([data[dotted.split(".", 1)[1]] for dotted in DATASET_KEYS])


def _load_datasets(settings: SweepSettings) -> tuple[dict, dict]:
    """Each dataset the trials need, by dataset_key, and the data part of its provenance.json. The
    duplicates data.drop_cross_split_duplicates leaves out are found here, once for every trial that
    asks (configs that do not ask get the data whole), and the note says how many."""
    decoded, datasets, records = {}, {}, {}
    for key, data in {dataset_key(e): dataset_data(e) for e in settings.experiments}.items():
        how = (data["channels"], data["val_fraction"], data["labels"], repr(data["class_names"]))
        if how not in decoded:
            decoded[how] = load_dataset(
                settings.data_root,
                channels=data["channels"],
                val_fraction=data["val_fraction"],
                labels=data["labels"],
                class_names=data["class_names"],
                workers=max(x["other"]["workers"] for x in settings.experiments),
            )
        dataset, dropped = decoded[how], None
        if data["drop_cross_split_duplicates"]:
            dataset, dropped = drop_cross_split_duplicates(dataset)
            print(f"note: {dataset.notes[-1]}", flush=True)
        datasets[key], records[key] = dataset, data_provenance(dataset, dropped)
    return datasets, records


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
            # ...and reachable from this machine only. Given a node IP of 127.0.0.1, Ray binds the GCS,
            # raylet, workers and agents to loopback, but ray.init swaps 127.0.0.1 for the routable IP
            # unless Ray's own "no clusters on this OS" switch is off (docs/ray-notes.md)
            ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
            ray.init(include_dashboard=False, log_to_driver=verbose, configure_logging=False)
            trace.mark("ray_init_done")
            return
        if address != "auto" and Path.home().joinpath(".ray/auth_token").is_file():
            # Ray 2.60 turns token auth on by default, but a client given an explicit address does not
            # send its token unless told to (docs/ray-notes.md); without it the connection fails after ~20 s
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        ray.init(address=address, log_to_driver=verbose, configure_logging=False)


def _quiet_ray_internals(*, quiet: bool) -> None:
    """Without --verbose the console is raytrain's: a failed trial is one `FAILED` line naming its
    error.txt, which holds the traceback. Ray's own reports of the same failure are left out: Tune's
    "Trial task failed" traceback (an environment switch read when fit() starts), its closing "Trials
    did not complete" line, and the errors the cluster pushes to every driver (a node lost, with the
    raylet's state dump), which Ray prints however log_to_driver is set (docs/ray-notes.md).
    Set both ways, so a later sweep in the same process (a notebook, the tests) gets what it asks."""
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0" if quiet else "1"
    tune_logger = logging.getLogger("ray.tune.tune")
    tune_logger.removeFilter(_drop_incomplete_trials_line)
    if quiet:
        tune_logger.addFilter(_drop_incomplete_trials_line)
    ray._private.worker._worker_logs_enabled = not quiet


def _drop_incomplete_trials_line(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


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
            "use --gpus-per-trial 0 (or resources.gpu: 0) to train on the CPU, or connect to a cluster with GPUs "
            "(--address)"
        )
    data["resources"] = {"cpu": config.resources.cpu, "gpu": gpu}
    return data


def _require_resources_fit(experiments: list[dict]) -> None:
    """Each trial's CPUs and GPUs on one node of the cluster, or one error naming the trials that do
    not fit: Tune would keep such a trial PENDING forever (a trial's resources are one placement-group
    bundle, so they must fit on a single node). Checked on `resume` too: the cluster may have changed."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    largest = {kind: max((node.get(kind, 0) for node in nodes), default=0) for kind in ("CPU", "GPU")}
    problems = []
    for experiment in experiments:
        for key, kind, flag in (("cpu", "CPU", "--cpus-per-trial"), ("gpu", "GPU", "--gpus-per-trial")):
            asked = experiment["resources"][key]
            if asked > largest[kind]:
                problems.append(
                    f"{experiment['name']}: resources.{key}: asks for {asked:g} {kind} per trial, but the largest node "
                    f"of the Ray cluster has {largest[kind]:g}; lower it ({flag} or resources.{key}), or connect to a "
                    "cluster with larger nodes (--address)"
                )
    if problems:
        raise SweepError(problems[0] if len(problems) == 1 else "\n".join(problems))


@contextmanager
def _sigterm_like_ctrl_c():
    """While the Tuner runs, SIGTERM (what `ray job stop` and Kubernetes send) acts as Ctrl+C: Tune
    saves its state on SIGINT and fit() returns normally; on SIGTERM up to ~10 s would be lost."""
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
