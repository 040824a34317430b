"""The runs/_index cache behind results.load on a copy of the real tiny sweep's runs/: a warm read
opens no experiment file, and what it returns is what a read without the index returns after every
change a user or a sweep can make (an experiment added, re-run with --force, damaged, deleted), after
an index another process overwrote with an older state, and after a torn or foreign index file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from raytrain import artifacts, results
from raytrain.artifacts import DamagedRunsWarning
from raytrain.results import index as results_index

EXPERIMENTS = ["alpha", "beta", "gamma"]


def copy_runs(tiny_runs: Path, tmp_path: Path) -> Path:
    """A private copy of the shared sweep's runs/ without its index; best.pt files are hard links
    (every change below replaces a file, never writes into one)."""
    runs = tmp_path / "runs"

    def link_weights(source, target):
        os.link(source, target) if source.endswith(".pt") else shutil.copy2(source, target)

    shutil.copytree(
        tiny_runs,
        runs,
        ignore=shutil.ignore_patterns("checkpoint_*", results_index.INDEX_DIR),
        copy_function=link_weights,
    )
    return runs


def delete(runs: Path, experiment: str) -> None:
    """Delete an experiment the way a user clears it out: its folder and its Tune trial (a folder
    alone gone, with the trial left, reads as a trial still running)."""
    shutil.rmtree(runs / experiment)
    for params in runs.glob(f"{artifacts.TUNE_DIR}/*/*/params.json"):
        if artifacts.read_json(params)["experiment"]["name"] == experiment:
            shutil.rmtree(params.parent)


def without_index(runs: Path) -> pd.DataFrame:
    """What load() says when it has to read every folder: the reference every cached read must equal."""
    shutil.rmtree(runs / results_index.INDEX_DIR, ignore_errors=True)
    return results.load(runs)


@pytest.fixture
def reads(monkeypatch):
    """The experiment folders read (artifacts.read_experiment calls) since the fixture started."""
    seen: list[str] = []
    real = artifacts.read_experiment

    def counting(runs_dir, experiment):
        seen.append(experiment)
        return real(runs_dir, experiment)

    monkeypatch.setattr(artifacts, "read_experiment", counting)
    return seen


def test_a_warm_read_opens_no_experiment_and_equals_a_cold_one(tiny_runs, tmp_path, reads):
    runs = copy_runs(tiny_runs, tmp_path)
    cold = results.load(runs)
    assert sorted(reads) == EXPERIMENTS and (runs / results_index.INDEX_DIR / results_index.ENTRIES).is_file()
    reads.clear()
    warm = results.load(runs)
    assert reads == [], "a warm read re-read folders that had not changed"
    pd.testing.assert_frame_equal(warm, cold)
    history = results.load_history(runs)  # the first call reads the histories once, into the index's table
    reads.clear()
    pd.testing.assert_frame_equal(results.load_history(runs), history)
    assert reads == [] and set(history["experiment"]) == set(EXPERIMENTS)
    assert len(history) == cold["epochs_run"].sum()


def test_added_rerun_and_deleted_experiments_are_seen_on_the_next_read(tiny_runs, tmp_path, reads):
    runs = copy_runs(tiny_runs, tmp_path)
    before = results.load(runs).set_index("experiment")
    results.load_history(runs)
    reads.clear()

    # added: a fourth experiment (beta's files, published under a new name as a sweep would)
    config = (runs / "beta" / artifacts.CONFIG).read_text().replace("name: beta", "name: delta")
    artifacts.publish_experiment(runs, "delta", runs / "beta", config)
    # re-run with --force: alpha published again, this time with gamma's results
    config = (runs / "alpha" / artifacts.CONFIG).read_text()
    artifacts.publish_experiment(runs, "alpha", runs / "gamma", config)
    # deleted
    delete(runs, "beta")

    frame = results.load(runs)
    assert sorted(reads) == ["alpha", "delta"], "only the changed and new folders are read"
    rows = frame.set_index("experiment")
    assert sorted(rows.index) == ["alpha", "delta", "gamma"]
    assert rows.loc["alpha", "val/macro_f1"] == before.loc["gamma", "val/macro_f1"]
    assert rows.loc["delta", "val/macro_f1"] == before.loc["beta", "val/macro_f1"]
    pd.testing.assert_frame_equal(frame, without_index(runs))
    history = results.load_history(runs)
    assert set(history["experiment"]) == {"alpha", "delta", "gamma"}
    assert (history["experiment"] == "alpha").sum() == before.loc["gamma", "epochs_run"]


def test_damage_after_indexing_shows_as_damaged_and_warns_on_every_read(tiny_runs, tmp_path):
    runs = copy_runs(tiny_runs, tmp_path)
    results.load(runs)
    (runs / "alpha" / artifacts.BEST_METRICS).unlink()
    for _ in range(2):  # the second read takes alpha's entry from the index and still warns
        with pytest.warns(DamagedRunsWarning, match=r"alpha/best_metrics.json: missing"):
            frame = results.load(runs).set_index("experiment")
        assert frame.loc["alpha", "status"] == results.DAMAGED
        assert frame.loc["alpha", "problem"] == "best_metrics.json: missing"
        assert (frame.loc[["beta", "gamma"], "status"] == "completed").all()


def test_an_index_overwritten_with_an_older_state_is_corrected_on_read(tiny_runs, tmp_path):
    """Two processes writing the index: the last writer wins even if what it saw is older."""
    runs = copy_runs(tiny_runs, tmp_path)
    index = runs / results_index.INDEX_DIR / results_index.ENTRIES
    results.load(runs)
    stale = index.read_bytes()
    delete(runs, "gamma")
    artifacts.publish_experiment(runs, "alpha", runs / "beta", (runs / "alpha" / artifacts.CONFIG).read_text())
    results.load(runs)
    index.write_bytes(stale)  # the slower writer, which read runs/ before the changes
    frame = results.load(runs)
    assert sorted(frame["experiment"]) == ["alpha", "beta"]
    pd.testing.assert_frame_equal(frame, without_index(runs))


@pytest.mark.parametrize("damage", ["garbage", "torn", "foreign format"])
def test_a_damaged_index_is_rebuilt(damage, tiny_runs, tmp_path):
    runs = copy_runs(tiny_runs, tmp_path)
    healthy = results.load(runs)
    index = runs / results_index.INDEX_DIR / results_index.ENTRIES
    text = index.read_text()
    if damage == "garbage":
        index.write_bytes(b"\x00\xff not an index")
    elif damage == "torn":
        lines = text.splitlines()
        lines[1] = lines[1][: len(lines[1]) // 2]  # an entry cut short in the middle of the file
        index.write_text("\n".join(lines) + "\n")
    else:
        index.write_text('{"format": 999}\n')
    if damage == "foreign format":  # another version's index: rebuilt without a word
        frame = results.load(runs)
    else:
        with pytest.warns(DamagedRunsWarning, match=f"{index}: unreadable .*rebuilt it"):
            frame = results.load(runs)
    pd.testing.assert_frame_equal(frame, healthy)
    assert index.read_text() == text, "the rebuilt index is the one a fresh read writes"


def test_a_damaged_history_table_is_rebuilt(tiny_runs, tmp_path):
    runs = copy_runs(tiny_runs, tmp_path)
    healthy = results.load_history(runs)
    (runs / results_index.INDEX_DIR / results_index.HISTORY).write_bytes(b"PAR1 torn")
    with pytest.warns(DamagedRunsWarning, match="history.parquet: unreadable"):
        pd.testing.assert_frame_equal(results.load_history(runs), healthy)
    pd.testing.assert_frame_equal(results.load_history(runs), healthy)


def test_record_adds_a_published_experiment_so_the_next_read_need_not(tiny_runs, tmp_path, reads):
    runs = copy_runs(tiny_runs, tmp_path)
    results.load(runs)
    config = (runs / "beta" / artifacts.CONFIG).read_text().replace("name: beta", "name: delta")
    artifacts.publish_experiment(runs, "delta", runs / "beta", config)
    results_index.record(runs, "delta")
    reads.clear()
    frame = results.load(runs)
    assert reads == [] and "delta" in set(frame["experiment"])
    pd.testing.assert_frame_equal(frame, without_index(runs))


def test_compare_rewrites_the_exported_tables_only_when_runs_changed(tiny_runs, tmp_path, run_cli):
    runs = copy_runs(tiny_runs, tmp_path)
    assert run_cli("compare", "--runs-dir", runs).code == 0
    csv = runs / results.RESULTS_CSV
    written = csv.stat().st_ino
    assert run_cli("compare", "--runs-dir", runs).code == 0
    assert csv.stat().st_ino == written, "nothing changed, yet results.csv was written again"
    delete(runs, "gamma")
    assert run_cli("compare", "--runs-dir", runs).code == 0
    assert sorted(pd.read_csv(csv)["experiment"]) == ["alpha", "beta"]
    (runs / results.HISTORY_PARQUET).unlink()  # a table deleted by hand is written again
    assert run_cli("compare", "--runs-dir", runs).code == 0
    assert set(pd.read_parquet(runs / results.HISTORY_PARQUET)["experiment"]) == {"alpha", "beta"}


def test_an_index_that_cannot_be_written_costs_only_time(tiny_runs, tmp_path):
    runs = copy_runs(tiny_runs, tmp_path)
    (runs / results_index.INDEX_DIR).write_text("a file where the index folder goes: no write can succeed")
    frame = results.load(runs)
    assert sorted(frame["experiment"]) == EXPERIMENTS
    assert sorted(results.load_history(runs)["experiment"].unique()) == EXPERIMENTS


def test_reading_a_missing_or_empty_folder_creates_no_index(tmp_path):
    assert results.load(tmp_path / "missing").empty and not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    assert results.load(tmp_path / "empty").empty and not any((tmp_path / "empty").iterdir())
