"""Search spaces -> concrete trials: each config with a `search` section becomes one experiment per
point, named after the values that differ.

Expansion happens up front in the driver (grids crossed with num_samples seeded random draws), so
every trial has its experiment name, config and hash before anything runs: skip-if-done, the plan
table and resume all work on names. An adaptive search (algorithm: optuna) is not expanded: its
trials are proposed while it runs and named `<name>/t001`, `<name>/t002`, ... in the order proposed
(searchers.py turns its space into Tune domains). A population (pbt, pb2) is drawn up front, one
member per trial, and its knobs perturbed while it runs (perturb). No ray, no torch.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np

from raytrain.config import ExperimentConfig, validate_config
from raytrain.naming import adaptive_trial_name, repeat_name

GRID_KINDS = ("grid",)


SEED_KEY = "other.seed"


def is_adaptive(config: ExperimentConfig) -> bool:
    """Whether a searcher proposes this config's trials as it runs (not expanded up front)."""
    return config.search is not None and config.search.algorithm != "grid_random"


def search_seed(config: ExperimentConfig) -> int:
    """search.seed, or one derived from the config's name: the same command draws the same points."""
    if config.search is not None and config.search.seed is not None:
        return config.search.seed
    return int(hashlib.sha256(config.name.encode()).hexdigest()[:8], 16)


def expand(config: ExperimentConfig) -> list[ExperimentConfig]:
    """The experiments a config stands for: itself, or one per point of its search space, each
    repeated once per seed when other.seed is a list or a searched grid (`<name>/seed-<seed>`).
    An adaptive search stands for itself: its trials do not exist until the searcher proposes them."""
    if is_adaptive(config):
        return [config]
    space = dict(config.search.space) if config.search else {}
    seeds = config.other.seed if isinstance(config.other.seed, list) else None
    if SEED_KEY in space and next(iter(space[SEED_KEY])) in GRID_KINDS:
        seeds = list(space.pop(SEED_KEY)["grid"])  # a seed grid is repeats, not a hyperparameter
    points = _search_points(search_seed(config), space, config.search.num_samples if config.search else 1)
    base = config.model_dump(mode="json", exclude={"search"})
    experiments = []
    for name, point in zip(_point_names(config.name, points), points):
        for seed in seeds or [None]:
            data = _with_values(base, point) | {"name": name}
            if seed is not None:
                data = _with_values(data, {SEED_KEY: seed}) | {"name": repeat_name(name, seed)}
            experiments.append(validate_config(data, source=f"{config.name} search point {data['name']}"))
    return experiments


def _search_points(seed: int, space: dict, num_samples: int) -> list[dict]:
    """Grid points crossed with num_samples seeded random draws; [{}] when nothing is searched."""
    if not space:
        return [{}]
    grid_keys = [k for k, spec in space.items() if next(iter(spec)) in GRID_KINDS]
    random_keys = [k for k in space if k not in grid_keys]
    # seeded (by default from the config's name): the same command draws the same points, so a
    # re-run finds them
    rng = np.random.default_rng(seed)
    samples = [{k: _draw(space[k], rng) for k in random_keys} for _ in range(num_samples)]
    if not random_keys:
        samples = samples[:1] * num_samples  # grid only: num_samples repeats the grid
    return [
        dict(zip(grid_keys, grid_values)) | sample
        for sample in samples
        for grid_values in itertools.product(*(space[k]["grid"] for k in grid_keys))
    ]


def _draw(spec: dict, rng: np.random.Generator):
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return values[int(rng.integers(len(values)))]
    low, high = (float(v) for v in values)
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "randint":
        return int(rng.integers(int(low), int(high)))  # high excluded, as in Tune
    raise ValueError(f"unknown search kind {kind!r}")


def _with_values(base: dict, point: dict) -> dict:
    data = {section: dict(values) if isinstance(values, dict) else values for section, values in base.items()}
    for dotted, value in point.items():
        section, key = dotted.split(".", 1)
        data[section][key] = value
    return data


def _point_names(name: str, points: list[dict]) -> list[str]:
    """`lr_search-lr_0.000597`: the config name plus each searched value, short and path-safe."""
    names = []
    for point in points:
        parts = [f"{key.rsplit('.', 1)[-1]}_{_short(value)}" for key, value in point.items()]
        names.append("-".join([name, *parts]))
    repeated = {n for n in names if names.count(n) > 1}  # grid repeats, or draws that round alike
    return [f"{n}-{i:02d}" if n in repeated else n for i, n in enumerate(names)]


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"  # 0.000597, 1e-05: short, path-safe, distinct for real draws
    return str(value).replace("/", "_").replace(" ", "_")


# --- population based training ------------------------------------------------------------------


def population_members(config: ExperimentConfig) -> list[ExperimentConfig]:
    """A pbt/pb2 search's members before they train: `<name>/t001`... each with its own draw from the
    space (seeded by search.seed, so the same command draws the same population) and its own seed,
    other.seed + its number - 1, so members that copy one another still draw different batches."""
    search = config.search
    base = config.model_dump(mode="json", exclude={"search"})
    points = _search_points(search_seed(config), dict(search.space), search.trials)
    members = []
    for number, point in enumerate(points, start=1):
        data = _with_values(base, point) | {"name": adaptive_trial_name(config.name, number)}
        data["other"]["seed"] = config.other.seed + number - 1
        members.append(validate_config(data, source=f"{config.name} member {data['name']}"))
    return members


def perturb(
    values: dict,
    space: dict,
    rng: np.random.Generator,
    *,
    resample_probability: float,
    factors: list[float],
) -> tuple[dict, dict]:
    """PBT's explore step on a copied member's knobs -> (new values, what was done to each).

    A continuous knob (uniform, loguniform, randint) is drawn afresh from its range with
    `resample_probability`, else multiplied by one of `factors`, then kept inside its range (the
    config checked the range's ends, not what a product reaches: dropout 0.9 * 1.2 is not a
    dropout). A categorical one (choice) is drawn afresh with `resample_probability`, else kept:
    its values have no order to step along."""
    new, done = dict(values), {}
    for dotted, spec in space.items():
        kind, bounds = next(iter(spec.items()))
        if rng.random() < resample_probability:
            new[dotted], done[dotted] = _draw(spec, rng), "resampled"
            continue
        if kind == "choice":
            done[dotted] = "kept"
            continue
        factor = float(factors[int(rng.integers(len(factors)))])
        low, high = (float(b) for b in bounds)
        if kind == "randint":
            high -= 1  # Tune's randint excludes high
        value = min(max(values[dotted] * factor, low), high)
        new[dotted] = int(round(value)) if kind == "randint" else value
        done[dotted] = f"x {factor:g}"
    return new, done
