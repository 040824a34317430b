"""Adaptive search through Ray Tune: a config's search space -> Tune domains, and the searcher that
proposes each trial (Optuna's TPE), names it `<search>/tNNN` and limits how many run at once.

The Ray side of config/search_space.py (which expands grid_random spaces up front and imports no Ray). Only the
sweep driver imports this module.
"""

from __future__ import annotations

import copy

import optuna
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from raytrain.naming import EXPERIMENT_KEY, adaptive_trial_name

# Optuna logs a line per study and trial; raytrain prints its own line per trial. Set here, on import,
# because a restored search unpickles its searcher without calling build_searcher.
optuna.logging.set_verbosity(optuna.logging.WARNING)

# The searcher scores a trial by its best val macro F1 so far, not by its last epoch's: that is the
# number raytrain publishes, and a trial ASHA stops is scored by what it had reached.
SEARCH_METRIC, SEARCH_MODE = "best/val/macro_f1", "max"


def adaptive_param_space(experiment: dict, space: dict) -> dict:
    """The Tuner's param_space: the resolved config with each searched key replaced by its Tune
    domain, where the trainable reads it; the searcher fills in the values, so a trial's config is
    a whole resolved config like any other trial's."""
    data = copy.deepcopy(experiment)
    for dotted, spec in space.items():
        section, key = dotted.split(".", 1)
        data[section][key] = tune_domain(spec)
    return {EXPERIMENT_KEY: data}


def tune_domain(spec: dict):
    """{loguniform: [1e-4, 1e-2]} -> tune.loguniform(1e-4, 1e-2); config/loading.py checked the values."""
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return tune.choice(list(values))
    low, high = (float(v) for v in values)  # YAML reads 1e-4 (no dot) as a string
    if kind == "uniform":
        return tune.uniform(low, high)
    if kind == "loguniform":
        return tune.loguniform(low, high)
    if kind == "randint":
        return tune.randint(int(low), int(high))  # high excluded, as in grid_random
    raise ValueError(f"{kind!r} cannot be searched adaptively")


def startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results. Optuna's default, 10, would leave a 12-trial
    budget nearly all random; a third of the budget (2 to 10) gives TPE most of a small one."""
    return min(10, max(2, num_samples // 3))


def build_searcher(search: dict, search_name: str) -> Searcher:
    """TPE seeded by search.seed (the same command proposes the same first points), at most
    search.max_concurrent proposals in flight, each trial named by its place in the order."""
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(seed=search["seed"], n_startup_trials=startup_trials(search["num_samples"]))
    searcher: Searcher = OptunaSearch(metric=SEARCH_METRIC, mode=SEARCH_MODE, sampler=sampler)
    if search.get("max_concurrent"):
        searcher = ConcurrencyLimiter(searcher, max_concurrent=search["max_concurrent"])
    return NumberedTrials(searcher, search_name)


class NumberedTrials(Searcher):
    """Names each proposed trial `<search>/t001`, `/t002`, ... in the order proposed, inside the
    trial's config, so the name is in params.json and the trial keeps it across a restore.

    A wrapper with a `searcher` attribute and get_state/set_state, like ConcurrencyLimiter: Tune
    saves its counter with the searcher state in the experiment folder and restores it, so a
    resumed search goes on numbering where it stopped."""

    def __init__(self, searcher: Searcher, search_name: str):
        self.searcher = searcher
        self.search_name = search_name
        self.proposed = 0
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        config = self.searcher.suggest(trial_id)
        if not isinstance(config, dict):
            return config  # None: wait for a result; Searcher.FINISHED: nothing more to propose
        self.proposed += 1
        config.setdefault(EXPERIMENT_KEY, {})["name"] = adaptive_trial_name(self.search_name, self.proposed)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        return {"search_name": self.search_name, "proposed": self.proposed}

    def set_state(self, state: dict) -> None:
        self.search_name, self.proposed = state["search_name"], state["proposed"]
