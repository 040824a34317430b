"""Population based training through Ray Tune (search.algorithm: pbt or pb2), in the driver: the
members as the Tuner's param_space, and Tune's PopulationBasedTraining / PB2 with what raytrain
needs of them. Imports ray, never torch.

What the subclasses change, and why:
- explore: pbt perturbs with config/search_space.perturb (a categorical knob is redrawn, never
  multiplied; a product is kept inside the knob's range); pb2 keeps its Gaussian-process bandit.
  Either way the member keeps its own name and seed: Tune's exploit copies the whole config of the
  member copied, and raytrain's names are folders in runs/.
- a member's last epoch is no perturbation point: it ends there, and a member that copied its
  final checkpoint would have nothing left to train.
- resume: Tune saves neither scheduler's state (docs/ray-notes.md). A restored member's state is
  rebuilt from what Tune did save for it, its last result and checkpoint, so the population goes on
  deciding at the same epochs instead of every member counting its interval from zero again (a
  synchronous population goes on asynchronously: on_trial_add says why). And an exploit reaches
  Tune's snapshot at once, not at the member's next result (_exploit).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2
from ray.tune.search import BasicVariantGenerator

from raytrain import lineage, trace
from raytrain.config import validate_config
from raytrain.config.search_space import perturb, population_members
from raytrain.naming import CHECKPOINT_RANK, EXPERIMENT_KEY, METRIC, MODE, REPLAYED
from raytrain.sweeps.searchers import tune_domain

TIME_ATTR = "epoch"  # a member's epoch: monotonic along its line of weights, copied with them

# Tune warns that num_to_keep <= 2 may delete a checkpoint before a member copies it: raytrain keeps
# the two latest perturbation checkpoints of each member for that (population_checkpoint_config)
warnings.filterwarnings("ignore", message="Using `CheckpointConfig.num_to_keep <= 2` with PBT")


def population_param_space(experiment: dict, search: dict) -> dict:
    """The Tuner's param_space: one grid entry per member (named, seeded and drawn up front), and
    beside each one what its trial needs to know of the population."""
    config = validate_config({**experiment, "search": _search_section(search)}, source=experiment["name"])
    members = [m.model_dump(mode="json") for m in population_members(config)]
    for member in members:
        member["resources"] = experiment["resources"]  # already concrete (driver._with_concrete_resources)
    spec = {"knobs": list(search["space"]), "perturbation_interval": search["perturbation_interval"]}
    return {EXPERIMENT_KEY: tune.grid_search(members), lineage.POPULATION_KEY: spec}


def _search_section(search: dict) -> dict:
    keys = ("algorithm", "population", "perturbation_interval", "quantile_fraction", "seed", "space")
    return {key: search[key] for key in keys}


def build_population_scheduler(search: dict):
    """Tune's PopulationBasedTraining (pbt) or PB2 (pb2) for the search's settings."""
    common = dict(
        time_attr=TIME_ATTR,
        metric=METRIC,  # this epoch's val macro F1: the weights a member would copy are this epoch's
        mode=MODE,
        perturbation_interval=search["perturbation_interval"],
        quantile_fraction=search["quantile_fraction"],
        synch=search.get("synchronous", False),
        log_config=False,  # raytrain keeps the lineage in each member's history (raytrain/lineage.py)
    )
    if search["algorithm"] == "pb2":
        return RaytrainPB2(search, hyperparam_bounds=_nested(search["space"], _bounds), **common)
    return RaytrainPBT(
        search,
        hyperparam_mutations=_nested(search["space"], tune_domain),
        resample_probability=search["resample_probability"],
        perturbation_factors=tuple(search["perturbation_factors"]),
        **common,
    )


def _nested(space: dict, make) -> dict:
    """{"training.lr": spec} -> {"experiment": {"training": {"lr": make(spec)}}}: where Tune finds the
    knob in a trial's config."""
    nested: dict = {}
    for dotted, spec in space.items():
        section, key = dotted.split(".", 1)
        nested.setdefault(EXPERIMENT_KEY, {}).setdefault(section, {})[key] = make(spec)
    return nested


def _bounds(spec: dict) -> list[float]:
    _, (low, high) = next(iter(spec.items()))
    return [float(low), float(high)]


class _PopulationScheduler:
    """What raytrain adds to Tune's PopulationBasedTraining and PB2 (mixed in before either)."""

    def __init__(self, search: dict, **kwargs):
        super().__init__(**kwargs)
        self.space = dict(search["space"])
        self.interval = search["perturbation_interval"]

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        last = trial.last_result or {}
        if TIME_ATTR in last and METRIC in last:
            # a member restored by `resume`: where it was, as far as Tune's own record says
            state = self._trial_state[trial]
            epoch = int(last[TIME_ATTR])
            state.last_perturbation_time = self.interval * (epoch // self.interval)
            state.last_train_time = epoch
            state.last_score = self._metric_op * last[METRIC]
            state.last_result = last
            state.last_checkpoint = trial.checkpoint
            # Tune's synchronous PBT decides for all members when the last one reaches the decision
            # epoch; members that Tune recorded at different epochs (a snapshot every few
            # checkpoints) left it waiting for ever. A resumed population decides asynchronously,
            # each member at its own next decision epoch (docs/ray-notes.md)
            self._synch = False

    def on_trial_result(self, tune_controller, trial, result):
        if result.get(REPLAYED) or _is_last_epoch(trial.config[EXPERIMENT_KEY], result):
            return self.CONTINUE  # it ends here: nothing for it to copy, and no one should copy it
        return super().on_trial_result(tune_controller, trial, result)

    def _exploit(self, tune_controller, trial, trial_to_clone):
        super()._exploit(tune_controller, trial, trial_to_clone)
        # Tune snapshots a trial's run metadata from a cached JSON, and the exploit changes the
        # checkpoint inside it without clearing the cache: a driver killed before the member's next
        # result would resume it with its new config on its own old weights (docs/ray-notes.md)
        trial.run_metadata.invalidate_cache()

    def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
        # Tune's decision for one member: be copied, copy another, or neither (tests check the epochs)
        epoch = self._trial_state[trial].last_train_time
        trace.mark("population_decision", trial=trial.config[EXPERIMENT_KEY]["name"], epoch=epoch)
        return super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)

    def _get_new_config(self, trial, trial_to_clone):
        new_config, operations = self._explore(trial, trial_to_clone)
        ours, theirs = trial.config[EXPERIMENT_KEY], trial_to_clone.config[EXPERIMENT_KEY]
        new_config[EXPERIMENT_KEY]["name"] = ours["name"]
        new_config[EXPERIMENT_KEY]["other"]["seed"] = ours["other"]["seed"]
        changed = new_config[EXPERIMENT_KEY]
        changes = ", ".join(
            f"{knob} {_short(lineage.value_of(theirs, knob))} -> {_short(lineage.value_of(changed, knob))}"
            for knob in self.space
        )
        copied, own = self._trial_state[trial_to_clone], self._trial_state[trial]
        # printed before the epoch line of the result that decided it (Tune asks the scheduler first)
        print(
            f"[{ours['name']}] after epoch {(own.last_result or {}).get(TIME_ATTR)} (val macro F1 "
            f"{own.last_score * self._metric_op:.3f}) copies {theirs['name']} as of its epoch "
            f"{(copied.last_result or {}).get(TIME_ATTR)} ({copied.last_score * self._metric_op:.3f}) and goes on "
            f"with {changes}",
            flush=True,
        )
        return new_config, operations


class RaytrainPBT(_PopulationScheduler, PopulationBasedTraining):
    """Tune's PopulationBasedTraining with raytrain's explore (config/search_space.perturb)."""

    def __init__(self, search: dict, **kwargs):
        super().__init__(search, **kwargs)
        self.rng = np.random.default_rng(search["seed"])  # pickled with the Tuner, like the scheduler
        self.resample_probability = search["resample_probability"]
        self.factors = list(search["perturbation_factors"])

    def _explore(self, trial, trial_to_clone):
        new_config = copy.deepcopy(trial_to_clone.config)
        experiment = new_config[EXPERIMENT_KEY]
        values = {knob: lineage.value_of(experiment, knob) for knob in self.space}
        perturbed, operations = perturb(
            values, self.space, self.rng, resample_probability=self.resample_probability, factors=self.factors
        )
        for knob, value in perturbed.items():
            section, key = knob.split(".", 1)
            experiment[section][key] = value
        return new_config, operations


class RaytrainPB2(_PopulationScheduler, PB2):
    """Tune's PB2: a Gaussian-process bandit over the knobs' bounds picks the copied member's new values."""

    def _explore(self, trial, trial_to_clone):
        new_config, operations = PB2._get_new_config(self, trial, trial_to_clone)
        experiment = new_config[EXPERIMENT_KEY]
        for knob, spec in self.space.items():  # the bandit proposes floats
            section, key = knob.split(".", 1)
            if next(iter(spec)) == "randint":
                experiment[section][key] = int(round(experiment[section][key]))
        return new_config, operations


def _is_last_epoch(experiment: dict, result: dict) -> bool:
    """The trainable's own end (policy.stopped_by_scheduler's other side): its last epoch, or patience."""
    epoch = result.get(TIME_ATTR)
    return epoch is not None and (
        epoch >= experiment["training"]["epochs"]
        or result.get("epochs_since_best", 0) >= experiment["other"]["patience"]
    )


def _short(value) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.3g}"
    return str(value)


class PopulationMembers(BasicVariantGenerator):
    """Tune's own grid generator for the members, but not "finished" while a member is alive.

    Tune hands a stopped trial's process to another trial (reuse_actors) only while its search
    algorithm is not finished or a trial waits for a process (TuneController._maybe_cache_trial_actor).
    A grid is finished as soon as it has made its trials, so a member that PBT pauses to copy
    another, or to let a waiting one train, would lose its process and start a new one (torch
    imported again). Liveness is read from the scheduler's own record of the members."""

    def __init__(self, scheduler: _PopulationScheduler):
        super().__init__()
        self._scheduler = scheduler

    def is_finished(self) -> bool:
        if not super().is_finished():
            return False
        live = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED)
        return not any(trial.status in live for trial in self._scheduler._trial_state)

    def get_state(self) -> dict:
        # saved with each experiment snapshot: the scheduler (and its trials) are not the generator's
        state = super().get_state()
        if isinstance(state, dict):
            state.pop("_scheduler", None)
        return state


def population_checkpoint_config() -> tune.CheckpointConfig:
    """A member's two latest perturbation checkpoints and its latest one: the ones another member
    may still be told to copy (training/population.Member.rank ranks them). Each holds its best.pt."""
    return tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute=CHECKPOINT_RANK, checkpoint_score_order="max"
    )
