"""`raytrain sweep` / `run`: the plan, --filter, --dry-run, skip-if-done, --force, the prompt, failure
isolation and GPU requests, on real Tune sweeps of tiny configs."""

from __future__ import annotations

import json
import os
import pty
import sys
import textwrap
from pathlib import Path

import pytest

from raytrain import artifacts
from raytrain.sweeps.plan import plan_sweep
from tests.conftest import CONFIGS_DIR, PROJECT_ROOT, write_config
from tests.test_resume import trial_results


def sweep_args(configs, synthetic_root, runs, *extra) -> list:
    return ["sweep", *configs, "--data-root", synthetic_root, "--runs-dir", runs, *extra]


# --- planning: no Ray needed ---------------------------------------------------------------------------


def test_default_input_is_every_config_in_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    plan = plan_sweep([], runs_dir=tmp_path / "runs")
    assert len(plan.trials) == 12 and {t.status for t in plan.trials} == {"new"}
    assert plan_sweep([], runs_dir=tmp_path / "runs").name == plan.name, "the same command, the same sweep name"


def test_filter_keeps_experiments_whose_name_starts_with_the_prefix(tmp_path, run_cli):
    plan = plan_sweep([CONFIGS_DIR], runs_dir=tmp_path, filter_prefix="lr_")
    assert sorted(t.name for t in plan.trials) == ["lr_high", "lr_low"]
    assert plan.trials[0].changes == {"training.lr": (3e-4, 1e-3)}
    result = run_cli("sweep", CONFIGS_DIR, "--filter", "nope_", "--dry-run")
    assert result.code == 2 and "--filter nope_: no experiment name starts with 'nope_'" in result.err


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, run_cli):
    runs = tmp_path / "runs"
    result = run_cli("sweep", CONFIGS_DIR, "--runs-dir", runs, "--dry-run", "--filter", "batch_")
    assert result.code == 0
    assert "batch_64" in result.out and "training.batch_size=64" in result.out and "2 of 2 to run" in result.out
    assert not runs.exists()


def test_a_search_config_expands_into_named_trials(tmp_path):
    plan = plan_sweep([CONFIGS_DIR / "search" / "lr_search.yaml"], runs_dir=tmp_path)
    assert len(plan.trials) == 8 * 3
    names = [t.name for t in plan.trials]
    # the seed grid makes repeats: each drawn lr is one experiment with three seeds as members
    assert len(set(names)) == 24 and all(n.startswith("lr_search-lr_") for n in names)
    assert {n.rsplit("/", 1)[1] for n in names} == {"seed-1", "seed-2", "seed-3"}
    assert all(t.config.other.seed == int(t.name.rsplit("-", 1)[1]) for t in plan.trials)
    lrs = {t.config.training.lr for t in plan.trials}
    assert len(lrs) == 8 and all(1e-4 <= lr <= 3e-3 for lr in lrs)
    again = plan_sweep([CONFIGS_DIR / "search" / "lr_search.yaml"], runs_dir=tmp_path)
    assert [t.config.training.lr for t in again.trials] == [t.config.training.lr for t in plan.trials], "seeded draws"


def test_bad_configs_in_a_sweep_are_all_reported_before_anything_starts(tmp_path, run_cli):
    configs = tmp_path / "configs"
    write_config(configs, "one", training="lr: -1")
    write_config(configs, "two", model="arch: resnet81")
    result = run_cli("sweep", configs, "--data-root", tmp_path, "--yes", "--runs-dir", tmp_path / "runs")
    assert result.code == 2
    assert "one.yaml: training.lr: must be > 0.0" in result.err and "two.yaml: model.arch: unknown" in result.err
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_root_is_one_clear_error(ray_session, tmp_path, run_cli):
    configs = tmp_path / "configs"
    write_config(configs, "one")
    result = run_cli(*sweep_args([configs], tmp_path / "absent", tmp_path / "runs", "--yes"))
    assert result.code == 2 and f"{tmp_path / 'absent'}: data root does not exist" in result.err


# --- the prompt --------------------------------------------------------------------------------------


def test_without_a_terminal_yes_is_required(subprocesses, tmp_path, synthetic_root):
    configs = tmp_path / "configs"
    write_config(configs, "one")
    proc = subprocesses.run(
        [sys.executable, "-m", "raytrain", *map(str, sweep_args([configs], synthetic_root, tmp_path / "runs"))],
        stdin=subprocesses.DEVNULL,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "no terminal to ask on: pass --yes" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("answer, expected", [(b"n\n", "cancelled"), (b"\x03", "cancelled"), (b"\x04", "cancelled")])
def test_the_prompt_on_a_terminal_can_decline_or_be_interrupted(
    subprocesses, tmp_path, synthetic_root, answer, expected
):
    configs = tmp_path / "configs"
    write_config(configs, "one")
    leader, follower = pty.openpty()  # a real terminal: isatty() is true, Ctrl+C is a real SIGINT
    proc = subprocesses.Popen(
        [sys.executable, "-m", "raytrain", *map(str, sweep_args([configs], synthetic_root, tmp_path / "runs"))],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        start_new_session=True,
        preexec_fn=lambda: __import__("fcntl").ioctl(0, __import__("termios").TIOCSCTTY, 0),
    )
    os.close(follower)
    output = _read_until(leader, b"[Y/n]")
    _wait_until_reading_stdin(proc.pid)
    os.write(leader, answer)
    code = proc.wait(timeout=60)
    output += _read_all(leader)
    assert code == 130 and expected in output.decode(), output.decode()
    assert not (tmp_path / "runs" / "one").exists()


def _wait_until_reading_stdin(pid: int, limit: float = 30) -> None:
    """Until the process blocks in read(0, ...), as a person's Ctrl+C would find it. CPython's
    input() prints the prompt, then reads: a SIGINT in between only sets a flag, and the read then
    blocks as if nothing had happened. Sent the moment the prompt shows, Ctrl+C could hit that gap
    on a busy machine; no person answers that fast."""
    import time

    read_syscalls = {"0", "63"}  # read on x86_64, on aarch64
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            number, fd, *_ = Path(f"/proc/{pid}/syscall").read_text().split()
        except (OSError, ValueError):
            time.sleep(1)  # no /proc/PID/syscall here: give it a person's second
            return
        if number in read_syscalls and fd == "0x0":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never blocked reading its terminal")


def _read_until(fd: int, marker: bytes, limit: float = 60) -> bytes:
    import select
    import time

    data, deadline = b"", time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            data += os.read(fd, 4096)
    assert marker in data, data.decode()
    return data


def _read_all(fd: int, quiet_for: float = 5) -> bytes:
    """What the terminal still holds: until EOF, or until nothing came for `quiet_for` seconds (a
    process the command left behind can keep the terminal open, and a bare read would wait on it)."""
    import select

    data = b""
    while select.select([fd], [], [], quiet_for)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
    return data


# --- real sweeps -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(ray_session, synthetic_root, tmp_path_factory):
    """Three tiny configs run to the end as one sweep, in this process's Ray, one after another:
    twin is alpha under another name, trained after beta in the process alpha and beta used."""
    from raytrain.cli import main

    root = tmp_path_factory.mktemp("finished")
    configs = root / "configs"
    write_config(configs, "alpha")
    write_config(configs, "beta", training="epochs: 2, batch_size: 16, lr: 0.001")
    write_config(configs, "twin")
    runs = root / "runs"
    code = main([str(a) for a in sweep_args([configs], synthetic_root, runs, "--yes", "--max-concurrent", "1")])
    return code, configs, runs


def test_a_sweep_publishes_every_trial_and_logs_one_line_each(finished_sweep, tiny_dataset):
    import torch

    import raytrain
    from raytrain import results
    from raytrain.data.fingerprint import dataset_fingerprint

    code, _, runs = finished_sweep
    assert code == 0
    log = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in log) == ["alpha", "beta", "twin"]
    for record in log:
        assert record["status"] == "completed" and record["error"] is None
        assert set(record) >= {"time", "sweep", "config_hash", "git_commit", "best_epoch", "val_macro_f1", "duration_s"}
        folder = runs / record["experiment"]
        assert {p.name for p in folder.iterdir()} >= set(artifacts.TRIAL_ARTIFACTS)
        best = json.loads((folder / artifacts.BEST_METRICS).read_text())
        assert best["epoch"] == record["best_epoch"] and best["macro_f1"] == record["val_macro_f1"]
        # which data, code and machine: the driver's data and code parts, the trial's machine part
        provenance = json.loads((folder / artifacts.PROVENANCE).read_text())
        data, code_, machine = provenance["data"], provenance["code"], provenance["machine"]
        assert (provenance["experiment"], provenance["sweep"]) == (record["experiment"], record["sweep"])
        assert data["fingerprint"] == dataset_fingerprint(tiny_dataset), "the data the trial trained on"
        assert (data["layout"], data["label_source"], data["dropped_duplicates"]) == (
            "folders",
            "class folder names",
            None,
        )
        assert code_["raytrain"] == raytrain.__version__ and code_["git_commit"] == record["git_commit"]
        patch = folder / artifacts.UNCOMMITTED_PATCH
        assert patch.is_file() == bool(code_["git_dirty"]) == (code_["patch"] == artifacts.UNCOMMITTED_PATCH)
        history = json.loads((folder / artifacts.HISTORY).read_text())
        assert machine["precision"] == history[-1]["precision_used"] and machine["torch"] == torch.__version__
        assert machine["device"] == "cpu" and machine["device_name"] and machine["cuda"] is None
    frame = results.load(runs)
    assert frame["data_fingerprint"].nunique() == 1 and frame["machine_precision"].notna().all()
    assert len({r["sweep"] for r in log}) == 1
    assert list(runs.glob("_tune/*/tuner.pkl")), "the Tune experiment lives in runs/_tune"


def test_trials_that_share_a_process_train_as_in_a_fresh_one(finished_sweep):
    """The sweep hands a finished trial's process to the next (Tune's reuse_actors): twin ran in
    alpha's process after beta, and trained exactly as alpha did, number for number."""
    _, _, runs = finished_sweep
    results = {name: trial_results(runs, name) for name in ("alpha", "beta", "twin")}
    assert len({r["pid"] for rows in results.values() for r in rows}) == 1, "a process started for each trial"
    twin_history = json.loads((runs / "twin" / artifacts.HISTORY).read_text())
    alpha_history = json.loads((runs / "alpha" / artifacts.HISTORY).read_text())
    trained = ("train/loss", "train/accuracy", "val/loss", "val/macro_f1", "lr")
    assert [{k: h[k] for k in trained} for h in twin_history] == [{k: h[k] for k in trained} for h in alpha_history]


def test_a_finished_experiment_is_skipped_and_force_reruns_it(finished_sweep, synthetic_root, run_cli):
    _, configs, runs = finished_sweep
    before = artifacts.read_log(runs)
    weights = (runs / "alpha" / artifacts.BEST_WEIGHTS).stat().st_mtime_ns
    result = run_cli(*sweep_args([configs], synthetic_root, runs, "--yes"))
    assert result.code == 0 and "nothing to run" in result.out and "done (skipped)" in result.out
    assert artifacts.read_log(runs) == before
    # a changed config is not silently re-run, but the plan says so
    write_config(configs, "alpha", training="epochs: 1, batch_size: 16, lr: 0.005")
    result = run_cli(*sweep_args([configs], synthetic_root, runs, "--yes", "--dry-run"))
    assert (
        "done, config changed (skipped)" in result.out
        and "alpha finished earlier with a different config" in result.out
    )
    result = run_cli(*sweep_args([configs], synthetic_root, runs, "--yes", "--force", "--filter", "alpha"))
    assert result.code == 0, result.err
    after = artifacts.read_log(runs)
    assert len(after) == len(before) + 1 and after[-1]["experiment"] == "alpha"
    assert after[-1]["config_hash"] != next(r for r in before if r["experiment"] == "alpha")["config_hash"]
    assert (runs / "alpha" / artifacts.BEST_WEIGHTS).stat().st_mtime_ns != weights
    assert "lr: 0.005" in (runs / "alpha" / artifacts.CONFIG).read_text()


def test_a_sweep_drops_duplicates_for_the_configs_that_ask_and_compare_warns(ray_session, tmp_path, run_cli):
    """data.drop_cross_split_duplicates in one config of a sweep and not the other: each trial gets
    the data its config asks for, the note says how many images were left out, provenance.json
    records it, and compare warns that the two ran on different data."""
    import numpy as np
    from PIL import Image

    from raytrain.data import generate_synthetic

    data = generate_synthetic(tmp_path / "data", per_class=10, size=24, seed=5)
    train = sorted((data / "train" / "happy").glob("*.png"))
    planted = {  # (split, copy of which train image, how changed)
        "val": [(train[0], lambda x: x), (train[1], lambda x: np.roll(x, 1, axis=1))],
        "test": [(train[2], lambda x: np.clip(x.astype(int) + 20, 0, 255).astype(np.uint8))],
    }
    for split, copies in planted.items():
        for source, change in copies:
            Image.fromarray(change(np.asarray(Image.open(source)))).save(data / split / "happy" / f"copy_{source.name}")
    configs = tmp_path / "configs"
    write_config(configs, "whole")
    write_config(configs, "deduped", data="img_size: 24, drop_cross_split_duplicates: true")
    runs = tmp_path / "runs"
    result = run_cli(*sweep_args([configs], data, runs, "--yes"))
    assert result.code == 0, result.err
    assert (
        "note: data.drop_cross_split_duplicates: left out 2 val, 1 test image(s) that are exact or near" in result.out
    )
    whole, deduped = (json.loads((runs / n / artifacts.PROVENANCE).read_text())["data"] for n in ("whole", "deduped"))
    assert deduped["dropped_duplicates"] == {"val": 2, "test": 1} and whole["dropped_duplicates"] is None
    assert deduped["images"] == {"train": 56, "val": 7, "test": 7} and whole["images"]["val"] == 9
    tested = json.loads((runs / "deduped" / artifacts.TEST_METRICS).read_text())["per_class"]
    assert sum(c["support"] for c in tested.values()) == 7, "the trial was scored without the copies"
    compared = run_cli("compare", "--runs-dir", runs)
    assert "these runs were trained on 2 different datasets" in compared.err
    assert deduped["fingerprint"][:8] in compared.out and whole["fingerprint"][:8] in compared.out
    one = run_cli("compare", "--runs-dir", runs, "--filter", f"data={deduped['fingerprint'][:8]}")
    assert one.code == 0 and "deduped" in one.out and "whole" not in one.out and not one.err


def test_run_trains_one_config_with_set_overrides(ray_session, synthetic_root, tmp_path, run_cli):
    config = write_config(tmp_path / "configs", "solo")
    runs = tmp_path / "runs"
    result = run_cli("run", config, "--data_root", synthetic_root, "--runs-dir", runs, "--set", "training.epochs=2")
    assert result.code == 0, result.err
    [record] = artifacts.read_log(runs)
    assert record["experiment"] == "solo" and record["epochs_run"] == 2
    result = run_cli("run", config, "--data-root", synthetic_root, "--runs-dir", runs, "--set", "training.epochs=2")
    assert result.code == 0 and "nothing to run" in result.out


def test_a_failing_trial_is_marked_failed_and_the_others_finish(
    subprocesses, ray_session, synthetic_root, tmp_path, run_cli, monkeypatch
):
    from tests.test_faults import torch_home_with_weights

    configs = tmp_path / "configs"
    write_config(configs, "healthy")
    # the planner finds ImageNet weights here; the trial's worker does not: the trial itself fails
    monkeypatch.setenv("TORCH_HOME", str(torch_home_with_weights(tmp_path)))
    write_config(configs, "broken", model="pretrained: true")
    runs = tmp_path / "runs"
    result = run_cli(*sweep_args([configs], synthetic_root, runs, "--yes"))
    assert result.code == 1
    assert "1 completed, 1 failed" in result.out and "FAILED broken" in result.out
    log = {r["experiment"]: r for r in artifacts.read_log(runs)}
    assert log["healthy"]["status"] == "completed" and artifacts.is_complete(runs, "healthy")
    assert log["broken"]["status"] == "failed" and "model.pretrained: false" in log["broken"]["error"]
    # the reason is the exception's message from its first line, and says where the traceback is
    reason = log["broken"]["error"]
    assert reason.startswith("ModelError: model.pretrained: ImageNet weights for 'resnet18' not found: ")
    assert reason.endswith(f"{log['broken']['sweep']}/{next(runs.glob('_tune/*/broken_*')).name}/error.txt)")
    assert not artifacts.is_complete(runs, "broken")
    # a later command reads the failed sweep in a process without Ray, as re-running `raytrain run`
    # does before it starts Ray (it used to ask Ray for its session folder and crash)
    script = (
        "import sys; from pathlib import Path\n"
        "from raytrain.sweeps.outcome import interrupted_sweep, summarize\n"
        "from raytrain.sweeps.settings import SweepSettings, latest_sweep\n"
        "settings = SweepSettings.load(latest_sweep(Path(sys.argv[1])))\n"
        "print(interrupted_sweep(Path(sys.argv[1]), settings.name)); print(summarize(settings).failed['broken'])"
    )
    proc = subprocesses.run(
        [sys.executable, "-c", script, str(runs)], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["None", reason]


def test_asking_for_a_gpu_the_cluster_does_not_have_is_a_clear_error(ray_session, synthetic_root, tmp_path, run_cli):
    configs = tmp_path / "configs"
    write_config(configs, "gpu_hungry", resources="gpu: 0.25")
    result = run_cli(*sweep_args([configs], synthetic_root, tmp_path / "runs", "--yes"))
    assert result.code == 2
    assert "gpu_hungry: resources.gpu: asks for 0.25 GPU per trial, but the Ray cluster has no GPU" in result.err
    assert "--gpus-per-trial 0" in result.err
    result = run_cli(*sweep_args([configs], synthetic_root, tmp_path / "runs", "--yes", "--gpus-per-trial", "0"))
    assert result.code == 0, result.err


LOGICAL_GPU_SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    import ray
    from ray import tune
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)  # one logical GPU
    from raytrain.cli import main
    configs, data, root = sys.argv[1:4]
    report = {}
    for gpus in ("0.5", "auto"):
        runs = pathlib.Path(root, gpus)
        extra = ["--gpus-per-trial", gpus] if gpus != "auto" else []
        code = main(["sweep", configs, "--data-root", data, "--runs-dir", str(runs), "--yes", *extra])
        [state] = [p for p in (runs / "_tune").iterdir() if p.is_dir()]
        trials = tune.ExperimentAnalysis(str(state)).trials
        ends = [t.last_result["timestamp"] for t in trials]
        report[gpus] = {"code": code, "resources": [t.placement_group_factory.required_resources for t in trials],
                        "times": [(end - t.last_result["time_total_s"], end) for t, end in zip(trials, ends)]}
    print(json.dumps(report))
""")


def test_gpu_requests_on_a_cluster_with_logical_gpus(subprocesses, synthetic_root, tmp_path):
    configs = tmp_path / "configs"
    for name in ("g1", "g2"):
        write_config(configs, name)
    proc = subprocesses.run(
        [sys.executable, "-c", LOGICAL_GPU_SCRIPT, str(configs), str(synthetic_root), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for gpus, expected_gpu in (("0.5", 0.5), ("auto", 1.0)):  # auto: one GPU each where there are GPUs
        assert report[gpus]["code"] == 0
        assert [r.get("GPU") for r in report[gpus]["resources"]] == [expected_gpu, expected_gpu]
        (start_a, end_a), (start_b, end_b) = report[gpus]["times"]
        overlapped = start_a < end_b and start_b < end_a
        # two half GPUs share the one logical GPU at once; two whole GPUs must take turns
        assert overlapped == (expected_gpu == 0.5), gpus


def test_a_config_asking_for_asha_gets_it_for_the_sweep(ray_session, tmp_path):
    from raytrain.sweeps.driver import start_sweep

    plan = plan_sweep([CONFIGS_DIR / "search" / "lr_search.yaml"], runs_dir=tmp_path / "runs")
    assert all(t.scheduler == {"type": "asha", "grace_period": 3, "reduction_factor": 3.0} for t in plan.trials)
    settings = start_sweep(plan, name=plan.name, data_root=tmp_path, runs_dir=tmp_path / "runs", storage=None)
    assert settings.scheduler["type"] == "asha" and len(settings.experiments) == 24
    assert {e["resources"]["gpu"] for e in settings.experiments} == {0.0}, "no GPU here: trials train on the CPU"
    plain = plan_sweep([CONFIGS_DIR / "lr_low.yaml"], runs_dir=tmp_path / "runs")
    assert start_sweep(plain, name=plain.name, data_root=tmp_path, runs_dir=tmp_path / "runs").scheduler is None
