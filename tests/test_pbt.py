"""A real population (Ray Tune's PBT, two members of a tiny model) killed with SIGKILL part-way and
resumed, then checked for what a user would notice: it finishes, no member trains an epoch twice
past the checkpoint Tune had recorded, the scheduler goes on deciding at the same epochs, each
member's lineage is in runs/, and compare and the report show it. One population is shared by every
test here; it costs about a minute on two cores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raytrain import artifacts, lineage
from raytrain.report import render_report
from tests.conftest import PROJECT_ROOT
from tests.test_resume import wait_for

NAME, MEMBERS, EPOCHS, INTERVAL = "pop", 2, 7, 2  # decisions at epochs 2, 4 and 6
SPACE = {
    "training.lr": (1.0e-4, 1.0e-2),
    "augmentation.random_erasing": (0.0, 0.5),
}
CONFIG = f"""
extends: {PROJECT_ROOT / "configs/demo/baseline_small.yaml"}
name: {NAME}
training: {{epochs: {EPOCHS}, batch_size: 16}}
data: {{img_size: 24}}
other: {{workers: 1, patience: {EPOCHS}}}
resources: {{cpu: 1}}
search:
  algorithm: pbt
  population: {MEMBERS}
  perturbation_interval: {INTERVAL}
  quantile_fraction: 0.5  # of two members, the worse copies the better at each decision
  synchronous: true  # ...both as of the same epoch
  resample_probability: 0.5
  seed: 3
  space:
    training.lr: {{loguniform: [1.0e-4, 1.0e-2]}}
    augmentation.random_erasing: {{uniform: [0.0, 0.5]}}
    loss.type: {{choice: [ce, focal]}}
"""
NAMES = [f"{NAME}/t{n:03d}" for n in range(1, MEMBERS + 1)]


def marks(trace: Path) -> list[dict]:
    return [json.loads(line) for line in trace.read_text().splitlines() if line.strip()] if trace.is_file() else []


@pytest.fixture(scope="module")
def population(subprocesses, synthetic_root, tmp_path_factory) -> dict:
    """`raytrain sweep` of the population, SIGKILLed once it has decided at epoch 4, then
    `raytrain resume`; trace marks from both."""
    root = tmp_path_factory.mktemp("pbt")
    (root / "configs").mkdir()
    (root / "configs" / f"{NAME}.yaml").write_text(CONFIG)
    runs, trace = root / "runs", root / "trace.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAYTRAIN_CACHE_DIR=str(root / "cache"), RAYTRAIN_TRACE_LOG=str(trace))
    command = [sys.executable, "-m", "raytrain"]
    driver = subprocess.Popen(
        [
            *command,
            "sweep",
            str(root / "configs"),
            "--data-root",
            str(synthetic_root),
            "--runs-dir",
            str(runs),
            "--yes",
        ],
        cwd=root,
        env=env,
        start_new_session=True,  # SIGKILL takes the driver and the Ray it started, as a crash would
        stdout=open(root / "driver.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        # the population has decided at epoch 4 (and Tune's record, a snapshot every few checkpoints,
        # has had a moment to catch up), one decision (6) is left for after the resume
        def decided(epoch: int) -> set[str]:
            return {m["trial"] for m in marks(trace) if m["event"] == "population_decision" and m["epoch"] == epoch}

        wait_for(lambda: len(decided(2 * INTERVAL)) == MEMBERS, 300, "the population's second decision")
        time.sleep(1.0)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    killed = marks(trace)
    # what Tune had recorded for each member when it died: the checkpoint a resume starts it from
    from ray.tune import ExperimentAnalysis

    [experiment] = [p.parent for p in runs.glob("_tune/*/tuner.pkl")]
    recorded = {t.config["experiment"]["name"]: t.checkpoint for t in ExperimentAnalysis(str(experiment)).trials}
    recorded = {
        name: json.loads((Path(c.path) / "checkpoint.json").read_text()) if c and Path(c.path).is_dir() else None
        for name, c in recorded.items()
    }
    resumed = subprocesses.run(
        [*command, "resume", "--runs-dir", str(runs)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert resumed.returncode == 0, (
        (root / "driver.log").read_text()[-2000:] + resumed.stdout[-3000:] + resumed.stderr[-3000:]
    )
    return {
        "root": root,
        "runs": runs,
        "killed": killed,
        "after": marks(trace)[len(killed) :],
        "recorded": recorded,
        "said": (root / "driver.log").read_text() + resumed.stdout,
        "resumed": resumed.stdout,
    }


def test_a_killed_population_resumes_to_its_end(population):
    runs, killed = population["runs"], population["killed"]
    finished_before = {m["trial"] for m in killed if m["event"] == "checkpoint_written" and m["final"]}
    assert len(finished_before) < MEMBERS, "every member had finished before the kill: it proves nothing"
    log = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in log) == NAMES and all(r["status"] == "completed" for r in log)
    assert all(artifacts.is_complete(runs, name) for name in NAMES)
    assert f"{MEMBERS} completed, 0 failed, 0 unfinished" in population["resumed"]


def test_no_member_trains_an_epoch_twice_past_the_checkpoint_tune_had_recorded(population):
    starts = {}
    for mark in population["after"]:
        if mark["event"] == "training_starts":
            starts.setdefault(mark["trial"], mark)  # each member's first start after the resume
    for name, checkpoint in population["recorded"].items():
        if checkpoint is not None and checkpoint.get("final"):
            assert name not in starts, f"{name} had finished, and trained again"
            continue
        if checkpoint is None:  # not started when it was killed, or started and Tune had recorded nothing yet
            checkpoint = {"epoch": 0}
        assert name in starts, f"{name} was not trained again after the resume"
        # from the checkpoint Tune recorded (its own, or the one it was about to copy), never from scratch
        assert starts[name]["epoch"] == checkpoint["epoch"] + 1, (name, checkpoint, starts[name])


def test_the_resumed_scheduler_decides_at_the_same_epochs(population):
    """Tune saves no scheduler state; without raytrain's, a member resumed at epoch 2 would count its
    interval from zero and decide at epoch 3. (Resumed, the synchronous population decides
    asynchronously: test_population says why.)"""
    decisions = [m for m in population["killed"] + population["after"] if m["event"] == "population_decision"]
    assert any(m["event"] == "population_decision" for m in population["after"]), "no decision after the resume"
    assert all(m["epoch"] % INTERVAL == 0 for m in decisions), decisions


def test_each_member_records_its_lineage_and_config_yaml_holds_its_best_epochs_values(population):
    import torch

    runs, said = population["runs"], population["said"]
    printed = re.findall(r"\[(\S+)\] after epoch \d+ \(val macro F1 [\d.]+\) copies (\S+) as of its epoch (\d+)", said)
    assert printed, "no member copied another: the lineage proves nothing (change the search seed)"
    for name in NAMES:
        folder = runs / name
        history = json.loads((folder / artifacts.HISTORY).read_text())
        assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1)), "one row per epoch of its line"
        assert lineage.knobs_in(history) == [*SPACE, "loss.type"]
        for row in history:
            for knob, (low, high) in SPACE.items():
                assert low <= row[lineage.knob_column(knob)] <= high
        assert history[-1][lineage.MEMBER] == name, "its last epochs are its own"
        # new values come with copied weights: a member never goes on with its own weights and another's
        # knobs (a snapshot that missed the copy would resume it so)
        for before, after in zip(history, history[1:]):
            if after[lineage.MEMBER] == before[lineage.MEMBER]:
                assert all(after[k] == before[k] for k in before if k.startswith(lineage.KNOB_PREFIX)), (name, after)
        # every copy along the line is one the driver announced (before or after the kill)
        for copy in lineage.exploits(history):
            assert (copy["into"], copy["from"], str(copy["epoch"])) in printed, copy
        assert (folder / artifacts.SCHEDULE).read_text() == lineage.schedule_csv(history)
        config = yaml.safe_load((folder / artifacts.CONFIG).read_text())
        best = json.loads((folder / artifacts.BEST_METRICS).read_text())["epoch"]
        [row] = [r for r in history if r["epoch"] == best]
        for knob in lineage.knobs_in(history):
            section, key = knob.split(".")
            assert config[section][key] == row[lineage.knob_column(knob)], (name, knob)
        assert config["name"] == name and config["other"]["seed"] == 42 + NAMES.index(name)
        weights = torch.load(folder / artifacts.BEST_WEIGHTS, map_location="cpu", weights_only=True)
        assert weights["config"]["training"]["lr"] == config["training"]["lr"], "best.pt was trained with these"
    copied_into = {copy["into"] for name in NAMES for copy in lineage.exploits(_history(runs, name))}
    assert copied_into, "no member's final weights went through a copy"


def _history(runs: Path, name: str) -> list[dict]:
    return json.loads((runs / name / artifacts.HISTORY).read_text())


def test_compare_shows_each_members_values_at_its_end_and_the_report_its_lineage(population, run_cli):
    runs = population["runs"]
    shown = run_cli("compare", "--runs-dir", runs, "--export", population["root"] / "board.csv")
    assert shown.code == 0
    assert "training.lr at end" in shown.out and "loss.type at end" in shown.out
    for name in NAMES:
        row = next(line for line in shown.out.splitlines() if f" {name} " in line)
        end = _history(runs, name)[-1][lineage.knob_column("loss.type")]
        assert f" {end} " in row, row
    import pandas as pd

    board = pd.read_csv(population["root"] / "board.csv").set_index("experiment")
    for name in NAMES:
        assert board.loc[name, "pbt/training.lr"] == pytest.approx(_history(runs, name)[-1]["pbt/training.lr"])
    page = render_report(runs)
    assert 'id="population"' in page and f'alt="{NAME}: each knob against epoch"' in page
    for name in NAMES:
        copies = lineage.exploits(_history(runs, name))
        text = "; ".join(f"{c['into']} went on from {c['from']} as of epoch {c['epoch']}" for c in copies) or "none"
        assert f"<tr><td>{name}</td><td>{text}</td>" in page
