"""Provenance (raytrain/provenance.py, data/fingerprint.py, runs/<experiment>/provenance.json): the
code state of a real git checkout, clean and dirty; the fingerprint of decoded data, equal under two
paths and different after one pixel; readers that tolerate runs without it or with a damaged one; and
`compare` warning when it ranks runs trained on different data. The sweep that writes provenance.json
is tests/test_sweep.py's."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from raytrain import artifacts, results
from raytrain.data import Split, generate_synthetic, load_dataset
from raytrain.data.fingerprint import data_provenance, dataset_fingerprint
from raytrain.provenance import (
    COMMIT_ENV_VAR,
    DIFF_ENV_VAR,
    DIRTY_ENV_VAR,
    code_provenance,
    code_state,
    handed_on_env,
    provenance_columns,
    uncommitted_patch,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout with one commit: train.py and a .gitignore that ignores data/."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.001\n")
    (repo / ".gitignore").write_text("data/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


# --- code --------------------------------------------------------------------------------------------


def test_a_clean_checkout_records_its_commit_and_no_patch(repo, monkeypatch):
    monkeypatch.chdir(repo)  # whose code: the working directory's checkout
    state = code_state()
    assert state.commit == git(repo, "rev-parse", "--short", "HEAD").strip()
    assert state.dirty is False and state.patch is None and state.checkout == str(repo.resolve())
    assert code_provenance(state, artifacts.UNCOMMITTED_PATCH)["patch"] is None


def test_a_dirty_checkout_records_its_diff_and_untracked_files(repo, monkeypatch):
    (repo / "train.py").write_text("lr = 0.01\n")
    (repo / "augment.py").write_text("def flip(x):\n    return x[::-1]\n")  # new, not yet added
    (repo / "data").mkdir()
    (repo / "data" / "big.bin").write_bytes(b"\0" * 1000)  # ignored: not code
    monkeypatch.chdir(repo)
    state = code_state()
    assert state.dirty is True and not state.patch_cut
    assert "-lr = 0.001\n+lr = 0.01" in state.patch
    assert "+++ b/augment.py" in state.patch and "+    return x[::-1]" in state.patch
    assert "big.bin" not in state.patch
    assert state.patch.startswith(f"# raytrain: the uncommitted changes of {repo.resolve()} over commit {state.commit}")
    # the patch applies to the commit: it is the diff, not a description of it
    (repo / "train.py").write_text("lr = 0.001\n")
    (repo / "augment.py").unlink()
    (repo / "changes.patch").write_text(state.patch)
    git(repo, "apply", "changes.patch")
    assert (repo / "train.py").read_text() == "lr = 0.01\n" and (repo / "augment.py").is_file()
    record = code_provenance(state, artifacts.UNCOMMITTED_PATCH)
    assert record["git_dirty"] is True and record["patch"] == "uncommitted.patch" and record["raytrain"]


def test_a_large_diff_is_cut_and_says_so(repo):
    (repo / "train.py").write_text("".join(f"line {i}\n" for i in range(5000)))
    commit = git(repo, "rev-parse", "--short", "HEAD").strip()
    patch, cut = uncommitted_patch(repo, commit, str(repo), limit=2000)
    assert cut and len(patch.encode()) < 2100
    assert patch.rstrip().endswith("# raytrain: cut at 2000 bytes; the rest of the changes is not here")


def test_a_ray_job_records_the_code_state_submit_handed_on(repo, tmp_path, monkeypatch):
    (repo / "train.py").write_text("lr = 0.01\n")
    env = handed_on_env(repo)
    assert env[DIRTY_ENV_VAR] == "1" and "+lr = 0.01" in env[DIFF_ENV_VAR]
    # inside the job: an upload without .git, the environment submit set
    upload = tmp_path / "upload"
    upload.mkdir()
    monkeypatch.chdir(upload)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    state = code_state()
    assert (state.commit, state.dirty, state.patch) == (env[COMMIT_ENV_VAR], True, env[DIFF_ENV_VAR])
    assert state.checkout == "handed on by `raytrain submit`"


def test_outside_a_checkout_the_code_state_is_unknown_not_clean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(COMMIT_ENV_VAR, raising=False)
    state = code_state()
    assert (state.commit, state.dirty, state.patch) == (None, None, None)


# --- data ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory) -> tuple[Path, Path]:
    """The same synthetic dataset written to two folders."""
    base = tmp_path_factory.mktemp("copies")
    return tuple(generate_synthetic(base / name, per_class=4, size=16, seed=2) for name in ("here", "there"))


def test_the_same_data_under_two_paths_shares_a_fingerprint(two_copies, tmp_path):
    here, there = (load_dataset(root, workers=1, cache_dir=tmp_path / root.name) for root in two_copies)
    assert here.source != there.source
    assert dataset_fingerprint(here) == dataset_fingerprint(there)
    record = data_provenance(here)
    assert record["layout"] == "folders" and record["label_source"] == "class folder names"
    assert record["fingerprint"] == dataset_fingerprint(here) and record["images"] == {"train": 14, "val": 7, "test": 7}


def test_one_changed_pixel_or_label_changes_the_fingerprint(two_copies, tmp_path):
    original = dataset_fingerprint(load_dataset(two_copies[0], workers=1, cache_dir=tmp_path / "a"))
    changed = tmp_path / "changed"
    generate_synthetic(changed, per_class=4, size=16, seed=2)
    image = next((changed / "test" / "sad").glob("*.png"))
    pixels = np.array(Image.open(image))
    pixels[3, 5] ^= 1
    Image.fromarray(pixels).save(image)
    assert dataset_fingerprint(load_dataset(changed, workers=1, cache_dir=tmp_path / "b")) != original
    relabelled = tmp_path / "relabelled"
    generate_synthetic(relabelled, per_class=4, size=16, seed=2)
    moved = next((relabelled / "train" / "sad").glob("*.png"))
    moved.rename(relabelled / "train" / "happy" / moved.name)  # same pixels, another class
    assert dataset_fingerprint(load_dataset(relabelled, workers=1, cache_dir=tmp_path / "c")) != original


def test_the_fingerprint_covers_every_array_a_split_holds(tiny_dataset):
    """FER+'s vote distributions (Split.targets) are part of the data a trial trains on."""

    def with_votes(scale: float):
        splits = {
            name: Split(split.images, split.labels, np.full((len(split), 7), scale, dtype=np.float32))
            for name, split in tiny_dataset.splits.items()
        }
        return dataclasses.replace(tiny_dataset, splits=splits)

    assert dataset_fingerprint(with_votes(0.5)) != dataset_fingerprint(with_votes(0.25))
    assert dataset_fingerprint(with_votes(0.5)) != dataset_fingerprint(tiny_dataset)


# --- readers -----------------------------------------------------------------------------------------


def write_run(runs: Path, name: str, macro_f1: float, provenance: dict | str | None) -> Path:
    """A finished experiment's files as readers see them (no training): provenance as given, a
    string written as is (damage), None for a run from before raytrain recorded it."""
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / artifacts.CONFIG).write_text(yaml.safe_dump({"name": name, "training": {"lr": 0.001}}))
    with zipfile.ZipFile(folder / artifacts.BEST_WEIGHTS, "w") as weights:
        weights.writestr("data.pkl", b"weights")
    per_class = {c: {"precision": macro_f1, "recall": macro_f1, "f1": macro_f1, "support": 5} for c in ("a", "b")}
    best = {"epoch": 1, "split": "val", "accuracy": macro_f1, "macro_f1": macro_f1, "loss": 1.0, "per_class": per_class}
    (folder / artifacts.BEST_METRICS).write_text(json.dumps(best))
    (folder / artifacts.HISTORY).write_text(json.dumps([{"epoch": 1, "val/macro_f1": macro_f1}]))
    if isinstance(provenance, dict):
        (folder / artifacts.PROVENANCE).write_text(json.dumps(provenance))
    elif isinstance(provenance, str):
        (folder / artifacts.PROVENANCE).write_text(provenance)
    return folder


def provenance_of(fingerprint: str) -> dict:
    return {
        "data": {"layout": "folders", "label_source": "class folder names", "fingerprint": fingerprint},
        "code": {"raytrain": "0.2.0", "git_commit": "abc1234", "git_dirty": False},
        "machine": {"device_name": "AMD EPYC", "precision": "fp32", "python": "3.11.7", "cuda": None},
    }


def test_results_have_provenance_columns_and_tolerate_runs_without_or_with_a_torn_one(tmp_path, recwarn):
    runs = tmp_path / "runs"
    write_run(runs, "new", 0.6, provenance_of("a" * 32))
    write_run(runs, "old", 0.5, None)
    write_run(runs, "torn", 0.4, '{"data": {"finger')
    with pytest.warns(artifacts.DamagedRunsWarning, match=r"torn/provenance.json: unreadable .*columns are left empty"):
        frame = results.load(runs).set_index("experiment")
    assert list(frame["status"]) == ["completed"] * 3, "provenance is not needed to read a run"
    assert frame.loc["new", "data_fingerprint"] == "a" * 32 and frame.loc["new", "code_commit"] == "abc1234"
    assert frame.loc["new", "machine_device"] == "AMD EPYC" and frame.loc["new", "machine_precision"] == "fp32"
    assert frame[["data_fingerprint", "code_commit"]].loc[["old", "torn"]].isna().all().all()
    with pytest.warns(artifacts.DamagedRunsWarning, match="torn/provenance.json"):  # every read, from the index too
        results.load(runs)
    assert provenance_columns({"code": {"git_commit": "x"}, "machine": "not a section"}) == {"code_commit": "x"}


def test_compare_warns_when_the_runs_were_trained_on_different_data(tmp_path, run_cli):
    runs = tmp_path / "runs"
    for name, score, fingerprint in (("a1", 0.7, "1111aaaa"), ("a2", 0.6, "1111aaaa"), ("b1", 0.65, "2222bbbb")):
        write_run(runs, name, score, provenance_of(fingerprint + "0" * 24))
    result = run_cli("compare", "--runs-dir", runs)
    assert result.code == 0, result.err
    assert "these runs were trained on 2 different datasets (data 1111aaaa: 2 runs; data 2222bbbb: 1 run)" in (
        result.err
    )
    assert "a comparison across different data is not a comparison" in result.err
    cells = [[c.strip() for c in line.split("│")[1:4]] for line in result.out.splitlines() if line.startswith("│")]
    assert cells == [["1", "a1", "1111aaaa"], ["2", "b1", "2222bbbb"], ["3", "a2", "1111aaaa"]]  # which is which
    one = run_cli("compare", "--runs-dir", runs, "--filter", "data=1111")
    assert one.code == 0 and "different datasets" not in one.err and "b1" not in one.out and "a2" in one.out
    none = run_cli("compare", "--runs-dir", runs, "--filter", "data=3333")
    assert none.code == 2 and "no run was trained on data '3333'; known: 1111aaaa, 2222bbbb" in none.err
    write_run(runs, "c", 0.5, provenance_of("1111aaaa" + "0" * 24))  # one dataset again: no warning
    assert "different datasets" not in run_cli("compare", "--runs-dir", runs, "--filter", "a").err


def test_the_report_warns_too_and_shows_which_data_each_run_had(tmp_path):
    from raytrain.report.page import render_report

    runs = tmp_path / "runs"
    write_run(runs, "a1", 0.7, provenance_of("1111aaaa" + "0" * 24))
    write_run(runs, "b1", 0.6, provenance_of("2222bbbb" + "0" * 24))
    page = render_report(runs)
    assert "these runs were trained on 2 different datasets (data 1111aaaa: 1 run; data 2222bbbb: 1 run)" in page
    assert "<th>data</th>" in page and ">1111aaaa<" in page and ">2222bbbb<" in page
