"""A sweep killed under the flat layout of raytrain 0.1 (raytrain.sweep, raytrain.policy, ...) resumes
to completion under the package layout: Tune pickled its callbacks by their old module paths, and
raytrain/moved.py must still resolve them.

The old code is the package as it was at commit 9d9d518, kept as a tarball in tests/data (no git
history needed): the sweep really runs it, in a process whose PYTHONPATH puts it first.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tarfile

from raytrain import artifacts
from tests.test_resume import EPOCHS, slow_has_checkpointed_twice, trial_results, wait_for, write_configs

OLD_PACKAGE = "tests/data/raytrain-0.1-flat-layout.tar.gz"


def test_a_sweep_killed_under_the_flat_layout_resumes_under_the_packages(subprocesses, synthetic_root, tmp_path):
    from tests.conftest import PROJECT_ROOT

    with tarfile.open(PROJECT_ROOT / OLD_PACKAGE) as archive:
        archive.extractall(tmp_path / "old", filter="data")
    old_code = tmp_path / "old" / "raytrain-0.1-flat"
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAYTRAIN_CACHE_DIR=str(tmp_path / "cache"))
    configs, runs = write_configs(tmp_path / "configs"), tmp_path / "runs"
    sweep = ["sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"]
    driver = subprocesses.Popen(
        [sys.executable, "-m", "raytrain", *sweep, "--max-concurrent", "2"],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(old_code)},  # the old package first, for the driver and its Ray workers
        start_new_session=True,  # so SIGKILL takes the driver and its Ray, as a crash would
        stdout=open(tmp_path / "driver.log", "ab"),
        stderr=subprocesses.STDOUT,
    )
    try:
        wait_for(lambda: any(r["experiment"] == "fast" for r in artifacts.read_log(runs)), 180, "fast to finish")
        wait_for(lambda: slow_has_checkpointed_twice(runs), 120, "slow to checkpoint")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    log = (tmp_path / "driver.log").read_text()
    [tuner_state] = runs.glob("_tune/*/tuner.pkl")
    assert b"raytrain.sweep" in tuner_state.read_bytes(), "the sweep was not made by the old layout:\n" + log[-2000:]
    assert max(r["epoch"] for r in trial_results(runs, "slow")) < EPOCHS["slow"], "slow finished before the kill"
    fast_weights = hashlib.sha256((runs / "fast" / artifacts.BEST_WEIGHTS).read_bytes()).hexdigest()

    resumed = subprocesses.run(
        [sys.executable, "-m", "raytrain", "resume", "--runs-dir", str(runs)],
        cwd=tmp_path,
        env=env,  # this checkout's raytrain
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "3 completed, 0 failed, 0 unfinished" in resumed.stdout
    assert "[slow] epoch" in resumed.stdout, "the old publisher's epoch lines are gone"
    assert hashlib.sha256((runs / "fast" / artifacts.BEST_WEIGHTS).read_bytes()).hexdigest() == fast_weights
    records = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in records) == sorted(EPOCHS), "one log line per experiment"
    assert all(r["status"] == "completed" for r in records)
    for name in EPOCHS:
        artifacts.read_experiment(runs, name)  # whole: raises DamagedExperiment otherwise
