"""The config system: shipped configs, extends, --set, every bad-config message, resolved form, hash."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from raytrain.config import (
    ConfigError,
    ExperimentConfig,
    config_hash,
    differences,
    find_configs,
    load_config,
    resolved_dict,
    to_yaml,
)
from raytrain.config.model_names import KNOWN_CLASSIFICATION_MODELS
from tests.conftest import CONFIGS_DIR, PROJECT_ROOT

SEED_CONFIGS = [
    "baseline",
    "lr_low",
    "lr_high",
    "epochs_10",
    "epochs_50",
    "batch_64",
    "batch_256",
    "loss_focal",
    "aug_none",
    "aug_heavy",
    "balance_no_weights",
    "balance_weighted_sampler",
]

# What each seed variant changes against baseline, and nothing else.
VARIANT_CHANGES = {
    "lr_low": {"training.lr": 1e-4},
    "lr_high": {"training.lr": 1e-3},
    "epochs_10": {"training.epochs": 10},
    "epochs_50": {"training.epochs": 50},
    "batch_64": {"training.batch_size": 64},
    "batch_256": {"training.batch_size": 256},
    "loss_focal": {"loss.type": "focal"},
    "aug_none": {
        "augmentation.hflip": 0.0,
        "augmentation.rotation": 0.0,
        "augmentation.scale": 0.0,
        "augmentation.translate": 0.0,
        "augmentation.brightness": 0.0,
        "augmentation.contrast": 0.0,
        "augmentation.mixup_alpha": 0.0,
    },
    "aug_heavy": {
        "augmentation.rotation": 20.0,
        "augmentation.scale": 0.2,
        "augmentation.translate": 0.15,
        "augmentation.brightness": 0.4,
        "augmentation.contrast": 0.4,
        "augmentation.random_erasing": 0.5,
        "augmentation.mixup_alpha": 0.4,
    },
    "balance_no_weights": {"loss.use_class_weights": False},
    "balance_weighted_sampler": {"loss.use_class_weights": False, "data.weighted_sampler": True},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    return err.value.problems


# --- shipped configs ---------------------------------------------------------------------------------


def test_every_shipped_config_validates():
    shipped = sorted(CONFIGS_DIR.rglob("*.yaml"))
    assert {p.stem for p in shipped} >= set(SEED_CONFIGS) | {"lr_search", "baseline_small"}
    for path in shipped:
        config = load_config(path)
        assert config.name == path.stem


def test_the_demo_finds_its_three_configs():
    from raytrain.cli.commands import DEMO_CONFIGS  # found from the package's own location

    assert DEMO_CONFIGS == CONFIGS_DIR / "demo"
    assert [p.stem for p in find_configs([DEMO_CONFIGS])] == ["baseline_small", "focal_small", "sampler_small"]


def test_the_seed_twelve_are_the_default_sweep_input():
    assert [p.stem for p in find_configs([CONFIGS_DIR])] == sorted(SEED_CONFIGS)


@pytest.mark.parametrize("variant", sorted(VARIANT_CHANGES))
def test_each_variant_changes_only_what_its_name_says(variant):
    base = load_config(CONFIGS_DIR / "baseline.yaml")
    changed = differences(load_config(CONFIGS_DIR / f"{variant}.yaml"), base)
    assert {key: new for key, (_, new) in changed.items()} == VARIANT_CHANGES[variant]


def test_each_shipped_config_opens_with_a_comment_and_the_command_that_runs_it():
    for path in CONFIGS_DIR.rglob("*.yaml"):
        head = path.read_text().splitlines()[:4]
        assert head[0].startswith("# "), path
        assert any("raytrain " in line for line in head if line.startswith("#")), path


def test_baseline_keeps_the_seed_defaults():
    config = load_config(CONFIGS_DIR / "baseline.yaml")
    assert resolved_dict(config) | {"name": "x", "description": ""} == resolved_dict(ExperimentConfig(name="x")), (
        "baseline.yaml and the schema defaults must not drift apart"
    )


def test_search_example_expands_to_a_search_section():
    config = load_config(CONFIGS_DIR / "search" / "lr_search.yaml")
    assert config.search.num_samples == 8
    assert config.search.scheduler.type == "asha"
    assert config.search.space["training.lr"] == {"loguniform": [1e-4, 3e-3]}


def test_known_model_names_match_the_installed_torchvision():
    torchvision_models = pytest.importorskip("torchvision.models")
    assert set(KNOWN_CLASSIFICATION_MODELS) == set(torchvision_models.list_models(module=torchvision_models))


# --- extends and --set -------------------------------------------------------------------------------


def test_extends_deep_merges_and_name_defaults_to_the_file_stem(tmp_path):
    write(tmp_path, "base.yaml", "name: base\ntraining: {lr: 0.01, epochs: 5}\nmodel: {dropout: 0.1}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ntraining: {epochs: 7}\n")
    config = load_config(child)
    assert (config.name, config.training.lr, config.training.epochs, config.model.dropout) == (
        "child",
        0.01,
        7,
        0.1,
    )


def test_extends_is_relative_to_the_extending_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "base.yaml", "training: {epochs: 3}\n")
    child = write(tmp_path / "sub", "child.yaml", "extends: ../base.yaml\n")
    assert load_config(child).training.epochs == 3


def test_set_overrides_are_typed_by_the_schema(tmp_path):
    path = write(tmp_path, "c.yaml", "training: {epochs: 3}\n")
    config = load_config(path, ["training.lr=1e-3", "training.epochs=5", "model.pretrained=false"])
    assert config.training.lr == pytest.approx(1e-3)
    assert config.training.epochs == 5 and isinstance(config.training.epochs, int)
    assert config.model.pretrained is False


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML reads 1e-4 (no dot) as the string "1e-4"
    path = write(tmp_path, "c.yaml", "training: {lr: 1e-4, weight_decay: 5e-2}\n")
    config = load_config(path)
    assert config.training.lr == pytest.approx(1e-4) and config.training.weight_decay == pytest.approx(0.05)


def test_an_empty_file_is_all_defaults(tmp_path):
    config = load_config(write(tmp_path, "empty.yaml", ""))
    assert config.training.lr == 3e-4 and config.name == "empty"


# --- bad configs: each its own message, naming file and dotted path ----------------------------------

# a valid pbt search to break one way at a time; its space ends the text, so a case can add entries
PBT = (
    "training: {epochs: 6}\nsearch:\n  algorithm: pbt\n  perturbation_interval: 2\n"
    "  space:\n    training.lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
)
BAD_CONFIGS = {
    # id: (yaml text, --set overrides, expected fragments of one problem line)
    "syntax_error": ("training: {lr: 0.1\nmodel: [\n", (), ["bad.yaml", "line", "invalid YAML"]),
    "top_level_not_mapping": ("- 1\n- 2\n", (), ["bad.yaml", "top level must be a mapping"]),
    "unknown_section": ("trainig: {lr: 0.1}\n", (), ["bad.yaml: trainig: unknown key", "did you mean 'training'"]),
    "unknown_key": (
        "training: {batchsize: 64}\n",
        (),
        ["bad.yaml: training.batchsize: unknown key", "did you mean 'batch_size'"],
    ),
    "unknown_key_no_hint": (
        "other: {zzz: 1}\n",
        (),
        [
            "other.zzz: unknown key 'zzz'",
            "known keys here: checkpoint_epochs, checkpoint_minutes, patience, seed, workers",
        ],
    ),
    "section_not_mapping": ("training: 5\n", (), ["bad.yaml: training: must be a mapping"]),
    "wrong_type_int": ("training: {batch_size: big}\n", (), ["training.batch_size: must be a whole number, got 'big'"]),
    "float_for_int": ("training: {epochs: 2.5}\n", (), ["training.epochs: must be a whole number, got 2.5"]),
    "wrong_type_bool": ("model: {pretrained: maybe}\n", (), ["model.pretrained: must be true or false, got 'maybe'"]),
    "wrong_type_float": ("loss: {label_smoothing: lots}\n", (), ["loss.label_smoothing: must be a number, got 'lots'"]),
    "negative_lr": ("training: {lr: -0.001}\n", (), ["bad.yaml: training.lr: must be > 0.0, got -0.001"]),
    "dropout_one": ("model: {dropout: 1.0}\n", (), ["model.dropout: must be < 1.0, got 1.0"]),
    "epochs_zero": ("training: {epochs: 0}\n", (), ["training.epochs: must be >= 1, got 0"]),
    "patience_zero": ("other: {patience: 0}\n", (), ["other.patience: must be >= 1, got 0"]),
    "batch_size_zero": ("training: {batch_size: 0}\n", (), ["training.batch_size: must be >= 1, got 0"]),
    "eval_batch_negative": (
        "training: {eval_batch_size: -4}\n",
        (),
        ["training.eval_batch_size: must be >= 1, got -4"],
    ),
    "pct_start_one": ("training: {onecycle_pct_start: 1.0}\n", (), ["training.onecycle_pct_start: must be < 1.0"]),
    "freeze_all_epochs": (
        "training: {epochs: 3, freeze_epochs: 3}\n",
        (),
        ["training: freeze_epochs (3) must be < epochs (3)"],
    ),
    "unknown_arch": (
        "model: {arch: resnet81}\n",
        (),
        ["model.arch: unknown architecture 'resnet81'", "did you mean 'resnet18'"],
    ),
    "unknown_optimizer": (
        "training: {optimizer: adamm}\n",
        (),
        ["training.optimizer: must be one of 'adamw', 'adam' or 'sgd', got 'adamm'", "did you mean"],
    ),
    "unknown_loss": (
        "loss: {type: focall}\n",
        (),
        ["loss.type: must be one of 'ce' or 'focal', got 'focall'", "did you mean 'focal'"],
    ),
    "bad_channels": ("data: {channels: 2}\n", (), ["data.channels: must be one of 1 or 3, got 2"]),
    "img_size_tiny": ("data: {img_size: 8}\n", (), ["data.img_size: must be >= 16, got 8"]),
    "gpu_fraction_above_one": (
        "resources: {gpu: 1.5}\n",
        (),
        ["resources.gpu: must be a fraction <= 1 or a whole number, got 1.5"],
    ),
    "negative_cpu": ("resources: {cpu: 0}\n", (), ["resources.cpu: must be > 0.0, got 0"]),
    "bad_name": ("name: my experiment\n", (), ["name: may hold only letters, digits"]),
    "search_unknown_kind": (
        "search: {space: {training.lr: {logunifrom: [1.0e-4, 1.0e-2]}}}\n",
        (),
        ["search.space.training.lr: unknown search kind 'logunifrom'", "did you mean 'loguniform'"],
    ),
    "search_unknown_key": (
        "search: {space: {training.lrr: {grid: [0.1]}}}\n",
        (),
        ["search.space.training.lrr: unknown key", "did you mean 'training.lr'"],
    ),
    "search_loguniform_nonpositive": (
        "search: {space: {training.lr: {loguniform: [0, 0.1]}}}\n",
        (),
        ["search.space.training.lr: loguniform: bounds must be > 0"],
    ),
    "search_low_above_high": (
        "search: {space: {training.lr: {uniform: [0.1, 0.01]}}}\n",
        (),
        ["search.space.training.lr: uniform: low must be < high"],
    ),
    "search_grid_out_of_range": (
        "search: {space: {model.dropout: {grid: [0.1, 1.5]}}}\n",
        (),
        ["search.space.model.dropout: value 1.5: must be < 1.0"],
    ),
    "search_grid_wrong_enum": (
        "search: {space: {training.optimizer: {choice: [adamw, lion]}}}\n",
        (),
        ["search.space.training.optimizer: value 'lion': must be one of"],
    ),
    "search_randint_float": (
        "search: {space: {training.epochs: {randint: [1, 4.5]}}}\n",
        (),
        ["search.space.training.epochs: randint: bounds must be integers"],
    ),
    "search_empty_grid": (
        "search: {space: {other.seed: {grid: []}}}\n",
        (),
        ["search.space.other.seed: grid: needs a non-empty list"],
    ),
    "seed_negative": ("other: {seed: -1}\n", (), ["other.seed: must be >= 0, got -1"]),
    "seed_list_repeats": ("other: {seed: [1, 1]}\n", (), ["other.seed: repeats the same seed, got [1, 1]"]),
    "seed_list_empty": ("other: {seed: []}\n", (), ["other.seed: must be a whole number or a non-empty list"]),
    "search_num_samples_zero": ("search: {num_samples: 0}\n", (), ["search.num_samples: must be >= 1, got 0"]),
    "search_unknown_scheduler": (
        "search: {scheduler: {type: hyperband}}\n",
        (),
        ["search.scheduler.type: must be one of 'fifo' or 'asha', got 'hyperband'"],
    ),
    "search_scheduler_typo": (
        "search: {scheduler: {grace: 2}}\n",
        (),
        ["search.scheduler.grace: unknown key", "did you mean 'grace_period'"],
    ),
    "optuna_grid": (
        "search: {algorithm: optuna, space: {training.lr: {grid: [0.001, 0.01]}}}\n",
        (),
        ["search.space.training.lr: grid: algorithm optuna proposes values itself", "write choice: [...]"],
    ),
    "optuna_seed_grid": (
        "search: {algorithm: optuna, space: {training.lr: {loguniform: [1.0e-4, 1.0e-2]}, other.seed: {grid: [1, "
        "2]}}}\n",
        (),
        ["search.space.other.seed: seed repeats do not mix with algorithm optuna", "re-run the best point"],
    ),
    "optuna_seed_list": (
        "other: {seed: [1, 2]}\nsearch: {algorithm: optuna, space: {training.lr: {uniform: [0.001, 0.01]}}}\n",
        (),
        ["other.seed: seed repeats do not mix with algorithm optuna"],
    ),
    "optuna_dataset_key": (
        "search: {algorithm: optuna, space: {data.labels: {choice: [majority, votes]}}}\n",
        (),
        ["search.space.data.labels: algorithm optuna proposes values as trials start", "algorithm: grid_random"],
    ),
    "class_names_with_slash": (
        "data: {class_names: [cat, a/b]}\n",
        (),
        ["data.class_names: [1] 'a/b': a class name must be non-empty and hold no '/'"],
    ),
    "labels_unknown": ("data: {labels: soft}\n", (), ["data.labels: must be one of 'majority' or 'votes'"]),
    "optuna_empty_space": (
        "search: {algorithm: optuna, num_samples: 4}\n",
        (),
        ["search: space: algorithm optuna needs at least one searched key"],
    ),
    "unknown_algorithm": (
        "search: {algorithm: optona}\n",
        (),
        ["search.algorithm: must be one of 'grid_random', 'optuna', 'pbt' or 'pb2', got 'optona'", "did you mean"],
    ),
    "max_concurrent_without_searcher": (
        "search: {max_concurrent: 2}\n",
        (),
        ["search: max_concurrent: only applies to an adaptive search", "--max-concurrent N"],
    ),
    # population based training: what it cannot change mid-run, and what makes no sense with it
    "pbt_architecture": (
        PBT + "    model.arch: {choice: [resnet18, resnet34]}\n",
        (),
        [
            "search.space.model.arch: algorithm pbt changes knobs mid-run and model.arch cannot change once a member "
            "has trained (the weights a member copies belong to one architecture)",
            "search it with algorithm: optuna",
        ],
    ),
    "pbt_image_size": (
        PBT + "    data.img_size: {choice: [24, 48]}\n",
        (),
        [
            "search.space.data.img_size: algorithm pbt changes knobs mid-run",
            "the weights were trained at one input size",
        ],
    ),
    "pbt_batch_size": (
        PBT + "    training.batch_size: {choice: [16, 32]}\n",
        (),
        ["search.space.training.batch_size: algorithm pbt", "the length of the one-cycle schedule"],
    ),
    "pbt_with_asha": (
        PBT + "  scheduler: {type: asha}\n",
        (),
        ["search.scheduler: asha does not mix with algorithm pbt", "remove search.scheduler"],
    ),
    "pbt_seed_repeats": (
        "other: {seed: [1, 2]}\n" + PBT,
        (),
        ["other.seed: seed repeats do not mix with algorithm pbt: members are ranked and copied by one score each"],
    ),
    "pbt_without_interval": (
        "training: {epochs: 6}\nsearch: {algorithm: pbt, space: {training.lr: {loguniform: [1.0e-4, 1.0e-2]}}}\n",
        (),
        ["search.perturbation_interval: algorithm pbt needs it", "e.g. perturbation_interval: 2"],
    ),
    "pbt_interval_past_the_end": (
        PBT.replace("perturbation_interval: 2", "perturbation_interval: 6"),
        (),
        ["search.perturbation_interval: 6 epochs, but training.epochs is 6", "make it at most 3"],
    ),
    "pb2_categorical": (
        PBT.replace("algorithm: pbt", "algorithm: pb2") + "    loss.type: {choice: [ce, focal]}\n",
        (),
        ["search.space.loss.type: choice: pb2 models each knob as a number", "use algorithm: pbt"],
    ),
    "pbt_max_concurrent": (
        PBT.replace("algorithm: pbt", "algorithm: pbt\n  max_concurrent: 2"),
        (),
        ["search.max_concurrent: does not mix with algorithm pbt", "the resources fit"],
    ),
    "population_field_for_optuna": (
        "search: {algorithm: optuna, population: 3, space: {training.lr: {uniform: [0.001, 0.01]}}}\n",
        (),
        ["search: population: only applies to population based training (algorithm: pbt or pb2), not optuna"],
    ),
    "set_without_equals": ("{}\n", ("training.lr",), ["--set training.lr: expected KEY=VALUE"]),
    "set_unknown_key": (
        "{}\n",
        ("training.lrr=0.1",),
        ["--set training.lrr=0.1: training.lrr: unknown key", "did you mean 'lr'"],
    ),
    "set_bad_value": ("{}\n", ("training.lr=-1",), ["--set training.lr=-1: training.lr: must be > 0.0, got -1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_each_bad_config_has_its_own_clear_message(case, tmp_path, run_cli):
    text, overrides, fragments = BAD_CONFIGS[case]
    path = write(tmp_path, "bad.yaml", text)
    problems = problems_of(path, overrides)
    assert any(all(f in line for f in fragments) for line in problems), problems
    # the CLI says it in one message with exit code 2 and no traceback
    result = run_cli("validate", path, *[a for o in overrides for a in ("--set", o)])
    assert result.code == 2
    assert all(f in result.err for f in fragments)
    assert "Traceback" not in result.err and result.out == ""


def test_bad_config_messages_are_distinct():
    messages = [tuple(frags) for _, _, frags in BAD_CONFIGS.values()]
    assert len(set(messages)) == len(messages) >= 20


def test_extends_cycle_is_an_error(tmp_path, run_cli):
    write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    [problem] = problems_of(tmp_path / "a.yaml")
    assert "extends: cycle" in problem and "a.yaml" in problem and "b.yaml" in problem
    assert run_cli("validate", tmp_path / "a.yaml").code == 2


def test_missing_extends_file_names_the_file_and_where_it_looked(tmp_path):
    path = write(tmp_path, "c.yaml", "extends: nope.yaml\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: extends: nope.yaml not found") and str(tmp_path / "nope.yaml") in problem


def test_missing_config_file(tmp_path, run_cli):
    result = run_cli("validate", tmp_path / "absent.yaml")
    assert result.code == 2 and "absent.yaml: file not found" in result.err


def test_every_problem_is_reported_at_once(tmp_path, run_cli):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        trainig: {}
        training: {lr: -1, epochs: 0}
        model: {arch: nope_net}
        search: {space: {training.lr: {grid: [-1]}}}
        """,
    )
    assert len(problems_of(path)) == 5
    result = run_cli("validate", path)
    assert result.err.startswith("error: 5 problems:")


def test_a_problem_inherited_from_the_base_file_names_the_base_file(tmp_path):
    write(tmp_path, "base.yaml", "training: {lr: -1}\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nmodel: {dropout: 2}\n")
    problems = problems_of(child)
    assert f"{tmp_path / 'base.yaml'}: training.lr: must be > 0.0, got -1" in problems
    assert f"{child}: model.dropout: must be < 1.0, got 2" in problems


def test_validate_several_files_reports_the_bad_ones_and_exits_2(tmp_path, run_cli):
    good = write(tmp_path, "good.yaml", "training: {lr: 0.01}\n")
    bad = write(tmp_path, "bad.yaml", "training: {lr: 0}\n")
    result = run_cli("validate", good, bad)
    assert result.code == 2 and "bad.yaml: training.lr" in result.err and "good.yaml" not in result.err


def test_cli_subprocess_exit_code_and_no_traceback(subprocesses, tmp_path):
    bad = write(tmp_path, "bad.yaml", "training: {lr: -0.001}\n")
    proc = subprocesses.run(
        [sys.executable, "-m", "raytrain", "validate", str(bad)], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: training.lr: must be > 0.0, got -0.001"


# --- resolved form and hash --------------------------------------------------------------------------


def test_validate_prints_the_resolved_config_which_loads_back_identically(tmp_path, run_cli):
    result = run_cli("validate", CONFIGS_DIR / "lr_high.yaml")
    assert result.code == 0
    resolved = yaml.safe_load(result.out)
    assert "extends" not in resolved and resolved["training"]["lr"] == 1e-3
    again = load_config(write(tmp_path, "resolved.yaml", result.out))
    original = load_config(CONFIGS_DIR / "lr_high.yaml")
    assert to_yaml(again).replace("resolved", "lr_high") == to_yaml(original)
    assert config_hash(again) == config_hash(original)


def test_hash_covers_what_changes_results_and_nothing_else():
    base = ExperimentConfig()
    same = base.model_copy(deep=True)
    same.description = "new words"
    same.name = "renamed"
    same.resources.cpu = 4
    same.other.workers = 1
    assert config_hash(same) == config_hash(base)
    for section, key, value in [("training", "lr", 1e-3), ("other", "seed", 7), ("augmentation", "hflip", 0.0)]:
        changed = base.model_copy(deep=True)
        setattr(getattr(changed, section), key, value)
        assert config_hash(changed) != config_hash(base), f"{section}.{key}"


def test_a_key_added_later_changes_no_hash_at_its_default():
    """Runs finished before a data key existed (data.labels, data.class_names,
    data.drop_cross_split_duplicates) ran as its default does: their hash, computed then without the
    key, must still match, or every one of them would look stale."""
    import hashlib
    import json

    from raytrain.config.schema import ADDED_KEY_DEFAULTS, RESULT_NEUTRAL_KEYS, RESULT_SECTIONS, resolved_dict

    base = ExperimentConfig()
    before = {section: dict(resolved_dict(base)[section]) for section in RESULT_SECTIONS}
    for knob in [*ADDED_KEY_DEFAULTS, *RESULT_NEUTRAL_KEYS]:
        section, key = knob.split(".")
        before[section].pop(key)
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert config_hash(base) == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    # away from its default, each key changes the data a trial sees, so the hash
    for key, value in [("drop_cross_split_duplicates", True), ("labels", "votes"), ("class_names", ["a", "b"])]:
        changed = base.model_copy(deep=True)
        setattr(changed.data, key, value)
        assert config_hash(changed) != config_hash(base), key


def test_hash_is_stable_across_processes(subprocesses):
    code = "from raytrain.config import ExperimentConfig, config_hash; print(config_hash(ExperimentConfig()))"
    runs = {subprocesses.run([sys.executable, "-c", code], capture_output=True, text=True).stdout for _ in range(2)}
    assert len(runs) == 1 and runs.pop().strip() == config_hash(ExperimentConfig())
