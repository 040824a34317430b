"""raytrain.results and `raytrain compare` on a real tiny sweep's runs/: the documented columns,
best-epoch (not last-epoch) values, per-class consistency, round-trips, exports and deltas."""

from __future__ import annotations

import pandas as pd
import pytest

from raytrain import results
from raytrain.data import CANONICAL_CLASSES

EXPERIMENTS = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def frame(tiny_runs) -> pd.DataFrame:
    return results.load(tiny_runs)


def test_load_has_one_row_per_experiment_with_the_documented_columns(frame):
    assert sorted(frame["experiment"]) == EXPERIMENTS
    documented = {
        "experiment",
        "status",
        "sweep",
        "best_epoch",
        "epochs_run",
        "duration_s",
        "schema_version",
        "training.lr",
        "training.epochs",
        "loss.type",
        "model.arch",
        "augmentation.mixup_alpha",
        "other.seed",
        "val/accuracy",
        "val/macro_f1",
        "val/loss",
        "test/accuracy",
        "test/macro_f1",
    }
    assert documented <= set(frame.columns)
    for split in ("val", "test"):
        for metric in ("precision", "recall", "f1", "support"):
            assert {f"{split}/{metric}/{c}" for c in CANONICAL_CLASSES} <= set(frame.columns)
    assert (frame["status"] == "completed").all()
    assert frame["val/macro_f1"].is_monotonic_decreasing, "sorted best first"
    assert frame.set_index("experiment").loc["beta", "training.lr"] == 0.001


def test_best_epoch_values_are_the_best_epoch_in_history_not_the_last(frame, tiny_runs):
    history = results.load_history(tiny_runs)
    assert {"experiment", "epoch", "train/loss", "val/macro_f1", "val/loss", "lr"} <= set(history.columns)
    for _, row in frame.iterrows():
        epochs = history[history["experiment"] == row["experiment"]]
        assert len(epochs) == row["epochs_run"]
        best = epochs.loc[epochs["val/macro_f1"].idxmax()]
        assert row["best_epoch"] == best["epoch"]
        assert row["val/macro_f1"] == pytest.approx(best["val/macro_f1"])
        assert row["val/accuracy"] == pytest.approx(best["val/accuracy"])


def test_macro_f1_recomputed_from_the_per_class_rows_equals_the_stored_value(frame, tiny_runs):
    per_class = results.load_per_class(tiny_runs)
    assert list(per_class.columns[:7]) == ["experiment", "split", "class", "precision", "recall", "f1", "support"]
    assert len(per_class) == len(EXPERIMENTS) * 2 * len(CANONICAL_CLASSES)
    recomputed = per_class.groupby(["experiment", "split"])["f1"].mean()  # macro: the mean over classes
    for _, row in frame.iterrows():
        for split in ("val", "test"):
            assert recomputed[(row["experiment"], split)] == pytest.approx(row[f"{split}/macro_f1"])


def test_exports_round_trip_through_parquet_and_csv(frame, tiny_runs, tmp_path):
    written = results.export(tiny_runs)
    assert {p.name for p in written} == {"results.parquet", "results.csv", "history.parquet", "per_class.parquet"}
    parquet = pd.read_parquet(tiny_runs / "results.parquet")
    pd.testing.assert_frame_equal(parquet, frame)
    csv = pd.read_csv(tiny_runs / "results.csv")
    assert list(csv.columns) == list(frame.columns)
    pd.testing.assert_series_equal(csv["val/macro_f1"], frame["val/macro_f1"])
    assert (pd.read_parquet(tiny_runs / "per_class.parquet")["schema_version"] == results.SCHEMA_VERSION).all()


def test_compare_table_shows_what_differs_and_the_baseline_deltas(frame, tiny_runs, run_cli):
    result = run_cli("compare", "--runs-dir", tiny_runs, "--baseline", "alpha")
    assert result.code == 0, result.err
    assert "training.lr" in result.out and "loss.type" in result.out, "the knobs that differ"
    assert "model.arch" not in result.out, "knobs equal in every row are left out"
    values = frame.set_index("experiment")["val/macro_f1"]
    for name in ("beta", "gamma"):
        delta = values[name] - values["alpha"]
        line = next(line for line in result.out.splitlines() if f" {name} " in line)
        assert f"{delta:+.3f}" in line
    assert result.out.index(" " + frame["experiment"].iloc[0] + " ") < result.out.index(
        " " + frame["experiment"].iloc[-1] + " "
    )


def test_compare_export_writes_the_table_shown_and_export_runs_every_column(
    frame, tiny_runs, run_cli, tmp_path, capsys
):
    shown, runs = tmp_path / "compare.csv", tmp_path / "runs.parquet"
    result = run_cli(
        "compare", "--runs-dir", tiny_runs, "--baseline", "alpha", "--export", shown, "--export-runs", runs
    )
    assert result.code == 0, result.err
    table = pd.read_csv(shown)
    lines = result.out.splitlines()
    # the rows in the order the terminal showed them, with the same numbers
    order = sorted(table["experiment"], key=lambda name: next(i for i, line in enumerate(lines) if f" {name} " in line))
    assert list(table["experiment"]) == order and list(table["rank"]) == [1, 2, 3]
    assert {
        "training.lr",
        "loss.type",
        "val/accuracy",
        "val/macro_f1",
        "delta",
        "delta/low",
        "delta/high",
        "p_holm",
        "best_epoch",
        "duration_s",
        "status",
    } <= set(table.columns)
    # the seed's export: every hyperparameter (those equal in every row too) and per-emotion precision, recall, F1
    assert set(results.hyperparameter_columns(frame)) <= set(table.columns) and "model.arch" in table
    for metric in ("precision", "recall", "f1", "support"):
        assert {f"val/{metric}/{emotion}" for emotion in CANONICAL_CLASSES} <= set(table.columns)
    assert not any(c.startswith("test/") for c in table.columns), "the chosen split's metrics"
    for _, row in table.iterrows():
        line = next(line for line in lines if f" {row['experiment']} " in line)
        assert f"{row['val/macro_f1']:.3f}" in line
        if row["experiment"] != "alpha":
            assert f"{row['delta']:+.3f}" in line and f"[{row['delta/low']:+.3f}, {row['delta/high']:+.3f}]" in line
    assert set(CANONICAL_CLASSES) <= {c.rsplit("/", 1)[1] for c in table.columns if c.startswith("val/f1/")}
    every = pd.read_parquet(runs)
    for metric in ("precision", "recall", "f1"):
        for emotion in CANONICAL_CLASSES:
            assert f"val/{metric}/{emotion}" in every.columns and f"test/{metric}/{emotion}" in every.columns
    assert {"training.lr", "training.batch_size", "loss.type", "augmentation.hflip", "data.img_size"} <= set(
        every.columns
    )
    assert len(every) == 3
    with pytest.raises(SystemExit) as bad:
        run_cli("compare", "--runs-dir", tiny_runs, "--export", tmp_path / "table.xlsx")
    assert bad.value.code == 2 and "name a .csv or .parquet file" in capsys.readouterr().err


@pytest.mark.parametrize("width", [80, 100, 120])
def test_compare_fits_the_terminal_names_always_show_and_a_note_says_what_was_left_out(
    tiny_runs, run_cli, monkeypatch, width
):
    monkeypatch.setenv("COLUMNS", str(width))
    result = run_cli("compare", "--runs-dir", tiny_runs, "--baseline", "alpha")
    assert result.code == 0, result.err
    table_lines = [line for line in result.out.splitlines() if line.startswith(("│", "┃", "┏", "└"))]
    assert table_lines and max(len(line) for line in table_lines) <= width
    for name in EXPERIMENTS:
        assert any(f" {name} " in line for line in table_lines), f"{name} is shown whole at {width} columns"
    assert "macro F1" in result.out and "p (Holm)" in result.out, "the headline columns are never dropped"
    monkeypatch.setenv("COLUMNS", "400")
    natural = run_cli("compare", "--runs-dir", tiny_runs, "--baseline", "alpha").out
    assert "left out" not in natural
    if "left out to fit" in result.out:
        note = result.out.split("left out to fit", 1)[1]
        assert note.startswith(f" {width} columns: per-class F1"), "per-class F1 goes first"
    else:
        assert max(len(line) for line in natural.splitlines()) <= width


def test_compare_by_test_warns_and_per_class_shows_the_matrix(tiny_runs, run_cli):
    result = run_cli("compare", "--runs-dir", tiny_runs, "--split", "test")
    assert result.code == 0 and "warning: ranking by test metrics" in result.err
    result = run_cli("compare", "--runs-dir", tiny_runs, "--per-class", "--top", "2")
    assert result.code == 0
    assert all(c in result.out for c in CANONICAL_CLASSES) and "macro" in result.out


def test_compare_errors_are_clear(tiny_runs, run_cli, tmp_path):
    result = run_cli("compare", "--runs-dir", tmp_path / "empty")
    assert result.code == 2 and "no experiments yet" in result.err
    result = run_cli("compare", "--runs-dir", tiny_runs, "--baseline", "nope")
    assert result.code == 2 and "--baseline nope: no such experiment; choose from" in result.err
    result = run_cli("compare", "--runs-dir", tiny_runs, "--sort", "nonsense")
    assert result.code == 2 and "--sort nonsense: no such metric" in result.err
