"""`raytrain compare --export`: the rows shown, in the order shown, with every column the seed's
export promised (every hyperparameter and per-emotion precision, recall, F1 and support of the split;
for groups of seeds their mean, std and interval) and the baseline comparison's numbers, while the
terminal table stays as it was and `--export-runs` stays one row per run.

On runs folders written here, file by file as a finished trial leaves them (no Ray, no training):
labels and predictions are drawn, and every metric is counted from them, so the paired tests run
on real per-image predictions."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

from raytrain import artifacts, results
from raytrain.results import analysis, stats
from raytrain.results.leaderboard import compare
from tests.conftest import tiny_config

CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
PER_EMOTION = ("precision", "recall", "f1", "support")
IMAGES = {"val": 140, "test": 105}
# name -> (knobs that differ, how often a prediction is right): lr and loss differ, the rest is the baseline's
PLAIN = {
    "alpha": ({}, 0.55),
    "beta": ({"training": {"lr": 0.001}}, 0.70),
    "gamma": ({"loss": {"type": "focal"}}, 0.40),
    "delta_run": ({"training": {"lr": 0.01}, "loss": {"type": "focal"}}, 0.62),
}
REPEATED = {
    "base": ({}, 0.5),
    "other_lr": ({"training": {"lr": 0.006}}, 0.65),
    "solo": ({"model": {"dropout": 0.5}}, 0.58),
}
SEEDS = {"base": [1, 2, 3], "other_lr": [1, 2, 3], "solo": [7]}


def labels_of(split: str) -> np.ndarray:
    """The split's true classes, the same for every run (as the same data gives): unequal class sizes."""
    rng = np.random.default_rng({"val": 1, "test": 2}[split])
    return rng.choice(len(CLASSES), size=IMAGES[split], p=[0.2, 0.05, 0.15, 0.25, 0.15, 0.1, 0.1])


def metrics_file(labels: np.ndarray, predicted: np.ndarray, split: str, epoch: int) -> tuple[dict, np.ndarray]:
    """best_metrics.json / test_metrics.json as a trial writes them, counted from the predictions."""
    k = len(CLASSES)
    counts = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    tp, support, guessed = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros(k), where=b > 0)  # noqa: E731
    precision, recall, f1 = ratio(tp, guessed), ratio(tp, support), ratio(2 * tp, support + guessed)
    per_class = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(CLASSES)
    }
    metrics = {
        "epoch": epoch,
        "split": split,
        "accuracy": float(tp.sum() / counts.sum()),
        "macro_f1": float(f1.mean()),
        "loss": float(1.5 - f1.mean()),
        "class_names": list(CLASSES),
        "per_class": per_class,
    }
    return metrics, counts


def publish(runs: Path, name: str, changes: dict, right: float, seed: int) -> None:
    """runs/<name>/ as a finished trial leaves it: config, best.pt, metrics, confusion matrices,
    history and per-image predictions of val and test."""
    folder = runs / name
    folder.mkdir(parents=True)
    config = tiny_config() | {"name": name}
    for section, values in changes.items():
        config[section] = config[section] | values
    config["other"] = config["other"] | {"seed": seed}
    (folder / artifacts.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    zipfile.ZipFile(folder / artifacts.BEST_WEIGHTS, "w").close()  # readers check it is a zip, no more
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    files = {
        "val": (artifacts.BEST_METRICS, artifacts.BEST_CONFUSION, artifacts.VAL_PREDICTIONS),
        "test": (artifacts.TEST_METRICS, artifacts.TEST_CONFUSION, artifacts.TEST_PREDICTIONS),
    }
    for split, (metrics_name, confusion_name, predictions_name) in files.items():
        labels = labels_of(split)
        predicted = np.where(rng.random(len(labels)) < right, labels, rng.integers(0, len(CLASSES), len(labels)))
        metrics, counts = metrics_file(labels, predicted, split, epoch=2)
        artifacts.write_json(folder / metrics_name, metrics)
        np.save(folder / confusion_name, counts)
        probabilities = np.eye(len(CLASSES))[predicted]
        artifacts.write_predictions(folder / predictions_name, labels, probabilities)
        if split == "val":
            best = metrics["macro_f1"]
    history = [
        {"epoch": 1, "val/macro_f1": best - 0.05, "val/accuracy": 0.3, "epoch_time_s": 1.5},
        {"epoch": 2, "val/macro_f1": best, "val/accuracy": 0.4, "epoch_time_s": 2.0},
    ]
    artifacts.write_json(folder / artifacts.HISTORY, history)


@pytest.fixture(scope="module")
def plain_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("plain") / "runs"
    for name, (changes, right) in PLAIN.items():
        publish(runs, name, changes, right, seed=42)
    return runs


@pytest.fixture(scope="module")
def repeated_runs(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("repeated") / "runs"
    for group, (changes, right) in REPEATED.items():
        for seed in SEEDS[group]:
            publish(runs, f"{group}/seed-{seed}", changes, right + 0.02 * seed, seed=seed)
    return runs


def shown_order(out: str, names) -> list[str]:
    """The names in the order the terminal table listed them."""
    lines = [line for line in out.splitlines() if line.startswith("│")]
    return sorted(names, key=lambda name: next(i for i, line in enumerate(lines) if f" {name} " in line))


def every_config_key(frame: pd.DataFrame) -> list[str]:
    return results.hyperparameter_columns(frame)


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_plain_export_holds_the_rows_shown_with_every_hyperparameter_and_per_emotion_metric(
    plain_runs, run_cli, tmp_path, split
):
    out = tmp_path / "results.csv"
    result = run_cli("compare", "--runs-dir", plain_runs, "--split", split, "--export", out)
    assert result.code == 0, result.err
    table = pd.read_csv(out)
    frame = results.load(plain_runs).set_index("experiment")
    assert list(table["experiment"]) == shown_order(result.out, PLAIN), "one row per experiment, in the order shown"
    assert list(table["experiment"]) == list(frame[f"{split}/macro_f1"].sort_values(ascending=False).index)
    assert list(table["rank"]) == [1, 2, 3, 4]
    table = table.set_index("experiment")
    knobs = every_config_key(frame)
    assert len(knobs) > 30 and set(knobs) <= set(table.columns), "every hyperparameter, not only those that differ"
    for knob in ("model.arch", "training.lr", "loss.type", "augmentation.hflip", "data.img_size", "other.seed"):
        assert (table[knob].astype(str) == frame.loc[table.index, knob].astype(str)).all(), knob
    for cls, count in zip(CLASSES, np.bincount(labels_of(split), minlength=len(CLASSES))):
        for metric in PER_EMOTION:
            column = f"{split}/{metric}/{cls}"
            assert column in table.columns, f"{column}: per-emotion {metric} is exported"
            assert table[column].to_numpy() == pytest.approx(frame.loc[table.index, column].to_numpy())
        assert (table[f"{split}/support/{cls}"] == count).all(), "support: the split's images of the class"
    for metric in ("accuracy", "macro_f1", "loss"):
        assert table[f"{split}/{metric}"].to_numpy() == pytest.approx(frame.loc[table.index, f"{split}/{metric}"])
    other = "test" if split == "val" else "val"
    assert not any(c.startswith(f"{other}/") for c in table.columns), "the metrics of the chosen split only"
    assert {"best_epoch", "duration_s", "status", "epochs_run"} <= set(table.columns)


def test_a_plain_export_with_a_baseline_holds_the_difference_and_the_whole_paired_test(plain_runs, run_cli, tmp_path):
    out = tmp_path / "results.parquet"
    result = run_cli("compare", "--runs-dir", plain_runs, "--baseline", "alpha", "--export", out)
    assert result.code == 0, result.err
    table = pd.read_parquet(out).set_index("experiment")
    frame = results.load(plain_runs)
    comparisons = analysis.compare_with_baseline(frame, plain_runs, "alpha").set_index("group")
    assert (comparisons["method"] == "paired bootstrap over images").all()
    for name in ("beta", "gamma", "delta_run"):
        expected = comparisons.loc[name]
        for column, source in {"delta": "diff", "delta/low": "low", "delta/high": "high"}.items():
            assert table.loc[name, column] == pytest.approx(expected[source])
        assert table.loc[name, "p_value"] == pytest.approx(expected["p_value"])
        assert table.loc[name, "p_holm"] == pytest.approx(expected["p_holm"])
        assert table.loc[name, "n_pairs"] == IMAGES["val"] and table.loc[name, "paired_test"] == expected["method"]
        line = next(line for line in result.out.splitlines() if f" {name} " in line)
        assert f"{table.loc[name, 'delta']:+.3f}" in line, "the export's Δ is the one shown"
    assert table.loc["alpha", ["delta", "p_value", "p_holm", "n_pairs"]].isna().all(), "no test of alpha with itself"
    assert {f"val/{m}/{c}" for m in PER_EMOTION for c in CLASSES} <= set(table.columns)


def test_the_export_changes_only_the_file_the_terminal_table_is_the_same(plain_runs, run_cli, tmp_path):
    plain = run_cli("compare", "--runs-dir", plain_runs, "--baseline", "alpha")
    exported = run_cli("compare", "--runs-dir", plain_runs, "--baseline", "alpha", "--export", tmp_path / "t.csv")
    assert exported.out.startswith(plain.out) and "wrote" not in plain.out
    assert "every config key and val metric (4 rows," in exported.out


def test_the_export_holds_every_column_of_the_table_shown(plain_runs, repeated_runs):
    for runs, baseline in ((plain_runs, "alpha"), (repeated_runs, "base")):
        frame = results.load(runs)
        for split in ("val", "test"):
            board = compare(frame, runs, split=split, baseline=baseline)
            assert set(board.table.columns) <= set(board.export.columns)
            assert list(board.export["experiment"]) == list(board.table["experiment"])
            pd.testing.assert_frame_equal(
                board.export[board.table.columns].reset_index(drop=True),
                board.table.reset_index(drop=True),
                check_dtype=False,
            )


def test_with_repeats_the_export_is_one_row_per_group_with_mean_std_and_interval_of_every_metric(
    repeated_runs, run_cli, tmp_path
):
    out = tmp_path / "groups.csv"
    result = run_cli("compare", "--runs-dir", repeated_runs, "--baseline", "base", "--export", out)
    assert result.code == 0, result.err
    assert "over their seeds" in result.out
    table = pd.read_csv(out)
    assert list(table["experiment"]) == shown_order(result.out, REPEATED), "one row per group, in the order shown"
    frame = results.load(repeated_runs)
    table = table.set_index("experiment")
    assert table["n"].to_dict() == {group: len(seeds) for group, seeds in SEEDS.items()}
    knobs = every_config_key(frame)
    assert set(knobs) <= set(table.columns)
    assert table.loc["other_lr", "training.lr"] == 0.006 and table.loc["solo", "model.dropout"] == 0.5
    assert table.loc["base", "other.seed"] == "[1, 2, 3]" and table.loc["solo", "other.seed"] == "[7]"
    for group in REPEATED:
        members = frame[frame["group"] == group]
        for cls in CLASSES:
            for metric in PER_EMOTION:
                values = members[f"val/{metric}/{cls}"].to_numpy(float)
                mean, std = table.loc[group, f"val/{metric}/{cls}/mean"], table.loc[group, f"val/{metric}/{cls}/std"]
                assert mean == pytest.approx(values.mean())
                if len(values) == 1:
                    assert np.isnan(std) and np.isnan(table.loc[group, f"val/{metric}/{cls}/low"])
                    continue
                assert std == pytest.approx(values.std(ddof=1))
                if values.std() > 0:
                    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=mean, scale=scipy_stats.sem(values))
                    assert table.loc[group, f"val/{metric}/{cls}/low"] == pytest.approx(low)
                    assert table.loc[group, f"val/{metric}/{cls}/high"] == pytest.approx(high)
                else:
                    assert table.loc[group, f"val/{metric}/{cls}/low"] == pytest.approx(mean)
        for metric in ("accuracy", "macro_f1", "loss"):
            assert table.loc[group, f"val/{metric}/mean"] == pytest.approx(members[f"val/{metric}"].mean())
    comparisons = analysis.compare_with_baseline(frame, repeated_runs, "base").set_index("group")
    expected = comparisons.loc["other_lr"]
    assert expected["method"] == "paired t over seeds"
    for column, source in {"delta": "diff", "delta/low": "low", "delta/high": "high", "p_holm": "p_holm"}.items():
        assert table.loc["other_lr", column] == pytest.approx(expected[source])
    assert table.loc["other_lr", "p_value"] == pytest.approx(expected["p_value"])
    assert table.loc["other_lr", "n_pairs"] == 3 and table.loc["other_lr", "paired_test"] == "paired t over seeds"
    assert table.loc["solo", "n_pairs"] == 0 and pd.isna(table.loc["solo", "p_value"]), "no seed in common"
    assert table.loc["base", ["delta", "p_value", "n_pairs", "paired_test"]].isna().all()
    assert not any(c.startswith("test/") for c in table.columns)


def test_with_repeats_a_parquet_export_keeps_the_seeds_as_a_list_and_the_test_split(repeated_runs, run_cli, tmp_path):
    out = tmp_path / "groups.parquet"
    result = run_cli("compare", "--runs-dir", repeated_runs, "--split", "test", "--export", out)
    assert result.code == 0, result.err
    table = pd.read_parquet(out).set_index("experiment")
    assert list(table.loc["base", "other.seed"]) == [1, 2, 3]
    assert {f"test/{m}/{c}/{s}" for m in PER_EMOTION for c in CLASSES for s in ("mean", "std", "low", "high")} <= set(
        table.columns
    )
    assert (table[[f"test/support/{c}/mean" for c in CLASSES]].to_numpy() == np.bincount(labels_of("test"))).all()
    assert "delta" not in table, "no baseline, no difference"


@pytest.mark.parametrize("which", ["plain_runs", "repeated_runs"])
def test_export_runs_is_still_one_row_per_run_with_every_column(which, request, run_cli, tmp_path):
    runs = request.getfixturevalue(which)
    out = tmp_path / "runs.parquet"
    result = run_cli("compare", "--runs-dir", runs, "--export", tmp_path / "t.csv", "--export-runs", out)
    assert result.code == 0, result.err
    written, frame = pd.read_parquet(out).reset_index(drop=True), results.load(runs)
    pd.testing.assert_frame_equal(written, frame.reset_index(drop=True))


def test_summarize_repeats_is_t_interval_per_group_and_metric_whatever_it_is_asked_for(repeated_runs):
    frame = results.load(repeated_runs)
    frame.loc[frame["experiment"] == "base/seed-2", "val/recall/happy"] = np.nan  # a value the file lacked
    metrics = results.split_metrics(frame, "val")
    assert metrics[:3] == ["accuracy", "macro_f1", "loss"] and "support/happy" in metrics
    summary = analysis.summarize_repeats(frame, "val", metrics).set_index("group")
    assert set(summary.index) == set(REPEATED)
    for group in REPEATED:
        members = frame[frame["group"] == group]
        assert summary.loc[group, "n"] == len(members)
        for metric in metrics:
            values = members[f"val/{metric}"].dropna().to_numpy(float)
            expected = stats.t_interval(values)
            got = summary.loc[group, [f"{metric}/{s}" for s in ("mean", "std", "low", "high")]].to_numpy(float)
            np.testing.assert_allclose(got, [expected.mean, expected.std, expected.low, expected.high], rtol=1e-12)
    default = analysis.summarize_repeats(frame, "val")
    assert list(default.columns[:6]) == ["group", "n", "accuracy/mean", "accuracy/std", "accuracy/low", "accuracy/high"]
    assert {f"f1/{c}/mean" for c in CLASSES} <= set(default.columns) and "precision/happy/mean" not in default
