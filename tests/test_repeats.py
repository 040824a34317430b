"""Seeds as a first-class axis: `other.seed: [..]` expands into grouped repeats, `compare` reports
n, mean, std and intervals per group and a paired, Holm-corrected comparison to the baseline, and
every trial saves per-image predictions for bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from raytrain import artifacts, results
from raytrain.config import load_config
from raytrain.config.search_space import expand
from raytrain.results import analysis
from tests.conftest import CONFIGS_DIR, write_config


def test_a_seed_list_becomes_one_trial_per_seed_grouped_under_the_experiment():
    config = load_config(CONFIGS_DIR / "baseline.yaml", ["other.seed=[1, 2, 3]"])
    members = expand(config)
    assert [m.name for m in members] == ["baseline/seed-1", "baseline/seed-2", "baseline/seed-3"]
    assert [m.other.seed for m in members] == [1, 2, 3]
    assert {m.training.lr for m in members} == {config.training.lr}


@pytest.fixture(scope="module")
def repeated_runs(ray_session, synthetic_root, tmp_path_factory):
    from raytrain.cli import main

    root = tmp_path_factory.mktemp("repeats")
    configs = root / "configs"
    write_config(configs, "base", other="seed: [1, 2, 3], workers: 1")
    write_config(
        configs, "other_lr", training="epochs: 1, batch_size: 16, lr: 0.006", other="seed: [1, 2, 3], workers: 1"
    )
    runs = root / "runs"
    assert main(["sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"]) == 0
    return runs


def test_repeats_land_in_one_folder_per_experiment_with_per_image_predictions(repeated_runs, tiny_dataset):
    for group in ("base", "other_lr"):
        for seed in (1, 2, 3):
            member = f"{group}/seed-{seed}"
            assert artifacts.is_complete(repeated_runs, member)
            for split, name in (("val", artifacts.VAL_PREDICTIONS), ("test", artifacts.TEST_PREDICTIONS)):
                predictions = artifacts.read_predictions(repeated_runs / group / f"seed-{seed}" / name)
                assert set(predictions) == {"label", "predicted", "probability"}
                assert np.array_equal(predictions["label"], tiny_dataset.splits[split].labels)
                assert ((predictions["probability"] > 0) & (predictions["probability"] <= 1)).all()
            # the saved predictions reproduce the stored best-epoch metric
            best = artifacts.read_json(repeated_runs / group / f"seed-{seed}" / artifacts.BEST_METRICS)
            val = artifacts.read_predictions(repeated_runs / group / f"seed-{seed}" / artifacts.VAL_PREDICTIONS)
            assert np.mean(val["label"] == val["predicted"]) == pytest.approx(best["accuracy"])


def test_the_summary_has_n_mean_std_and_a_t_interval_per_group(repeated_runs):
    frame = results.load(repeated_runs)
    assert set(frame["group"]) == {"base", "other_lr"} and len(frame) == 6
    summary = analysis.summarize_repeats(frame).set_index("group")
    values = frame.loc[frame["group"] == "base", "val/macro_f1"].to_numpy()
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
    row = summary.loc["base"]
    assert row["n"] == 3 and row["macro_f1/mean"] == pytest.approx(values.mean())
    assert row["macro_f1/std"] == pytest.approx(values.std(ddof=1))
    if values.std() > 0:
        assert (row["macro_f1/low"], row["macro_f1/high"]) == pytest.approx((low, high))
    assert {"accuracy/low", "f1/happy/mean", "f1/disgusted/high"} <= set(summary.columns)


def test_compare_groups_repeats_and_tests_the_baseline_over_matched_seeds(repeated_runs, run_cli):
    result = run_cli("compare", "--runs-dir", repeated_runs, "--baseline", "base")
    assert result.code == 0, result.err
    assert "2 experiment(s) over their seeds" in result.out and "95% interval" in result.out
    line = next(line for line in result.out.splitlines() if " other_lr " in line)
    frame = results.load(repeated_runs)
    by_seed = frame.pivot_table(index="other.seed", columns="group", values="val/macro_f1")
    differences = by_seed["other_lr"] - by_seed["base"]
    assert f"{differences.mean():+.3f}" in line
    t = scipy_stats.ttest_rel(by_seed["other_lr"], by_seed["base"])
    comparisons = analysis.compare_with_baseline(frame, repeated_runs, "base").set_index("group")
    if not np.isnan(t.pvalue):
        assert comparisons.loc["other_lr", "p_value"] == pytest.approx(t.pvalue)
    assert comparisons.loc["other_lr", "method"] == "paired t over seeds"
    assert "Holm" in result.out


def test_compare_export_with_repeats_is_the_group_table_shown(repeated_runs, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    shown, runs = tmp_path / "groups.parquet", tmp_path / "runs.csv"
    result = run_cli(
        "compare", "--runs-dir", repeated_runs, "--baseline", "base", "--export", shown, "--export-runs", runs
    )
    assert result.code == 0, result.err
    assert all(len(line) <= 120 for line in result.out.splitlines() if line.startswith("│"))
    table = pd.read_parquet(shown).set_index("experiment")
    assert set(table.index) == {"base", "other_lr"} and (table["n"] == 3).all()
    summary = analysis.summarize_repeats(results.load(repeated_runs)).set_index("group")
    for statistic in ("mean", "std", "low", "high"):
        assert table.loc["other_lr", f"val/macro_f1/{statistic}"] == pytest.approx(
            summary.loc["other_lr", f"macro_f1/{statistic}"]
        )
    comparisons = analysis.compare_with_baseline(results.load(repeated_runs), repeated_runs, "base").set_index("group")
    assert table.loc["other_lr", "delta"] == pytest.approx(comparisons.loc["other_lr", "diff"])
    assert table.loc["other_lr", "p_holm"] == pytest.approx(comparisons.loc["other_lr", "p_holm"])
    assert pd.isna(table.loc["base", "delta"]), "the baseline is not compared with itself"
    frame = results.load(repeated_runs)
    assert set(results.hyperparameter_columns(frame)) <= set(table.columns)
    assert list(table.loc["base", "other.seed"]) == [1, 2, 3], "the seeds the group's statistics are over"
    members = frame[frame["group"] == "other_lr"]
    for metric in ("precision", "recall", "f1", "support"):
        for statistic in ("mean", "std", "low", "high"):
            assert {f"val/{metric}/{c}/{statistic}" for c in results.class_names(frame)} <= set(table.columns)
        assert table.loc["other_lr", f"val/{metric}/happy/mean"] == pytest.approx(members[f"val/{metric}/happy"].mean())
    line = next(line for line in result.out.splitlines() if " other_lr " in line)
    assert f"{table.loc['other_lr', 'val/macro_f1/mean']:.3f} ± {table.loc['other_lr', 'val/macro_f1/std']:.3f}" in line
    assert " other_lr " in line and " base " in result.out, "names show whole at 120 columns"
    every = pd.read_csv(runs)
    assert len(every) == 6 and set(every["other.seed"]) == {1, 2, 3}, "one row per seed"


def test_single_runs_are_compared_by_a_paired_bootstrap_over_images(tiny_runs, run_cli):
    frame = results.load(tiny_runs)
    comparisons = analysis.compare_with_baseline(frame, tiny_runs, "alpha").set_index("group")
    assert set(comparisons.index) == {"beta", "gamma"}
    assert (comparisons["method"] == "paired bootstrap over images").all()
    values = frame.set_index("experiment")["val/macro_f1"]
    for name in ("beta", "gamma"):
        assert comparisons.loc[name, "diff"] == pytest.approx(values[name] - values["alpha"])
        assert comparisons.loc[name, "low"] <= comparisons.loc[name, "diff"] <= comparisons.loc[name, "high"]
        assert comparisons.loc[name, "p_holm"] >= comparisons.loc[name, "p_value"]
    result = run_cli("compare", "--runs-dir", tiny_runs, "--baseline", "alpha")
    assert result.code == 0 and "p (Holm)" in result.out
