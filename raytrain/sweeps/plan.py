"""The sweep plan: configs -> expanded experiments -> what runs/ already holds, and the plan table
the CLI shows before asking. No Ray, no torch: planning is instant, so `--dry-run` and the table
never wait for a cluster; driver.py runs the plan. Also the sweep's default name, stable for the
same set of trials.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from raytrain import artifacts
from raytrain.config import (
    ConfigError,
    ExperimentConfig,
    config_hash,
    differences,
    find_configs,
    load_config,
    published_config_hash,
)
from raytrain.config.schema import POPULATION_ALGORITHMS, POPULATION_FIELDS
from raytrain.config.search_space import expand, is_adaptive
from raytrain.naming import adaptive_trial_name, name_problem
from raytrain.results.tables import render, short_value

DEFAULT_CONFIGS = Path("configs")
# At this input size and below one trial (resnet18 at 48 px, FER's own size) leaves most of an
# H100/H200 idle, so a whole GPU per trial (resources.gpu unset) wastes it. Until a GPU measurement
# (tests/bench/gpu_check.sh) settles a better default, the plan says so rather than packing trials.
SMALL_IMAGE_PX = 64
SUGGESTED_GPU_SHARE = 0.25


@dataclass
class PlannedTrial:
    config: ExperimentConfig
    source: Path
    # "new", "done" (in runs/, same config hash), "changed" (in runs/, another hash) or "damaged" (in
    # runs/ but missing a file or holding an unreadable one: planned again, which repairs it)
    status: str
    changes: dict = field(default_factory=dict)  # dotted key -> (baseline value, this value)
    scheduler: dict | None = None  # the source config's search.scheduler when it asks for ASHA

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def adaptive(self) -> bool:
        """A whole adaptive search: up to search.num_samples trials, proposed while it runs (or a
        population of search.population members, trained together)."""
        return is_adaptive(self.config)

    @property
    def experiment_names(self) -> list[str]:
        """The runs/ folders it may publish: its own, or an adaptive search's whole budget."""
        if self.adaptive:
            return [adaptive_trial_name(self.name, n) for n in range(1, self.config.search.trials + 1)]
        return [self.name]


@dataclass
class SweepPlan:
    name: str
    trials: list[PlannedTrial]
    force: bool

    @property
    def to_run(self) -> list[PlannedTrial]:
        return [t for t in self.trials if self.force or t.status in ("new", "damaged")]


def plan_sweep(
    paths: list[str | Path],
    *,
    runs_dir: Path,
    overrides: list[str] = (),
    filter_prefix: str | None = None,
    force: bool = False,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    name: str | None = None,
) -> SweepPlan:
    """Load and expand every config (all problems at once), mark what runs/ already holds."""
    if name is not None and (problem := name_problem(name)):
        raise ConfigError([f"--name: {problem}"])
    files = find_configs(paths or [DEFAULT_CONFIGS])
    if not files:
        raise ConfigError([f"{', '.join(map(str, paths or [DEFAULT_CONFIGS]))}: no .yaml configs found"])
    problems, loaded = [], []
    for path in files:
        try:
            loaded.append((path, load_config(path, overrides)))
        except ConfigError as err:
            problems += err.problems
    if problems:
        raise ConfigError(problems)
    baseline = next((c for _, c in loaded if c.name == "baseline"), ExperimentConfig())
    trials: list[PlannedTrial] = []
    for path, config in loaded:
        # expanded experiments carry no search section: keep the scheduler their config asked for
        asha = (
            config.search.scheduler.model_dump() if config.search and config.search.scheduler.type == "asha" else None
        )
        for experiment in expand(config):
            if filter_prefix and not experiment.name.startswith(filter_prefix):
                continue
            if cpus_per_trial is not None:
                experiment.resources.cpu = cpus_per_trial
            if gpus_per_trial is not None:
                experiment.resources.gpu = gpus_per_trial
            trials.append(
                PlannedTrial(experiment, path, _status(runs_dir, experiment), differences(experiment, baseline), asha)
            )
    problems += _mixing_problems(trials)
    seen: dict[str, Path] = {}
    for trial in trials:
        if trial.name in seen:
            problems.append(
                f"{trial.source}: name: {trial.name!r} is also the name of an experiment in {seen[trial.name]}; "
                "names must be unique"
            )
        seen[trial.name] = trial.source
    if problems:
        raise ConfigError(problems)
    if not trials:
        raise ConfigError([f"--filter {filter_prefix}: no experiment name starts with {filter_prefix!r}"])
    return SweepPlan(name or _default_name(trials), trials, force)


def _mixing_problems(trials: list[PlannedTrial]) -> list[str]:
    """An adaptive search runs in a Tuner of its own (one searcher proposes every trial of it), so a
    sweep holds either one adaptive search or expanded experiments, never both."""
    searches = [t for t in trials if t.adaptive]
    if not searches or len(trials) == 1:
        return []
    others = ", ".join(sorted({str(t.source) for t in trials if t is not searches[0]}))
    return [
        f"{searches[0].source}: search.algorithm: {searches[0].config.search.algorithm} runs as a sweep of its own, "
        f"but this sweep also plans {others}; sweep {searches[0].source} alone and the others in another sweep"
    ]


def _status(runs_dir: Path, config: ExperimentConfig) -> str:
    if is_adaptive(config):
        return _search_status(runs_dir, config)
    if not artifacts.has_artifacts(artifacts.experiment_dir(runs_dir, config.name)):
        return "new"
    try:
        artifacts.read_experiment(runs_dir, config.name)
    except artifacts.DamagedExperiment as damage:
        artifacts.warn_damaged(damage.message)
        return "damaged"
    return "done" if published_config_hash(runs_dir, config.name) == config_hash(config) else "changed"


def _search_status(runs_dir: Path, config: ExperimentConfig) -> str:
    """A search is done once runs/ holds its whole budget of trials. A part-finished one is `new`:
    re-running the command resumes it when its Tune experiment can be restored."""
    budget = config.search.trials
    finished = sum(artifacts.is_complete(runs_dir, adaptive_trial_name(config.name, n)) for n in range(1, budget + 1))
    return "done" if finished == budget else "new"


def _default_name(trials: list[PlannedTrial]) -> str:
    # the same command plans the same trials and gets the same name, so re-running it finds the
    # interrupted sweep and offers to resume it
    digest = hashlib.sha256(json.dumps(sorted(_identity(t) for t in trials)).encode()).hexdigest()[:8]
    return f"sweep-{digest}"


def _identity(trial: PlannedTrial) -> list:
    # the resources too, though the config hash leaves them out (they do not change a result): a sweep
    # that asked for more than the cluster has is not the one the corrected command should resume
    identity = [
        trial.name,
        config_hash(trial.config),
        json.dumps(trial.config.resources.model_dump(mode="json"), sort_keys=True),
    ]
    # an adaptive search is also its budget, space and seed: a bigger budget is another sweep
    if trial.adaptive:
        search = trial.config.search
        # without the population fields, which other algorithms ignore: an optuna search keeps the
        # name it had before they existed, so re-running its command still finds it to resume
        ignored = set() if search.algorithm in POPULATION_ALGORITHMS else set(POPULATION_FIELDS)
        identity.append(json.dumps(search.model_dump(mode="json", exclude=ignored), sort_keys=True))
    return identity


STATUS_TEXT = {
    "new": "to run",
    "done": "done (skipped)",
    "changed": "done, config changed (skipped)",
    "damaged": "damaged (to run again, which repairs it)",
}


def _search_text(search) -> str:
    if search.algorithm in POPULATION_ALGORITHMS:
        return (
            f"a population of {search.trials} trained together by {search.algorithm}, the weaker copying the "
            f"stronger every {search.perturbation_interval} epochs"
        )
    return f"up to {search.trials} trials, proposed by {search.algorithm}"


def plan_table(plan: SweepPlan) -> str:
    table = Table(title=f"sweep {plan.name}: {len(plan.to_run)} of {len(plan.trials)} to run", title_justify="left")
    for column in ("experiment", "status", "differs from baseline", "per trial"):
        table.add_column(column, overflow="fold")
    for trial in plan.trials:
        status = (
            "to run (--force)" if plan.force and trial.status not in ("new", "damaged") else STATUS_TEXT[trial.status]
        )
        changes = ", ".join(
            f"{key}={short_value(new)}"
            for key, (_, new) in trial.changes.items()
            if not key.startswith(("resources.", "search."))
        )
        name = trial.name
        if trial.adaptive:
            search = trial.config.search
            first, last = (adaptive_trial_name(trial.name, n) for n in (1, search.trials))
            name = f"{first}..{last.rpartition('/')[2]}"  # lr_search/t001..t024
            status = f"{status}: {_search_text(search)}"
            fixed = [
                f"{key}={short_value(new)}"
                for key, (_, new) in trial.changes.items()
                if not key.startswith(("resources.", "search.")) and key not in search.space
            ]
            changes = ", ".join([f"searches {', '.join(search.space)}", *fixed])
        resources = trial.config.resources
        gpu = "auto" if resources.gpu is None else f"{resources.gpu:g}"
        table.add_row(name, status, changes or "-", f"{resources.cpu:g} CPU, {gpu} GPU")
    return render(table)


def local_gpu_count() -> int:
    """The NVIDIA GPUs a local Ray would find here, without importing torch: the driver's entries in
    /proc/driver/nvidia/gpus, no more than CUDA_VISIBLE_DEVICES names when it is set (as Ray counts)."""
    try:
        found = len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    return min(found, len([device for device in visible.split(",") if device.strip()]))


def whole_gpu_note(plan: SweepPlan, gpus_here: int) -> str | None:
    """Where the sweep's machine has GPUs: a note for the trials that will each take a whole one
    (resources.gpu unset) at an input so small that they leave it mostly idle, or None."""
    small = [
        t.config.data.img_size
        for t in plan.to_run
        if t.config.resources.gpu is None and t.config.data.img_size <= SMALL_IMAGE_PX
    ]
    if not gpus_here or not small:
        return None
    packed = round(1 / SUGGESTED_GPU_SHARE)
    return (
        f"note: {len(small)} trial(s) at data.img_size {max(small)} px or less take a whole GPU each "
        f"(resources.gpu unset), which so small an input leaves mostly idle; --gpus-per-trial "
        f"{SUGGESTED_GPU_SHARE:g} runs {packed} trials on each GPU"
    )
