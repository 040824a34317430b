"""Kill a real sweep mid-flight (SIGKILL, then SIGTERM) and `raytrain resume` it: finished trials are
not re-run, an unfinished one continues from its checkpoint, and the log has one line each."""

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

from raytrain import artifacts, results
from tests.conftest import PROJECT_ROOT

# fast ends first; slow is still training when the sweep is killed; later waits for a free CPU
EPOCHS = {"fast": 2, "slow": 16, "later": 3}


def write_configs(folder: Path) -> Path:
    folder.mkdir()
    for name, epochs in EPOCHS.items():
        (folder / f"{name}.yaml").write_text(
            f"extends: {PROJECT_ROOT / 'configs/demo/baseline_small.yaml'}\n"
            f"training: {{epochs: {epochs}, batch_size: 16}}\n"
            # every epoch saved, so the kill has a checkpoint to continue from (the default saves by time)
            "data: {img_size: 24}\nother: {patience: 20, workers: 1, checkpoint_epochs: 1}\n"
        )
    return folder


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAYTRAIN_CACHE_DIR=str(cwd / "cache"))
    # a session of its own, so SIGKILL can take the driver and the Ray it started, as a crash would
    return subprocess.Popen(
        [sys.executable, "-m", "raytrain", *args],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=open(cwd / "driver.log", "ab"),
        stderr=subprocess.STDOUT,
    )


def trial_results(runs: Path, experiment: str) -> list[dict]:
    """Every result Tune recorded for the experiment's trial, in order, across restores."""
    [path] = runs.glob(f"_tune/*/{experiment}_*/result.json")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)


def slow_has_checkpointed_twice(runs: Path) -> bool:
    return len(list(runs.glob("_tune/*/slow_*/checkpoint_*"))) >= 1 and any(
        r["epoch"] >= 2 for r in _results_or_empty(runs, "slow")
    )


def _results_or_empty(runs: Path, experiment: str) -> list[dict]:
    try:
        return trial_results(runs, experiment)
    except ValueError:  # not created yet
        return []


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(subprocesses, how, synthetic_root, tmp_path):
    configs = write_configs(tmp_path / "configs")
    runs = tmp_path / "runs"
    sweep_args = [
        "sweep",
        str(configs),
        "--data-root",
        str(synthetic_root),
        "--runs-dir",
        str(runs),
        "--yes",
        "--max-concurrent",
        "2",
    ]
    driver = start(sweep_args, tmp_path)
    try:
        wait_for(lambda: any(r["experiment"] == "fast" for r in artifacts.read_log(runs)), 180, "fast to finish")
        wait_for(lambda: slow_has_checkpointed_twice(runs), 120, "slow to checkpoint")
        if how == "SIGKILL":
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray, with no chance to save
        else:
            driver.send_signal(signal.SIGTERM)  # what `ray job stop` and Kubernetes send
        code = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert code == (-signal.SIGKILL if how == "SIGKILL" else 130), (tmp_path / "driver.log").read_text()[-3000:]
    killed_at_epoch = max(r["epoch"] for r in trial_results(runs, "slow"))
    assert killed_at_epoch < EPOCHS["slow"], "slow finished before the kill: the test proves nothing"
    fast_before = trial_results(runs, "fast")
    # the results module reads an interrupted sweep too: finished rows from runs/, the rest from Tune
    interrupted = results.load(runs).set_index("experiment")
    assert interrupted.loc["fast", "status"] == "completed"
    assert interrupted.loc["slow", "status"] == "unfinished"
    assert interrupted.loc["slow", "epochs_run"] == killed_at_epoch
    assert interrupted.loc["slow", "val/macro_f1"] == max(r["val/macro_f1"] for r in trial_results(runs, "slow"))

    # both ways back: `raytrain resume`, and re-running the same sweep command, which finds the
    # interrupted sweep by its name and (with --yes) resumes it rather than starting over
    again = ["resume", "--runs-dir", str(runs)] if how == "SIGKILL" else sweep_args
    resumed = subprocesses.run(
        [sys.executable, "-m", "raytrain", *again],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, RAYTRAIN_CACHE_DIR=str(tmp_path / "cache")),
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    if how == "SIGTERM":
        assert re.search(
            r"was interrupted with [12] trial\(s\) unfinished; resume it instead of starting over\? yes", resumed.stdout
        )
    assert "3 completed, 0 failed, 0 unfinished" in resumed.stdout
    said = (tmp_path / "driver.log").read_text() + resumed.stdout + resumed.stderr
    for noise in (
        "Token authentication is enabled",
        "Configuration for experiment",
        "To visualize your results with TensorBoard",
    ):
        assert noise not in said, f"Ray's {noise!r} reached the user"
    # without a terminal the status comes as plain lines; raytrain's own next steps close the run
    assert re.search(r"^trials: \d running, \d done, \d pending, 0 failed \| best ", said, re.MULTILINE)
    assert f"tensorboard --logdir {runs.resolve() / '_tune'}" in resumed.stdout

    log = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in log) == sorted(EPOCHS), "one log line per experiment"
    assert all(r["status"] == "completed" for r in log)
    assert trial_results(runs, "fast") == fast_before, "a finished trial was run again"

    slow = trial_results(runs, "slow")
    restarts = [r for r in slow if r["iterations_since_restore"] == 1 and r["epoch"] > 1]
    assert restarts, "slow was not restored from a checkpoint"
    resumed_from = restarts[-1]["epoch"]
    # SIGKILL may lose the epochs after Tune's last snapshot (about one); never the whole run
    assert killed_at_epoch - 1 <= resumed_from <= killed_at_epoch + 1
    assert [r["epoch"] for r in slow].count(1) == 1, "slow started over from epoch 1"
    history = json.loads((runs / "slow" / artifacts.HISTORY).read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS["slow"] + 1))
    for name in EPOCHS:
        assert artifacts.is_complete(runs, name)
    # the trials published after the resume have their provenance too: the resumed driver records it
    fingerprints = {json.loads((runs / n / artifacts.PROVENANCE).read_text())["data"]["fingerprint"] for n in EPOCHS}
    assert len(fingerprints) == 1 and None not in fingerprints


def test_resume_retries_a_failed_trial_once_its_cause_is_fixed(subprocesses, synthetic_root, tmp_path):
    """A trial that failed (its ImageNet weights file is torn) fails at once, without Tune's retries,
    and is retried by `raytrain resume` after the user puts whole weights in the torch cache; the
    finished one is left alone."""
    import torch
    import torchvision

    configs = tmp_path / "configs"
    write_config_like(configs, "fine", "")
    write_config_like(configs, "needs_weights", "model: {pretrained: true}\n")
    runs = tmp_path / "runs"
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), RAYTRAIN_CACHE_DIR=str(tmp_path / "cache"))
    # where torchvision would have downloaded them: $TORCH_HOME/hub/checkpoints/<file of the URL>
    weights = tmp_path / "torch" / "hub" / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"PK\x03\x04 the first bytes of a copy that stopped here")  # the planner sees a file
    command = [sys.executable, "-m", "raytrain"]
    first = subprocesses.run(
        [*command, "sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert first.returncode == 1 and "FAILED needs_weights" in first.stdout, first.stdout[-2000:] + first.stderr[-2000:]
    assert (
        f"{weights} does not hold the ImageNet weights of 'resnet18'" in first.stdout
        and "delete it and copy it again" in first.stdout
    )
    assert "Traceback" not in first.stdout + first.stderr
    [error_txt] = runs.glob("_tune/*/needs_weights_*/error.txt")
    assert error_txt.read_text().count("Failure # ") == 1, "a user error was retried"
    fine_results = trial_results(runs, "fine")

    torch.save(torchvision.models.resnet18().state_dict(), weights)

    resumed = subprocesses.run(
        [*command, "resume", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    statuses = [(r["experiment"], r["status"]) for r in artifacts.read_log(runs)]
    assert statuses.count(("fine", "completed")) == 1
    assert statuses.index(("needs_weights", "failed")) < statuses.index(("needs_weights", "completed"))
    assert artifacts.is_complete(runs, "needs_weights")
    assert trial_results(runs, "fine") == fine_results, "the finished trial was run again"
    assert results.load(runs).set_index("experiment").loc["needs_weights", "status"] == "completed"


def write_config_like(folder: Path, name: str, extra: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        f"extends: {PROJECT_ROOT / 'configs/demo/baseline_small.yaml'}\n"
        "training: {epochs: 1, batch_size: 16}\ndata: {img_size: 24}\nother: {workers: 1}\n" + extra
    )
