"""Old module paths, kept importable for what was saved under them before the 0.2 package layout.

Tune pickles a sweep's callbacks, stopper, searcher and trial-naming functions by module path into
the experiment's state (tuner.pkl, searcher-state files). A sweep started under the flat layout
(raytrain.sweep, raytrain.policy, ...) must still `raytrain resume` under this one, so each old path
is an alias module whose names resolve to their new homes on first use: nothing is imported until
asked for. Notebooks that imported `raytrain.analysis` or `raytrain.stats` keep working too.
Installed by raytrain/__init__.py; standard library only.

How long: until 0.3. docs/moved-modules.md says how to finish an older sweep before upgrading.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# old module -> its new home, for modules that moved whole
MOVED_MODULES = {
    "raytrain.analysis": "raytrain.results.analysis",
    "raytrain.checkpoints": "raytrain.training.checkpoints",
    "raytrain.jobs": "raytrain.sweeps.jobs",
    "raytrain.leaderboard": "raytrain.results.leaderboard",
    "raytrain.loop": "raytrain.training.loop",
    "raytrain.losses": "raytrain.training.losses",
    "raytrain.metrics": "raytrain.training.metrics",
    "raytrain.model_names": "raytrain.config.model_names",
    "raytrain.models": "raytrain.training.models",
    "raytrain.numerics": "raytrain.training.numerics",
    "raytrain.optim": "raytrain.training.optim",
    "raytrain.plan": "raytrain.sweeps.plan",
    "raytrain.predict": "raytrain.training.predict",
    "raytrain.progress": "raytrain.sweeps.progress",
    "raytrain.results_index": "raytrain.results.index",
    "raytrain.search": "raytrain.config.search_space",
    "raytrain.searchers": "raytrain.sweeps.searchers",
    "raytrain.stats": "raytrain.results.stats",
    "raytrain.storage": "raytrain.sweeps.storage",
    "raytrain.tables": "raytrain.results.tables",
    "raytrain.train": "raytrain.training.trainable",
    "raytrain.data.augment": "raytrain.training.augment",
}

# old module -> {name: "new.module:name"}, for modules split in two or more
SPLIT_MODULES = {
    "raytrain.sweep": {
        # the old publisher also printed the epoch lines, which are a callback of their own now
        "RunsPublisher": "raytrain.sweeps.publisher:RunsPublisherWithEpochLines",
        "LostCheckpointRepair": "raytrain.sweeps.repair:LostCheckpointRepair",
        "raytrain_trial": "raytrain.sweeps.driver:raytrain_trial",
        "trial_resources": "raytrain.sweeps.driver:trial_resources",
        "trial_name": "raytrain.sweeps.driver:trial_name",
        "trial_dirname": "raytrain.sweeps.driver:trial_dirname",
    },
    "raytrain.policy": {
        "PatienceStopper": "raytrain.sweeps.policy:PatienceStopper",
        "CheckpointCadence": "raytrain.training.checkpoints:CheckpointCadence",
        "EXPERIMENT_KEY": "raytrain.naming:EXPERIMENT_KEY",
        "METRIC": "raytrain.naming:METRIC",
        "MODE": "raytrain.naming:MODE",
    },
}


def _resolver(old: str):
    """The module-level __getattr__ (PEP 562) of old module `old`."""

    def resolve(name: str):
        if old in MOVED_MODULES:
            return getattr(importlib.import_module(MOVED_MODULES[old]), name)
        target = SPLIT_MODULES[old].get(name)
        if target is None:
            raise AttributeError(f"{old} moved in raytrain 0.2 and has no {name!r} any more; see ARCHITECTURE.md")
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    return resolve


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths only: placed after every other finder, it never hides a real module."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES or fullname in SPLIT_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name, f"moved in raytrain 0.2: see {__name__}")
        module.__getattr__ = _resolver(spec.name)
        return module

    def exec_module(self, module):
        pass  # nothing to run: every name resolves on first use


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
