"""Reading a config: the YAML file, its `extends` chain, `--set` overrides, then validation with
every problem reported at once. Also the search-space entries, checked key by key against the schema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raytrain import artifacts
from raytrain.config.messages import ConfigError, closest, describe_errors, error_message, fields_at, origin_of
from raytrain.config.population import population_problems
from raytrain.config.schema import (
    DATASET_KEYS,
    POPULATION_ALGORITHMS,
    RESULT_SECTIONS,
    SEARCH_ALGORITHMS,
    SEARCH_KINDS,
    ExperimentConfig,
    config_hash,
)

CONFIG_SUFFIXES = (".yaml", ".yml")


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
        problems += describe_errors(err, origins, path)
    if problems:
        raise ConfigError(problems)
    return config


def validate_config(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate an already-resolved config dict (what a Tune trial receives)."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, {}, Path(source))) from None


def parse_override(text: str) -> tuple[str, Any]:
    """`training.lr=0.001` -> ("training.lr", 0.001). The value is YAML, typed later by the schema."""
    dotted, sep, value = text.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        raise ConfigError([f"--set {text}: expected KEY=VALUE, e.g. --set training.lr=0.001"])
    try:
        parsed = bounded_yaml(value, f"--set {dotted}") if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return dotted, parsed


# A config is a few KB. These bounds keep a hostile one (a 50 MB file, an alias bomb: anchors that each
# hold the previous one nine times expand to 9^10 values) to an error within a second, in little memory.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 100_000  # after aliases (`*anchor`) are expanded, as validation and hashing see them


def bounded_yaml(text: str, where: str):
    """yaml.safe_load, refusing a document whose aliases expand to more than MAX_CONFIG_VALUES values
    or that nests too deeply. PyYAML builds an alias as a reference (cheap); everything after it
    (merging, validation, the hash, an error that quotes the value) walks the expanded tree."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values = _expanded_values(node, {})
        if values is None:
            raise ConfigError([f"{where}: a value holds itself through an alias (&name ... *name); no config can"])
        if values > MAX_CONFIG_VALUES:
            raise ConfigError(
                [
                    f"{where}: expands to more than {MAX_CONFIG_VALUES:,} values through its aliases (*name); "
                    "a config needs a few hundred: is this an alias bomb?"
                ]
            )
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError([f"{where}: nested too deeply to be a config"]) from None
    finally:
        loader.dispose()


def _expanded_values(node: yaml.Node, counted: dict[int, int | None]) -> int | None:
    """How many values `node` stands for with every alias expanded, or None if it holds itself
    (`&a [*a]`: infinite). Each node is counted once (an alias is the same node object again), so this
    is linear in the document however big the expansion."""
    if id(node) in counted:
        return counted[id(node)]  # None while it is being counted: reached again from inside itself
    counted[id(node)] = None
    children = node.value if isinstance(node, yaml.SequenceNode) else ()
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        values = _expanded_values(child, counted)
        if values is None:
            return None
        total += values
    counted[id(node)] = total
    return total


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError([f"{path}: file not found"])
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"{path}: {size:,} bytes; a config is a few KB (the limit is {MAX_CONFIG_BYTES:,}): is this the "
                "right file?"
            ]
        )
    try:
        data = bounded_yaml(path.read_text(encoding="utf-8"), str(path))
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
                f"{path}: extends: {parent_name} not found (looked for {parent_path}); paths are relative to "
                f"{path.parent}"
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


# Search-space validation: every key must be a real knob and every value one it accepts.


def _search_problems(raw: dict, origins: dict[str, str], path: Path) -> list[str]:
    """Problems in search.space entries; the schema itself reports a search section of the wrong shape."""
    search = raw.get("search")
    space = search.get("space") if isinstance(search, dict) else None
    if not isinstance(space, dict):
        return []
    where = origin_of("search.space", origins, path)
    problems = [
        f"{where}: search.space.{dotted}: {message}"
        for dotted, spec in space.items()
        for message in _spec_problems(raw, str(dotted), spec)
    ]
    algorithm = search.get("algorithm", "grid_random")
    if algorithm in SEARCH_ALGORITHMS and algorithm != "grid_random":
        problems += _adaptive_problems(raw, space, algorithm, origins, path)
    if algorithm in POPULATION_ALGORITHMS:
        problems += population_problems(raw, space, algorithm, origins, path)
    return problems


# An adaptive searcher scores each proposed point by one trial. Repeats would give it several scores
# for one point (or seed would be a knob it tunes to luck), so seeds are repeated after the search.
_NO_REPEATS = (
    "seed repeats do not mix with algorithm {algorithm}: {reason}; search with one seed (other.seed: 42), "
    "then re-run the best point with other.seed: [1, 2, 3]"
)
_ONE_SCORE = {
    "pbt": "members are ranked and copied by one score each, and each member has its own seed already",
    "pb2": "members are ranked and copied by one score each, and each member has its own seed already",
}


def _no_repeats(algorithm: str) -> str:
    reason = _ONE_SCORE.get(algorithm, "the searcher learns from one score per proposed point")
    return _NO_REPEATS.format(algorithm=algorithm, reason=reason)


def _adaptive_problems(raw: dict, space: dict, algorithm: str, origins: dict[str, str], path: Path) -> list[str]:
    """What an adaptive searcher cannot take: grids (fixed lists of trials), seed repeats, and keys
    that change the dataset (decoded once per value before the searcher proposes any)."""
    where = origin_of("search.space", origins, path)
    problems = []
    for dotted, spec in space.items():
        kind = next(iter(spec)) if isinstance(spec, dict) and len(spec) == 1 else None
        if dotted in DATASET_KEYS:
            problems.append(
                f"{where}: search.space.{dotted}: algorithm {algorithm} proposes values as trials start, but the "
                "sweep decodes its datasets before that; use algorithm: grid_random to run each value"
            )
            continue
        if kind != "grid":
            continue
        if dotted == "other.seed":
            problems.append(f"{where}: search.space.other.seed: {_no_repeats(algorithm)}")
        else:
            problems.append(
                f"{where}: search.space.{dotted}: grid: algorithm {algorithm} proposes values itself and "
                "takes no grid; write choice: [...] to let it pick among these values, or use "
                "algorithm: grid_random to run each of them"
            )
    seed = raw.get("other", {}).get("seed") if isinstance(raw.get("other"), dict) else None
    if isinstance(seed, list):
        problems.append(f"{origin_of('other.seed', origins, path)}: other.seed: {_no_repeats(algorithm)}")
    return problems


def _spec_problems(raw: dict, dotted: str, spec: Any) -> list[str]:
    section, _, key = dotted.partition(".")
    if section not in RESULT_SECTIONS or key not in fields_at((section,)):
        known = [f"{s}.{k}" for s in RESULT_SECTIONS for k in fields_at((s,))]
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
                f"value {value!r}: {error_message(e)}" for e in err.errors() if ".".join(map(str, e["loc"])) == dotted
            ]
    return problems


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            return value
    return value


def find_configs(paths: list[str | Path]) -> list[Path]:
    """Config files named directly or found (non-recursively, sorted) in the named folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.suffix in CONFIG_SUFFIXES)
        else:
            found.append(p)
    return found


def published_config_hash(runs_dir: Path, experiment: str) -> str:
    """The config hash of the run published in runs/<experiment>/: what the planner (skip it or not)
    and the publisher (replace it or not) compare a config with. Raises ConfigError if unreadable."""
    return config_hash(load_config(artifacts.experiment_dir(runs_dir, experiment) / artifacts.CONFIG))
