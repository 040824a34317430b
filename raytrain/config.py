"""The experiment schema: YAML loading (extends, --set overrides), validation, resolved form, hash.

Every problem in a config is reported at once, each as `file: dotted.path: message`. This module must
not import torch or ray: `raytrain validate` and the sweep planner stay fast and dependency-light.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raytrain.errors import UserError
from raytrain.model_names import is_classification_model, unknown_model_message

CONFIG_SUFFIXES = (".yaml", ".yml")


class ConfigError(UserError):
    """A config that cannot be used. `problems` holds one `file: path: message` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


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


class OtherConfig(_Section):
    patience: int = Field(7, ge=1)  # epochs without a better val macro F1 before stopping
    # a list runs one trial per seed, grouped as <name>/seed-<seed>: repeats show the noise
    seed: int | list[int] = 42
    workers: int = Field(8, ge=1)  # image-decoding processes when a dataset is first cached
    # how often a trial saves its whole training state (weights + optimiser) to continue from after
    # a crash: every N epochs and/or every N minutes, whichever comes first (null turns one off).
    # Every epoch loses at most one epoch to a kill; raise it when epochs are short and the state
    # is large (each save writes the model and optimiser, ~135 MB for resnet18). The last epoch is
    # always saved. Changes no result, so it is not part of the config hash.
    checkpoint_epochs: int | None = Field(1, ge=1)
    checkpoint_minutes: float | None = Field(None, gt=0.0)

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


SEARCH_ALGORITHMS = ("grid_random", "optuna")
# what an adaptive searcher proposes from: one value per trial, so no grids (a grid is a list of
# trials fixed up front, which is what grid_random is for)
ADAPTIVE_KINDS = ("choice", "uniform", "loguniform", "randint")


class SearchConfig(_Section):
    # grid_random: every point drawn up front (grids x num_samples seeded draws), names known before
    # anything runs. optuna: TPE proposes each trial from the results of the finished ones.
    algorithm: Literal["grid_random", "optuna"] = "grid_random"
    # grid_random: random draws, grids are crossed with each draw; optuna: the trial budget
    num_samples: int = Field(1, ge=1)
    # optuna: at most this many trials proposed and running at once. Each proposal waits for fewer
    # results, so a high value makes TPE closer to random search; None = as many as the cluster fits
    max_concurrent: int | None = Field(None, ge=1)
    seed: int | None = None  # the search's own seed (not the model's); None = derived from the name
    scheduler: SchedulerConfig = SchedulerConfig()
    # dotted path -> {grid|choice|uniform|loguniform|randint: values}; checked by _search_problems,
    # which knows the schema of each key
    space: dict[str, Any] = {}

    @model_validator(mode="after")
    def _adaptive_space(self) -> SearchConfig:
        if self.algorithm == "grid_random":
            if self.max_concurrent is not None:
                raise ValueError(
                    "max_concurrent: only applies to an adaptive search (algorithm: optuna); "
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
    # "/seed-N" only appears in the members raytrain makes from a list of seeds, "/tNNN" in the
    # trials an adaptive search proposes
    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+(/seed-[0-9]+|/t[0-9]{3,})?$")
    description: str = ""
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    loss: LossConfig = LossConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    data: DataConfig = DataConfig()
    other: OtherConfig = OtherConfig()
    resources: ResourcesConfig = ResourcesConfig()
    search: SearchConfig | None = None


# Sections whose values change what a trial computes; the hash covers these and nothing else, so a
# new description or more CPUs does not make a finished experiment look stale.
RESULT_SECTIONS = ("model", "training", "loss", "augmentation", "data", "other")
# ...except these keys, which change speed, never results.
RESULT_NEUTRAL_KEYS = ("other.workers", "training.compile", "other.checkpoint_epochs", "other.checkpoint_minutes")


# ---------------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, merge its `extends` chain, apply `--set` overrides, and validate.

    Raises ConfigError listing every problem found.
    """
    path = Path(path)
    raw, origins = _read_with_extends(path, chain=())
    raw.setdefault("name", path.stem)
    origins.setdefault("name", str(path))
    problems: list[str] = []
    for override in overrides:
        try:
            dotted, value = parse_override(override)
        except ConfigError as err:
            problems += err.problems
            continue
        _set_dotted(raw, dotted, value)
        origins[dotted] = f"--set {override}"
    problems += _search_problems(raw, origins, path)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems += _describe(err, origins, path)
    if problems:
        raise ConfigError(problems)
    return config


def validate_config(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate an already-resolved config dict (what a Tune trial receives)."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, {}, Path(source))) from None


def parse_override(text: str) -> tuple[str, Any]:
    """`training.lr=0.001` -> ("training.lr", 0.001). The value is YAML, typed later by the schema."""
    dotted, sep, value = text.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        raise ConfigError([f"--set {text}: expected KEY=VALUE, e.g. --set training.lr=0.001"])
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return dotted, parsed


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError([f"{path}: file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError([f"{path}: {where}invalid YAML: {problem}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a text file (expected UTF-8 YAML)"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def _read_with_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """The merged dict and, for each dotted leaf, the file that set it (for error messages)."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError([f"{chain[-1]}: extends: cycle {cycle}; remove one of the extends"])
    data = _read_yaml(path)
    parent_name = data.pop("extends", None)
    own_origins = {dotted: str(path) for dotted in _leaf_paths(data)}
    if parent_name is None:
        return data, own_origins
    if not isinstance(parent_name, str) or not parent_name:
        raise ConfigError([f"{path}: extends: must be a relative file path, got {parent_name!r}"])
    parent_path = path.parent / parent_name
    if not parent_path.is_file():
        raise ConfigError(
            [
                f"{path}: extends: {parent_name} not found (looked for {parent_path}); paths are relative to {path.parent}"
            ]
        )
    parent, origins = _read_with_extends(parent_path, (*chain, resolved))
    parent.pop("name", None)  # a name belongs to its own file; the child's default is its stem
    parent.pop("description", None)
    origins.pop("name", None)
    return _deep_merge(parent, data), origins | own_origins


def _deep_merge(base: dict, over: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "space":
            merged[key] = _deep_merge(merged[key], value)
        else:
            # a search space is replaced whole: merging two spaces silently widens a sweep
            merged[key] = copy.deepcopy(value)
    return merged


def _leaf_paths(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted != "search.space":
            out += _leaf_paths(value, dotted + ".") or [dotted]
        else:
            out.append(dotted)
    return out


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


# ---------------------------------------------------------------------------------------------------
# Search-space validation: every key must be a real knob and every value one it accepts.


def _search_problems(raw: dict, origins: dict[str, str], path: Path) -> list[str]:
    """Problems in search.space entries; the schema itself reports a search section of the wrong shape."""
    search = raw.get("search")
    space = search.get("space") if isinstance(search, dict) else None
    if not isinstance(space, dict):
        return []
    where = _origin_of("search.space", origins, path)
    problems = [
        f"{where}: search.space.{dotted}: {message}"
        for dotted, spec in space.items()
        for message in _spec_problems(raw, str(dotted), spec)
    ]
    algorithm = search.get("algorithm", "grid_random")
    if algorithm in SEARCH_ALGORITHMS and algorithm != "grid_random":
        problems += _adaptive_problems(raw, space, algorithm, origins, path)
    return problems


# An adaptive searcher scores each proposed point by one trial. Repeats would give it several scores
# for one point (or seed would be a knob it tunes to luck), so seeds are repeated after the search.
_NO_REPEATS = (
    "seed repeats do not mix with algorithm {algorithm}: the searcher learns from one score per "
    "proposed point; search with one seed (other.seed: 42), then re-run the best point with "
    "other.seed: [1, 2, 3]"
)


def _adaptive_problems(raw: dict, space: dict, algorithm: str, origins: dict[str, str], path: Path) -> list[str]:
    """What an adaptive searcher cannot take: grids (fixed lists of trials) and seed repeats."""
    where = _origin_of("search.space", origins, path)
    problems = []
    for dotted, spec in space.items():
        kind = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
        if kind != "grid":
            continue
        if dotted == "other.seed":
            problems.append(f"{where}: search.space.other.seed: {_NO_REPEATS.format(algorithm=algorithm)}")
        else:
            problems.append(
                f"{where}: search.space.{dotted}: grid: algorithm {algorithm} proposes values itself and "
                "takes no grid; write choice: [...] to let it pick among these values, or use "
                "algorithm: grid_random to run each of them"
            )
    seed = raw.get("other", {}).get("seed") if isinstance(raw.get("other"), dict) else None
    if isinstance(seed, list):
        problems.append(
            f"{_origin_of('other.seed', origins, path)}: other.seed: {_NO_REPEATS.format(algorithm=algorithm)}"
        )
    return problems


def _spec_problems(raw: dict, dotted: str, spec: Any) -> list[str]:
    section, _, key = dotted.partition(".")
    if section not in RESULT_SECTIONS or key not in _fields_at((section,)):
        known = [f"{s}.{k}" for s in RESULT_SECTIONS for k in _fields_at((s,))]
        hint = closest(dotted, known)
        return [
            "unknown key" + (f"; did you mean {hint!r}?" if hint else "; use a dotted config path like training.lr")
        ]
    if not isinstance(spec, dict) or len(spec) != 1:
        return [f"must be one of {{{', '.join(SEARCH_KINDS)}}} with its values, e.g. {{grid: [1, 2, 3]}}"]
    kind, values = next(iter(spec.items()))
    if kind not in SEARCH_KINDS:
        hint = closest(str(kind), SEARCH_KINDS)
        return [
            f"unknown search kind {kind!r}"
            + (f"; did you mean {hint!r}?" if hint else f"; use one of {', '.join(SEARCH_KINDS)}")
        ]
    if not isinstance(values, list) or not values:
        return [f"{kind}: needs a non-empty list of values, got {values!r}"]
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2:
            return [f"{kind}: needs [low, high], got {values!r}"]
        values = [_as_number(v) for v in values]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return [f"{kind}: bounds must be numbers, got {spec[kind]!r}"]
        if not values[0] < values[1]:
            return [f"{kind}: low must be < high, got {values!r}"]
        if kind == "loguniform" and values[0] <= 0:
            return [f"loguniform: bounds must be > 0, got {values!r}"]
        if kind == "randint":
            if not all(float(v).is_integer() for v in values):
                return [f"randint: bounds must be integers, got {values!r}"]
            values = [values[0], values[1] - 1]  # Tune's randint excludes high
    # every value a search can produce must pass the schema for that key: check the listed values
    # (grid, choice) or both bounds (ranges)
    problems = []
    for value in values:
        probe = copy.deepcopy({k: v for k, v in raw.items() if k != "search"})
        _set_dotted(probe, dotted, value)
        try:
            ExperimentConfig.model_validate(probe)
        except ValidationError as err:
            problems += [
                f"value {value!r}: {_message(e)}" for e in err.errors() if ".".join(map(str, e["loc"])) == dotted
            ]
    return problems


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            return value
    return value


def _fields_at(loc: tuple) -> dict:
    """The schema fields of the section at `loc` (e.g. ("search", "scheduler")); {} if not a section."""
    model: Any = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return {}
        candidates = get_args(field.annotation) or (field.annotation,)  # unwraps `X | None`
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return {}
    return model.model_fields


# ---------------------------------------------------------------------------------------------------
# Error messages


def _describe(err: ValidationError, origins: dict[str, str], path: Path) -> list[str]:
    problems = []
    for e in err.errors():
        dotted = ".".join(str(p) for p in e["loc"])
        problems.append(f"{_origin_of(dotted, origins, path)}: {dotted or '(top level)'}: {_message(e)}")
    return problems


def _origin_of(dotted: str, origins: dict[str, str], default: Path) -> str:
    """The file (or --set) that set this path, or the one that set its closest parent."""
    probe = dotted
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    return str(default)


_FIX_FOR_TYPE = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping",
}


def _message(e: dict) -> str:
    kind, ctx, got = e["type"], e.get("ctx", {}), e.get("input")
    if kind == "extra_forbidden":
        return _unknown_key_message(e["loc"])
    if kind == "missing":
        return "required"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {got!r}"
    if kind == "literal_error":
        choices = ctx.get("expected", "")
        hint = closest(str(got), [c.strip(" '") for c in choices.replace(" or ", ", ").split(",")])
        return f"must be one of {choices}, got {got!r}" + (f"; did you mean {hint!r}?" if hint else "")
    if kind == "string_pattern_mismatch":
        return f"may hold only letters, digits, '_', '-' and '.', got {got!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", e["msg"]))
    if kind in _FIX_FOR_TYPE:
        return f"{_FIX_FOR_TYPE[kind]}, got {got!r}"
    return f"{e['msg'][0].lower()}{e['msg'][1:]}, got {got!r}"


def closest(name: str, candidates) -> str | None:
    """The known name a typo most likely meant: a close spelling, or one it abbreviates."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if close:
        return close[0]
    prefixed = [c for c in candidates if len(name) >= 3 and c.startswith(name)]
    return prefixed[0] if len(prefixed) == 1 else None


def _unknown_key_message(loc: tuple) -> str:
    *parents, key = [str(p) for p in loc]
    names = sorted(_fields_at(tuple(parents)) | ({"extends": None} if not parents else {}))
    hint = closest(key, names)
    if hint:
        return f"unknown key; did you mean {hint!r} instead of {key!r}?"
    return f"unknown key {key!r}; known keys here: {', '.join(names)}"


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
    for dotted in RESULT_NEUTRAL_KEYS:
        section, key = dotted.split(".")
        relevant[section] = {k: v for k, v in relevant[section].items() if k != key}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def differences(config: ExperimentConfig, base: ExperimentConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ from `base`: {key: (base value, this value)}."""
    ours, theirs = _flatten(resolved_dict(config)), _flatten(resolved_dict(base))
    skip = ("name", "description")
    return {k: (theirs.get(k), v) for k, v in ours.items() if k not in skip and theirs.get(k) != v}


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" != "search.space":
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def find_configs(paths: list[str | Path]) -> list[Path]:
    """Config files named directly or found (non-recursively, sorted) in the named folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix in CONFIG_SUFFIXES)
        else:
            found.append(p)
    return found
