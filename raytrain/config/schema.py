"""The experiment schema: one pydantic model per YAML section, field defaults with the reason to
change them, and the forms a config takes once valid (resolved dict, YAML, hash, differences).
No torch, no ray: `raytrain validate` and the sweep planner stay fast.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raytrain.config.model_names import is_classification_model, unknown_model_message
from raytrain.naming import dotted, experiment_name_problem

# ---------------------------------------------------------------------------------------------------
# Schema. Field defaults are the seed's; comments say when to change them.


class _Section(BaseModel):
    # forbid: a typo such as `trainig.lr` must be an error, never a silently ignored key
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    arch: str = "resnet18"  # any torchvision classification model name
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # before the new linear head
    pretrained: bool = True  # ImageNet weights from the local torch cache; nothing is downloaded

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if not is_classification_model(arch):
            raise ValueError(unknown_model_message(arch))
        return arch


class TrainingConfig(_Section):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(256, ge=1)  # no gradients: can be larger than batch_size
    lr: float = Field(3e-4, gt=0.0, le=10.0)  # the OneCycle peak; try 1e-3 for from-scratch training
    weight_decay: float = Field(0.05, ge=0.0)  # not applied to norms and biases
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    freeze_epochs: int = Field(0, ge=0)  # only the head trains for the first N epochs
    onecycle_pct_start: float = Field(0.3, gt=0.0, lt=1.0)  # share of steps spent warming up
    # auto: bf16 autocast on GPUs, and on CPUs with native bf16 where it times faster than fp32
    # (1.7x for resnet18 on an AMD EPYC; 0.9x on a Xeon whose AMX is hidden, so fp32 there);
    # bf16 or fp32 force one everywhere
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # torch.compile the model: faster steps on a GPU after a compile of a minute or more per
    # trial; rarely worth it for short CPU trials
    compile: bool = False

    @model_validator(mode="after")
    def _freeze_shorter_than_training(self) -> TrainingConfig:
        if self.freeze_epochs >= self.epochs:
            raise ValueError(
                f"freeze_epochs ({self.freeze_epochs}) must be < epochs ({self.epochs}), or the backbone never trains"
            )
        return self


class LossConfig(_Section):
    type: Literal["ce", "focal"] = "ce"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    focal_gamma: float = Field(2.0, ge=0.0)  # only read when type is focal; 0 equals cross-entropy
    use_class_weights: bool = True  # inverse-frequency weights from the train split


class AugmentationConfig(_Section):
    """Batch augmentation, applied on the trial's device. Zero turns a transform off."""

    hflip: float = Field(0.5, ge=0.0, le=1.0)  # probability of a horizontal flip
    rotation: float = Field(10.0, ge=0.0, le=180.0)  # max degrees either way
    scale: float = Field(0.1, ge=0.0, lt=1.0)  # zoom factor drawn from [1 - scale, 1 + scale]
    translate: float = Field(0.1, ge=0.0, le=0.5)  # max shift as a fraction of the image side
    brightness: float = Field(0.2, ge=0.0, lt=1.0)  # factor drawn from [1 - b, 1 + b]
    contrast: float = Field(0.2, ge=0.0, lt=1.0)  # factor drawn from [1 - c, 1 + c]
    random_erasing: float = Field(0.0, ge=0.0, le=1.0)  # probability of erasing one rectangle
    mixup_alpha: float = Field(0.2, ge=0.0)  # Beta(alpha, alpha) mixing; 0 turns mixup off


class DataConfig(_Section):
    img_size: int = Field(224, ge=16, le=1024)  # the model's input side, resized on the device
    weighted_sampler: bool = False  # draw train batches class-balanced
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # carved from train when DATA has no val/
    channels: Literal[1, 3] = 1  # FER is grayscale; 3 keeps colour
    # FER+ only: train on the majority vote, or on the annotators' vote distribution (soft targets);
    # metrics are against the majority either way
    labels: Literal["majority", "votes"] = "majority"
    # numbered class folders (train/0/, train/1/, ...): the name of each, in number order; default
    # AffectNet's order (0 neutral, 1 happy, 2 sad, 3 surprised, 4 fearful, 5 disgusted, 6 angry, 7 contempt)
    class_names: list[str] | None = None

    @field_validator("class_names")
    @classmethod
    def _usable_class_names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        if not names:
            raise ValueError("must name at least one class, or be left out")
        for i, name in enumerate(names):
            if not name.strip() or "/" in name:
                raise ValueError(
                    f"[{i}] {name!r}: a class name must be non-empty and hold no '/' (metric names split on it)"
                )
        return names

    # leave out of val and test the images that copy a train image exactly or nearly (`raytrain data
    # check` counts them); the sweep's driver does it once for every trial and says how many
    drop_cross_split_duplicates: bool = False


class OtherConfig(_Section):
    patience: int = Field(7, ge=1)  # epochs without a better val macro F1 before stopping
    # a list runs one trial per seed, grouped as <name>/seed-<seed>: repeats show the noise
    seed: int | list[int] = 42
    workers: int = Field(8, ge=1)  # image-decoding processes when a dataset is first cached
    # how often a trial saves its whole training state (weights + optimiser) to continue from after
    # a crash: every N epochs and/or every N minutes, whichever comes first (null turns one off).
    # Each save writes 135-180 MB for resnet18 (0.4 s to write and copy on a 2-core CPU machine;
    # tests/bench/gpu_check.sh measures it on a GPU), about a whole 48 px FER epoch on an H100-class
    # GPU: every 2 minutes keeps saving near 1% of the time on a fast device and loses at most 2
    # minutes (and the epoch under way) to a kill; on a CPU, whose epochs take minutes, it saves
    # about every epoch. checkpoint_epochs: 1 saves every epoch. The last epoch and the epochs where
    # ASHA may stop a trial are always saved. Changes no result, so neither is in the config hash.
    checkpoint_epochs: int | None = Field(None, ge=1)
    checkpoint_minutes: float | None = Field(2.0, gt=0.0)

    @field_validator("seed")
    @classmethod
    def _seeds(cls, seed: int | list[int]) -> int | list[int]:
        seeds = seed if isinstance(seed, list) else [seed]
        if not seeds:
            raise ValueError("must be a whole number or a non-empty list of them, e.g. [1, 2, 3]")
        if any(s < 0 for s in seeds):
            raise ValueError(f"must be >= 0, got {seed!r}")
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"repeats the same seed, got {seed!r}; each repeat needs its own seed")
        return seed

    @model_validator(mode="after")
    def _some_checkpoint_cadence(self) -> OtherConfig:
        if self.checkpoint_epochs is None and self.checkpoint_minutes is None:
            raise ValueError(
                "checkpoint_epochs and checkpoint_minutes are both null, so a trial would only save at its "
                "end and a crash would lose all of it; set one, e.g. checkpoint_epochs: 1 or checkpoint_minutes: 10"
            )
        return self


class ResourcesConfig(_Section):
    cpu: float = Field(1.0, gt=0.0)  # per trial; also the trial's torch threads
    gpu: float | None = Field(None, ge=0.0)  # per trial; None = 1 when the cluster has GPUs, else 0

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, gpu: float | None) -> float | None:
        # Ray packs fractional GPUs onto one device but cannot split one trial across devices
        # unless it asks for whole devices.
        if gpu is not None and gpu > 1 and gpu != int(gpu):
            raise ValueError(f"must be a fraction <= 1 or a whole number, got {gpu}")
        return gpu


# --- search spaces ---------------------------------------------------------------------------------

SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


class SchedulerConfig(_Section):
    type: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(3, ge=1)  # ASHA: epochs every trial gets before it can be cut
    reduction_factor: float = Field(3.0, gt=1.0)  # ASHA: keep 1/reduction_factor at each rung


SEARCH_ALGORITHMS = ("grid_random", "optuna", "pbt", "pb2")
# a population trained together, whose members change knobs mid-run (config/population.py)
POPULATION_ALGORITHMS = ("pbt", "pb2")
POPULATION_FIELDS = (
    "population",
    "perturbation_interval",
    "quantile_fraction",
    "resample_probability",
    "perturbation_factors",
    "synchronous",
)


# what an adaptive searcher proposes from: one value per trial, so no grids (a grid is a list of
# trials fixed up front, which is what grid_random is for)
class SearchConfig(_Section):
    # grid_random: every point drawn up front (grids x num_samples seeded draws), names known before
    # anything runs. optuna: TPE proposes each trial from the results of the finished ones.
    # pbt / pb2: population based training (Ray Tune's PopulationBasedTraining / PB2): the members
    # train together, and every perturbation_interval epochs the weaker copy a stronger one's weights
    # and go on with its knobs perturbed (pb2: chosen by a Gaussian-process bandit instead)
    algorithm: Literal["grid_random", "optuna", "pbt", "pb2"] = "grid_random"
    # grid_random: random draws, grids are crossed with each draw; optuna: the trial budget
    num_samples: int = Field(1, ge=1)
    # optuna: at most this many trials proposed and running at once. Each proposal waits for fewer
    # results, so a high value makes TPE closer to random search; None = as many as the cluster fits
    max_concurrent: int | None = Field(None, ge=1)
    seed: int | None = None  # the search's own seed (not the model's); None = derived from the name
    scheduler: SchedulerConfig = SchedulerConfig()
    # pbt/pb2: the members (each a trial, t001...), and how many epochs each trains between two
    # decisions to copy a stronger member (each one a checkpoint of every member)
    population: int = Field(4, ge=2)
    perturbation_interval: int | None = Field(None, ge=1)
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)  # the bottom share copies the top share
    # pbt: a copied knob is drawn afresh from its range with this probability; otherwise a
    # continuous one is multiplied by one of perturbation_factors and a categorical one is kept
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    perturbation_factors: list[float] = Field([0.8, 1.2], min_length=1)
    # pbt/pb2: false (Ray's default): each member decides when it reaches a perturbation epoch, from
    # the scores the others last had. true: every member waits there for the others, and all
    # decide from the same epoch's scores, which a small population needs to compare like with like
    # (once resumed after a stop, it goes on asynchronously)
    synchronous: bool = False
    # dotted path -> {grid|choice|uniform|loguniform|randint: values}; checked by _search_problems,
    # which knows the schema of each key
    space: dict[str, Any] = {}

    @property
    def trials(self) -> int:
        """The trials the search runs: its population, or its budget of proposals."""
        return self.population if self.algorithm in POPULATION_ALGORITHMS else self.num_samples

    @model_validator(mode="after")
    def _adaptive_space(self) -> SearchConfig:
        if self.algorithm not in POPULATION_ALGORITHMS:
            stray = [f for f in POPULATION_FIELDS if f in self.model_fields_set]
            if stray:
                raise ValueError(
                    f"{stray[0]}: only applies to population based training (algorithm: pbt or pb2), not "
                    f"{self.algorithm}"
                )
        if self.algorithm == "grid_random":
            if self.max_concurrent is not None:
                raise ValueError(
                    "max_concurrent: only applies to an adaptive search (algorithm: optuna, pbt, pb2); "
                    "for grid_random use `raytrain sweep --max-concurrent N`"
                )
            return self
        if not self.space:
            raise ValueError(
                f"space: algorithm {self.algorithm} needs at least one searched key, "
                "e.g. space: {training.lr: {loguniform: [1.0e-4, 3.0e-3]}}"
            )
        return self


class ExperimentConfig(_Section):
    name: str = "experiment"
    description: str = ""
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    loss: LossConfig = LossConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    data: DataConfig = DataConfig()
    other: OtherConfig = OtherConfig()
    resources: ResourcesConfig = ResourcesConfig()
    search: SearchConfig | None = None

    @field_validator("name")
    @classmethod
    def _one_folder_inside_runs(cls, name: str) -> str:
        problem = experiment_name_problem(name)
        if problem:
            raise ValueError(problem)
        return name


# Sections whose values change what a trial computes; the hash covers these and nothing else, so a
# new description or more CPUs does not make a finished experiment look stale.
RESULT_SECTIONS = ("model", "training", "loss", "augmentation", "data", "other")
# ...except these keys, which change speed, never results.
RESULT_NEUTRAL_KEYS = ("other.workers", "training.compile", "other.checkpoint_epochs", "other.checkpoint_minutes")
# The data keys that change what a trial's dataset holds: a sweep decodes one dataset per value of
# them, before any trial starts (img_size and the sampler act later, in the trial).
DATASET_KEYS = (
    "data.channels",
    "data.val_fraction",
    "data.labels",
    "data.class_names",
    "data.drop_cross_split_duplicates",
)
# Keys added after runs existed, left out of the hash while at these defaults: a run finished before
# raytrain knew the key ran as its default does, and must not look stale for it.
ADDED_KEY_DEFAULTS = {"data.labels": "majority", "data.class_names": None, "data.drop_cross_split_duplicates": False}


# ---------------------------------------------------------------------------------------------------
# Resolved form and hash


def resolved_dict(config: ExperimentConfig) -> dict:
    """Every key with its value, defaults filled: what runs/<name>/config.yaml holds."""
    data = config.model_dump(mode="json")
    if data.get("search") is None:
        data.pop("search", None)
    return data


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(resolved_dict(config), sort_keys=False, default_flow_style=False)


def config_hash(config: ExperimentConfig) -> str:
    """A short stable hash of the parts that change results (not name, resources, workers...)."""
    data = resolved_dict(config)
    relevant = {section: data[section] for section in RESULT_SECTIONS}
    for knob in RESULT_NEUTRAL_KEYS:
        section, key = knob.split(".")
        relevant[section] = {k: v for k, v in relevant[section].items() if k != key}
    for knob, default in ADDED_KEY_DEFAULTS.items():
        section, key = knob.split(".")
        if relevant[section].get(key) == default:
            relevant[section] = {k: v for k, v in relevant[section].items() if k != key}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def differences(config: ExperimentConfig, base: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ from `base`: {key: (base value, this value)}."""
    ours, theirs = dotted(resolved_dict(config)), dotted(resolved_dict(base))
    skip = ("name", "description")
    return {k: (theirs.get(k), v) for k, v in ours.items() if k not in skip and theirs.get(k) != v}
