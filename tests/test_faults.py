"""Damage a real runs folder (a copy of the shared tiny sweep's) in each way a crash, a full disk or a
user can, and check what every command says: one warning naming the file, the right exit code, no
traceback, nothing else lost or altered, and that running the experiment again repairs it."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raytrain import artifacts, results
from raytrain.artifacts import DamagedRunsWarning
from raytrain.results import index as results_index
from raytrain.sweeps.plan import plan_sweep
from tests.test_cluster_script import local_cluster  # noqa: F401 - a fixture: a real two-node Ray cluster

EXPERIMENTS = ["alpha", "beta", "gamma"]
TABLES = {
    results.RESULTS_PARQUET,
    results.RESULTS_CSV,
    results.HISTORY_PARQUET,
    results.PER_CLASS_PARQUET,
    "report.html",
    "report.csv",
}


# --- helpers ------------------------------------------------------------------------------------------


def copy_runs(tiny_runs: Path, tmp_path: Path) -> Path:
    """A private copy of the shared sweep's runs/ to damage. Checkpoints are left out (no reader
    here needs them) and the big best.pt files are hard links: every damage below replaces a file,
    never writes into it, so the shared original is never touched."""
    runs = tmp_path / "runs"

    def link_weights(source, target):
        if source.endswith(".pt"):
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    shutil.copytree(tiny_runs, runs, ignore=shutil.ignore_patterns("checkpoint_*"), copy_function=link_weights)
    return runs


def truncate(path: Path) -> None:
    """What a crash mid-write leaves: the first half of the file (a new inode: see copy_runs)."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def snapshot(runs: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under runs/ with a digest of its bytes, minus the tables commands rewrite."""
    files = {}
    for path in sorted(runs.rglob("*")):
        relative = path.relative_to(runs).as_posix()
        # runs/_index is the readers' own cache (results_index): rewriting it is what reading does
        if (
            path.is_file()
            and relative not in TABLES
            and not relative.startswith((*skip, f"{results_index.INDEX_DIR}/"))
        ):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err[-2000:]


@pytest.fixture(scope="module")
def healthy(tiny_runs):
    """What results.load says of the undamaged folder, to compare the untouched rows against."""
    return results.load(tiny_runs).set_index("experiment")


def assert_rows_unchanged(frame, healthy, names) -> None:
    frame = frame.set_index("experiment")
    for name in names:
        assert frame.loc[name, "status"] == "completed"
        for column in ("val/macro_f1", "val/accuracy", "test/macro_f1", "best_epoch", "epochs_run", "training.lr"):
            assert frame.loc[name, column] == healthy.loc[name, column], (name, column)


# --- experiment_log.jsonl --------------------------------------------------------------------------


def test_a_torn_last_log_line_is_skipped_with_one_warning_and_the_next_append_starts_a_line(
    tiny_runs, tmp_path, run_cli, healthy
):
    runs = copy_runs(tiny_runs, tmp_path)
    log = runs / artifacts.EXPERIMENT_LOG
    with open(log, "a") as f:
        f.write('{"time": "2026-11-29T01:00:00+00:00", "sweep": "sweep-x", "experi')  # a crash mid-append
    before = snapshot(runs)

    result = run_cli("compare", "--runs-dir", runs)
    assert result.code == 0, result.err
    assert_no_traceback(result)
    [warning] = warning_lines(result.err)
    assert f"{log}: line 4 is not a whole record" in warning and "skipped it" in warning
    assert all(f" {name} " in result.out for name in EXPERIMENTS)
    assert run_cli("report", "--runs-dir", runs).code == 0
    assert snapshot(runs) == before, "reading changed a file"

    record = {"time": "2026-11-29T02:00:00+00:00", "sweep": "sweep-y", "experiment": "delta", "status": "failed"}
    artifacts.append_log(runs, record)
    with pytest.warns(DamagedRunsWarning, match="line 4 is not a whole record"):
        records = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in records[:-1]) == EXPERIMENTS
    assert records[-1] == record, "the new record was glued onto the torn fragment"
    with pytest.warns(DamagedRunsWarning):
        assert_rows_unchanged(results.load(runs), healthy, EXPERIMENTS)


# --- one experiment's folder -----------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.unlink()
    path.write_text("{not json")


DAMAGES = {
    "truncated best_metrics.json": (artifacts.BEST_METRICS, truncate, "unreadable (JSONDecodeError"),
    "truncated history.json": (artifacts.HISTORY, truncate, "unreadable (JSONDecodeError"),
    "no config.yaml": (artifacts.CONFIG, Path.unlink, "missing"),
    "no best_metrics.json": (artifacts.BEST_METRICS, Path.unlink, "missing"),
    "truncated best.pt": (artifacts.BEST_WEIGHTS, truncate, "truncated or not a torch/numpy archive"),
    "truncated confusion matrix": (artifacts.BEST_CONFUSION, truncate, "unreadable"),
    "garbage test_metrics.json": (artifacts.TEST_METRICS, _garbage, "unreadable (JSONDecodeError"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_experiment_shows_as_damaged_and_the_others_are_untouched(
    damage, tiny_runs, tmp_path, run_cli, healthy
):
    file, damage_it, problem = DAMAGES[damage]
    runs = copy_runs(tiny_runs, tmp_path)
    damage_it(runs / "alpha" / file)
    before = snapshot(runs)

    with pytest.warns(DamagedRunsWarning, match=f"alpha/{file}: {problem}".replace("(", r"\(")):
        frame = results.load(runs)
    rows = frame.set_index("experiment")
    assert rows.loc["alpha", "status"] == "damaged" and rows.loc["alpha", "problem"].startswith(f"{file}: {problem}")
    assert_rows_unchanged(frame, healthy, ["beta", "gamma"])
    with pytest.warns(DamagedRunsWarning):
        history = results.load_history(runs)
    assert {"beta", "gamma"} <= set(history["experiment"])

    result = run_cli("compare", "--runs-dir", runs)
    assert result.code == 0, result.err
    assert_no_traceback(result)
    [warning] = warning_lines(result.err)  # load() and load_history() both met it: said once
    assert f"{runs / 'alpha' / file}: {problem}" in warning and "run again" in warning
    alpha_line = next(line for line in result.out.splitlines() if " alpha " in line)
    assert "damaged" in alpha_line

    # the plan of the same configs runs the damaged experiment again (which repairs it), only it
    with pytest.warns(DamagedRunsWarning):
        plan = plan_sweep([tiny_runs.parent / "configs"], runs_dir=runs)
    assert {t.name: t.status for t in plan.trials} == {"alpha": "damaged", "beta": "done", "gamma": "done"}
    assert [t.name for t in plan.to_run] == ["alpha"]
    assert snapshot(runs) == before, "reading changed a file"


@pytest.mark.parametrize("damage", ["truncated best_metrics.json", "no config.yaml"])
def test_the_report_names_a_damaged_experiment_and_draws_the_rest(damage, tiny_runs, tmp_path, run_cli):
    file, damage_it, _ = DAMAGES[damage]
    runs = copy_runs(tiny_runs, tmp_path)
    damage_it(runs / "alpha" / file)
    result = run_cli("report", "--runs-dir", runs)
    assert result.code == 0, result.err
    assert_no_traceback(result)
    assert len(warning_lines(result.err)) == 1
    page = (runs / "report.html").read_text()
    assert "1 of 3 experiments is damaged" in page and f"alpha: {file}" in page
    assert "beta" in page and "gamma" in page


def test_running_the_sweep_again_repairs_a_damaged_experiment_only(tiny_runs, tmp_path, run_cli, synthetic_root):
    runs = copy_runs(tiny_runs, tmp_path)
    truncate(runs / "alpha" / artifacts.BEST_METRICS)
    others = snapshot(runs, skip=("alpha/", "_tune/", artifacts.EXPERIMENT_LOG))
    log_before = (runs / artifacts.EXPERIMENT_LOG).read_text()

    result = run_cli("sweep", tiny_runs.parent / "configs", "--data-root", synthetic_root, "--runs-dir", runs, "--yes")
    assert result.code == 0, result.err[-3000:]
    assert "damaged (to run again, which repairs it)" in result.out and "1 of 3 to run" in result.out
    assert "1 completed, 0 failed" in result.out
    artifacts.read_experiment(runs, "alpha")  # whole again
    assert (runs / artifacts.EXPERIMENT_LOG).read_text().startswith(log_before), "the log is only appended to"
    assert artifacts.read_log(runs)[-1]["experiment"] == "alpha"
    assert snapshot(runs, skip=("alpha/", "_tune/", artifacts.EXPERIMENT_LOG)) == others, "another experiment changed"
    assert (results.load(runs)["status"] == "completed").all()


# --- runs/_tune ------------------------------------------------------------------------------------


def test_a_deleted_tune_folder_costs_only_the_resume(tiny_runs, tmp_path, run_cli, healthy):
    runs = copy_runs(tiny_runs, tmp_path)
    [sweep_folder] = [p for p in (runs / artifacts.TUNE_DIR).iterdir() if p.is_dir()]
    shutil.rmtree(sweep_folder)
    before = snapshot(runs)

    result = run_cli("compare", "--runs-dir", runs)
    assert result.code == 0 and not warning_lines(result.err), result.err
    assert_rows_unchanged(results.load(runs), healthy, EXPERIMENTS)
    result = run_cli("resume", "--runs-dir", runs)
    assert result.code == 2
    assert_no_traceback(result)
    assert f"{sweep_folder}: sweep {sweep_folder.name}'s Tune experiment is not there (deleted or moved?)" in result.err
    assert "run the same `raytrain sweep` command again" in result.err
    assert snapshot(runs) == before


def test_a_torn_tune_state_file_is_a_clear_error_on_resume(tiny_runs, tmp_path, run_cli, synthetic_root):
    """Tune rewrites experiment_state-*.json in place: a disk that fills up can tear it."""
    runs = copy_runs(tiny_runs, tmp_path)
    [state] = runs.glob(f"{artifacts.TUNE_DIR}/*/experiment_state-*.json")
    truncate(state)
    result = run_cli("resume", "--runs-dir", runs)
    assert result.code == 2
    assert_no_traceback(result)
    assert f"{state.parent}: sweep {state.parent.name}'s" in result.err and "cannot be resumed" in result.err
    # what the message advises: the same sweep command, which finds every experiment done
    result = run_cli("sweep", tiny_runs.parent / "configs", "--data-root", synthetic_root, "--runs-dir", runs, "--yes")
    assert result.code == 0 and "nothing to run" in result.out, result.err


def test_damaged_tune_files_are_skipped_with_a_warning_each(tiny_runs, tmp_path, run_cli, healthy):
    runs = copy_runs(tiny_runs, tmp_path)
    trials = sorted(p for p in (runs / artifacts.TUNE_DIR).glob("*/*") if (p / "result.json").is_file())
    truncate(trials[0] / "params.json")
    with open(trials[1] / "result.json", "a") as f:
        f.write('{"epoch": 3, "val/mac')  # a torn last line
    result = run_cli("compare", "--runs-dir", runs)
    assert result.code == 0, result.err
    assert_no_traceback(result)
    warnings = warning_lines(result.err)
    assert len(warnings) == 2
    assert any(f"{trials[0] / 'params.json'}: unreadable" in w for w in warnings)
    assert any(f"{trials[1] / 'result.json'}: line" in w and "skipped it" in w for w in warnings)
    with pytest.warns(DamagedRunsWarning):
        assert_rows_unchanged(results.load(runs), healthy, EXPERIMENTS)


def test_a_damaged_sweep_file_is_a_clear_error_on_resume(tiny_runs, tmp_path, run_cli):
    runs = copy_runs(tiny_runs, tmp_path)
    [sweep_file] = (runs / artifacts.TUNE_DIR).glob("*.sweep.json")
    truncate(sweep_file)
    result = run_cli("resume", "--runs-dir", runs)
    assert result.code == 2
    assert_no_traceback(result)
    assert f"{sweep_file}: cannot read this sweep's settings (JSONDecodeError" in result.err


# --- a full or read-only disk (real tmpfs mounts: needs root) ---------------------------------------


@pytest.fixture
def mount_tmpfs(subprocesses, tmp_path):
    """mount_tmpfs(name, size, *options) -> a fresh tmpfs folder; unmounted after the test."""
    mounted = []

    def mount(name: str, size: str, *options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocesses.run(
            ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocesses.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(folder)], check=True)


@pytest.mark.parametrize("how, expected", [("read-only", "read-only file system"), ("full", "no space left on device")])
def test_a_runs_folder_that_cannot_be_written_stops_the_sweep_before_it_starts(
    how, expected, mount_tmpfs, tmp_path, run_cli, synthetic_root
):
    disk = mount_tmpfs("disk", "1m", "ro") if how == "read-only" else mount_tmpfs("disk", "1m")
    if how == "full":
        with open(disk / "filler", "wb") as f, pytest.raises(OSError):
            f.write(b"\0" * 2 * 2**20)
    configs = tmp_path / "configs"
    from tests.conftest import write_config

    write_config(configs, "one")
    result = run_cli("sweep", configs, "--data-root", synthetic_root, "--runs-dir", disk / "runs", "--yes")
    assert result.code == 2
    assert_no_traceback(result)
    assert f"{disk / 'runs'}: cannot write here ({expected}" in result.err
    assert "[one] epoch" not in result.out, "training started"


def test_a_disk_that_fills_during_the_sweep_fails_that_trial_and_resume_finishes_it(
    mount_tmpfs, tmp_path, run_cli, synthetic_root
):
    """runs/ on a 60 MB disk: the first finished trial's folder (a 45 MB best.pt) fits, the second's
    does not. The Tune storage is elsewhere, so what fills up is the publishing of the second."""
    from tests.conftest import write_config

    disk = mount_tmpfs("disk", "60m")
    runs = disk / "runs"
    configs = tmp_path / "configs"
    write_config(configs, "first")
    write_config(configs, "second", training="epochs: 1, batch_size: 16, lr: 0.001")
    sweep = [
        "sweep",
        configs,
        "--data-root",
        synthetic_root,
        "--runs-dir",
        runs,
        "--storage",
        tmp_path / "tune",
        "--yes",
    ]
    result = run_cli(*sweep)
    assert result.code == 1, result.out[-3000:] + result.err[-3000:]
    assert_no_traceback(result)
    assert "1 completed, 1 failed" in result.out
    [failed] = [line for line in result.out.splitlines() if line.startswith("  FAILED ")]
    assert "No space left on device" in failed and "raytrain resume" in failed
    done, full = ("first", "second") if "FAILED second" in failed else ("second", "first")
    kept = snapshot(runs / done)
    assert not artifacts.has_artifacts(runs / full), "half a folder was left behind"

    remount(disk, "size=200m")  # space freed
    result = run_cli("resume", "--runs-dir", runs)
    assert result.code == 0, result.out[-3000:] + result.err[-3000:]
    assert "2 completed, 0 failed, 0 unfinished" in result.out
    artifacts.read_experiment(runs, full)
    assert snapshot(runs / done) == kept, "what was published before the disk filled changed"
    statuses = [(r["experiment"], r["status"]) for r in artifacts.read_log(runs)]
    assert statuses.count((done, "completed")) == 1 and statuses[-1] == (full, "completed")


# --- a trial that fails on a user error: one line, no retries -------------------------------------------


def torch_home_with_weights(tmp_path: Path, arch: str = "resnet18") -> Path:
    """A TORCH_HOME whose cache holds `arch`'s ImageNet weights file (its name is all the planner
    checks). Set in a test after the session's Ray started, it is seen by the planner in this process
    and not by the trials, whose workers keep Ray's environment: a cluster node without the file."""
    import torchvision

    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / url.rsplit("/", 1)[-1]).write_bytes(b"not weights: the trial never reads this copy")
    return tmp_path / "torch"


def test_a_local_sweep_needing_missing_weights_is_refused_before_ray_starts(tmp_path, monkeypatch, run_cli):
    from tests.conftest import write_config

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    configs = tmp_path / "configs"
    write_config(configs, "fine")
    write_config(configs, "needs_weights", model="pretrained: true")
    write_config(configs, "also_needs", model="pretrained: true")
    monkeypatch.chdir(tmp_path)
    result = run_cli("sweep", "configs", "--data-root", "data", "--runs-dir", "runs", "--yes")
    assert result.code == 2, result.err
    assert_no_traceback(result)
    [problem] = result.err.removeprefix("error: ").split("\n", 1)[:1]
    assert problem.startswith("configs/also_needs.yaml, configs/needs_weights.yaml: model.pretrained: ImageNet weights")
    assert "(needed by also_needs, needs_weights)" in result.err and "model.pretrained: false" in result.err
    assert not (tmp_path / "runs").exists(), "nothing is written before the check"


def test_retrying_cannot_fix_a_user_error_from_a_trial_but_can_fix_the_rest():
    from ray.exceptions import RayTaskError

    from raytrain.errors import ModelError, OutOfGPUMemory
    from raytrain.sweeps.failures import retrying_cannot_fix

    def from_trial(err: Exception) -> Exception:  # what the driver gets back from a trial's train()
        return RayTaskError("train", "Traceback ...", err).as_instanceof_cause()

    assert retrying_cannot_fix(from_trial(ModelError("model.pretrained: weights missing")))
    assert retrying_cannot_fix(from_trial(OutOfGPUMemory("out of GPU memory at training.batch_size 512")))
    assert not retrying_cannot_fix(from_trial(OSError(5, "Input/output error")))
    assert not retrying_cannot_fix(from_trial(RuntimeError("CUDA error: an illegal memory access")))


def test_a_trial_failing_on_a_user_error_says_one_line_and_is_not_retried(
    ray_session, synthetic_root, tmp_path, monkeypatch, capfd
):
    from raytrain.cli import main
    from tests.conftest import write_config

    monkeypatch.setenv("TORCH_HOME", str(torch_home_with_weights(tmp_path)))
    config = write_config(tmp_path / "configs", "broken", model="pretrained: true")
    runs = tmp_path / "runs"
    code = main(["run", str(config), "--data-root", str(synthetic_root), "--runs-dir", str(runs)])
    out, err = capfd.readouterr()  # file descriptors: whatever Ray prints, not only Python's sys.stdout
    assert code == 1
    console = (out + err).splitlines()
    after_plan = console[next(i for i, line in enumerate(console) if line.startswith("run 1 trial(s)")) + 1 :]
    assert len(after_plan) <= 8, "\n".join(console)
    text = "\n".join(console)
    for ray_noise in ("Traceback", "Trial task failed", "Trials did not complete", "ray::", 'File "'):
        assert ray_noise not in text, text
    error_file = next(runs.glob("_tune/*/broken_*/error.txt"))
    assert [line for line in after_plan if line.startswith("[broken] FAILED: ModelError: model.pretrained:")]
    assert "  FAILED broken: ModelError: model.pretrained: ImageNet weights for 'resnet18' not found" in text
    assert f"(full traceback: {error_file})" in text, "the summary names the error file"
    assert error_file.read_text().startswith("Failure # 1 "), "a user error was retried"
    assert error_file.read_text().count("Failure # ") == 1, "a user error was retried"
    assert 'File "' in error_file.read_text(), "the traceback is kept where the line points"


# --- a runs folder moved between the kill and the resume ---------------------------------------------


def test_a_moved_runs_folder_resumes_and_publishes_where_it_is_now(subprocesses, synthetic_root, tmp_path):
    from tests.test_resume import slow_has_checkpointed_twice, start, trial_results

    first_home, second_home = tmp_path / "A", tmp_path / "B"
    second_home.mkdir()
    config = slow_config(first_home, epochs=10)
    old_runs = first_home / "runs"
    driver = start(["run", config.name, "--data-root", str(synthetic_root), "--runs-dir", "runs"], first_home)
    kill_once(driver, lambda: slow_has_checkpointed_twice(old_runs), "slow to checkpoint")
    assert max(r["epoch"] for r in trial_results(old_runs, "slow")) < 10, "slow finished before the kill"
    shutil.move(old_runs, second_home / "runs")
    assert not old_runs.exists()

    resumed = raytrain_here(subprocesses, second_home, "resume", "--runs-dir", "runs")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 completed, 0 failed, 0 unfinished" in resumed.stdout
    new_runs = second_home / "runs"
    assert not old_runs.exists(), f"the resume wrote into the old place: {sorted(old_runs.rglob('*'))[:10]}"
    assert artifacts.is_complete(new_runs, "slow")
    [record] = artifacts.read_log(new_runs)
    assert record["experiment"] == "slow" and record["status"] == "completed"
    assert list((new_runs / "_tune").glob("*/slow/events.out.tfevents.*")), "TensorBoard events are elsewhere"
    assert results.load(new_runs).set_index("experiment").loc["slow", "status"] == "completed"


# --- --force and resources -----------------------------------------------------------------------------


def test_publishing_again_removes_what_the_new_run_does_not_write(tmp_path):
    """A --force re-run on data without a test split: the old model's test scores must not stay."""
    earlier, later, runs = tmp_path / "earlier", tmp_path / "later", tmp_path / "runs"
    for folder, names in ((earlier, artifacts.TRIAL_ARTIFACTS), (later, artifacts.REQUIRED_ARTIFACTS)):
        folder.mkdir()
        for name in names:
            (folder / name).write_text(f"{folder.name} {name}")
    artifacts.publish_experiment(runs, "alpha", earlier, "config: earlier\n")
    assert (runs / "alpha" / artifacts.TEST_METRICS).read_text() == f"earlier {artifacts.TEST_METRICS}"
    artifacts.publish_experiment(runs, "alpha", later, "config: later\n")
    assert sorted(p.name for p in (runs / "alpha").iterdir()) == sorted(artifacts.REQUIRED_ARTIFACTS)
    assert (runs / "alpha" / artifacts.BEST_WEIGHTS).read_text() == f"later {artifacts.BEST_WEIGHTS}"
    assert (runs / "alpha" / artifacts.CONFIG).read_text() == "config: later\n"


def test_resources_decide_which_interrupted_sweep_a_command_is(tmp_path):
    from tests.conftest import write_config

    config = write_config(tmp_path / "configs", "alpha")
    named = {cpus: plan_sweep([config], runs_dir=tmp_path / "runs", cpus_per_trial=cpus).name for cpus in (64, 1)}
    assert named[64] != named[1], "the corrected command would offer to resume the sweep that asked for 64 CPUs"
    assert plan_sweep([config], runs_dir=tmp_path / "runs", cpus_per_trial=1).name == named[1]


def test_resources_no_node_has_are_an_error_before_any_trial(ray_session, synthetic_root, tmp_path, run_cli):
    from tests.conftest import write_config

    config = write_config(tmp_path / "configs", "greedy")
    runs = tmp_path / "runs"
    result = run_cli("run", config, "--data-root", synthetic_root, "--runs-dir", runs, "--set", "resources.cpu=64")
    assert result.code == 2
    assert_no_traceback(result)
    assert (
        "greedy: resources.cpu: asks for 64 CPU per trial, but the largest node of the Ray cluster has 2" in result.err
    )
    assert "--cpus-per-trial" in result.err
    assert not list(runs.rglob("*.sweep.json")) and not artifacts.read_log(runs), "a sweep was recorded"


# --- two commands on one runs folder ------------------------------------------------------------------


def test_sweep_locks_refuse_a_second_holder_and_claimed_experiments(tmp_path):
    import json
    import socket

    from raytrain.sweeps.locks import SweepBusy, hold_sweep, lock_file

    runs = tmp_path / "runs"
    with hold_sweep(runs, "sweep-a", ["alpha", "beta"]) as first:
        assert first.refused == {} and first.previous is None
        with pytest.raises(SweepBusy, match=rf"sweep sweep-a is already running \(PID {os.getpid()} on host "):
            hold_sweep(runs, "sweep-a", ["alpha"])
        with hold_sweep(runs, "sweep-b", ["beta", "gamma"]) as second:
            assert list(second.refused) == ["beta"] and second.refused["beta"].host == socket.gethostname()
            assert json.loads(lock_file(runs, "sweep-b").read_text())["experiments"] == ["gamma"]
        with hold_sweep(runs, "sweep-c", ["alpha"], force=True) as forced:
            assert forced.refused == {}, "--force runs it here too"
    assert lock_file(runs, "sweep-a").read_text() == "", "released: nothing to take over"
    with hold_sweep(runs, "sweep-b", ["beta"]) as again:
        assert again.refused == {} and again.previous is None, "sweep-a is gone: its claims went with it"
    # what a holder killed with -9 leaves: its record, with no lock on it
    lock_file(runs, "sweep-d").write_text(json.dumps({"pid": 4242, "host": "h", "since": "t", "experiments": ["x"]}))
    with hold_sweep(runs, "sweep-e", ["x"]) as other:
        assert other.refused == {}, "a dead holder's claim held"
    with hold_sweep(runs, "sweep-d", ["x"]) as taken_over:
        assert taken_over.previous.pid == 4242


def kill_once(driver: subprocess.Popen, condition, what: str, timeout_s: float = 240) -> None:
    """SIGKILL the driver and the Ray it started (its own session) once `condition` holds, as a crash."""
    from tests.test_resume import wait_for

    try:
        wait_for(condition, timeout_s, what)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)


def slow_config(folder: Path, name: str = "slow", epochs: int = 10) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}_{epochs}.yaml"
    path.write_text(
        f"extends: {Path(__file__).resolve().parent.parent / 'configs/demo/baseline_small.yaml'}\n"
        f"name: {name}\ntraining: {{epochs: {epochs}, batch_size: 16}}\ndata: {{img_size: 24}}\n"
        "other: {patience: 20, workers: 1, checkpoint_epochs: 1}\n"  # a checkpoint each epoch to kill after
    )
    return path


def raytrain_here(subprocesses, cwd: Path, *args: str, timeout: float = 300):
    return subprocesses.run(
        [sys.executable, "-m", "raytrain", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, RAYTRAIN_CACHE_DIR=str(cwd / "cache")),
    )


def test_one_writer_per_sweep_and_experiment_and_a_killed_holder_loses_its_lock(subprocesses, synthetic_root, tmp_path):
    import socket

    from tests.test_resume import slow_has_checkpointed_twice, start, trial_results, wait_for

    slow_config(tmp_path / "configs", epochs=40)  # still training while the other commands try
    runs = tmp_path / "runs"
    sweep = ["sweep", "configs", "--data-root", str(synthetic_root), "--runs-dir", "runs", "--yes"]
    driver = start(sweep, tmp_path)
    try:
        wait_for(lambda: slow_has_checkpointed_twice(runs), 240, "slow to checkpoint")
        holder = f"PID {driver.pid} on host {socket.gethostname()}"

        second_resume = raytrain_here(subprocesses, tmp_path, "resume", "--runs-dir", "runs")
        assert second_resume.returncode == 2, second_resume.stdout + second_resume.stderr
        assert "is already running" in second_resume.stderr and holder in second_resume.stderr
        assert "resuming sweep" not in second_resume.stdout, "it went on"

        same_command = raytrain_here(subprocesses, tmp_path, *sweep)  # offers to resume: the same refusal
        assert same_command.returncode == 2 and holder in same_command.stderr, same_command.stderr

        (tmp_path / "other").mkdir()
        slow_config(tmp_path / "other", epochs=39)  # the same experiment name, another config
        other_sweep = raytrain_here(
            subprocesses, tmp_path, "sweep", "other", "--data-root", str(synthetic_root), "--runs-dir", "runs", "--yes"
        )
        assert other_sweep.returncode == 2, other_sweep.stdout + other_sweep.stderr
        assert f"slow: another sweep is running it ({holder}" in other_sweep.stderr and "--force" in other_sweep.stderr
        for result in (second_resume, same_command, other_sweep):
            assert "Traceback" not in result.stdout + result.stderr
        assert driver.poll() is None, "the first sweep was disturbed"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the holder dies without a word: its lock must not outlive it
        driver.wait(timeout=60)
    assert max(r["epoch"] for r in trial_results(runs, "slow")) < 40, "slow finished: the test proves nothing"

    (tmp_path / "driver.log").unlink()
    resumed = start(["resume", "--runs-dir", "runs"], tmp_path)
    kill_once(resumed, lambda: "resuming sweep" in (tmp_path / "driver.log").read_text(), "the resume to go on")
    said = (tmp_path / "driver.log").read_text()
    assert f"last run ({holder}" in said and "ended without finishing" in said, said


def test_a_run_another_sweep_published_meanwhile_is_kept_and_this_trial_fails(
    subprocesses, synthetic_root, tiny_runs, tmp_path
):
    from raytrain.config import config_hash, load_config
    from tests.test_resume import start, wait_for

    slow_config(tmp_path / "configs", name="alpha", epochs=3)
    runs = tmp_path / "runs"
    driver = start(["sweep", "configs", "--data-root", str(synthetic_root), "--runs-dir", "runs", "--yes"], tmp_path)
    try:
        wait_for(lambda: list(runs.glob("_tune/*/alpha_*/result.json")), 240, "alpha to start training")
        # meanwhile another sweep (of another alpha) finished and published into the same runs folder
        shutil.copytree(tiny_runs / "alpha", runs / "alpha", ignore=shutil.ignore_patterns("checkpoint_*"))
        kept = config_hash(load_config(runs / "alpha" / artifacts.CONFIG))
        code = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    said = (tmp_path / "driver.log").read_text()
    assert code == 1, said[-3000:]
    assert f"[alpha] FAILED: {runs.resolve() / 'alpha'} holds another run of alpha (config hash {kept})" in said
    assert "Traceback" not in said
    assert config_hash(load_config(runs / "alpha" / artifacts.CONFIG)) == kept, "the other sweep's run was replaced"
    assert artifacts.read_experiment(runs, "alpha"), "the other run is no longer whole"


# --- reading a failed sweep after the fact -----------------------------------------------------------


def test_the_failure_reason_is_the_first_line_of_the_message_and_names_the_traceback():
    from raytrain.sweeps.failures import failure_reason

    error_txt = (
        "Failure # 1 (occurred at 2026-11-29_02-04-25)\n"
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=5268, ip=192.0.2.2, repr=raytrain_trial)\n"
        '  File "/x/raytrain/models.py", line 131, in _require_cached\n'
        "    raise ModelError(\n"
        "raytrain.training.models.ModelError: model.pretrained: weights not found: /t/r.pth is missing. On a machine "
        "with internet run\n"
        "    curl -L -o r.pth https://example/r.pth\n"
        "and copy the file to /t/r.pth, or set `model.pretrained: false`.\n"
        "Failure # 2 (occurred at 2026-11-29_02-04-34)\n"
        '  File "/x/train.py", line 9, in save\n'
        "OSError: [Errno 28] No space left on device: '/runs/_tune/x'\n"
    )
    assert failure_reason(error_txt) == "OSError: [Errno 28] No space left on device: '/runs/_tune/x'", (
        "the last failure"
    )
    first = failure_reason(error_txt.split("Failure # 2")[0])
    assert first.startswith("ModelError: model.pretrained: weights not found: /t/r.pth is missing.")
    assert first.endswith("or set `model.pretrained: false`."), "the message is cut"
    assert len(failure_reason(error_txt.replace("copy the file", "copy " * 500))) <= 600


# --- submit: results must outlive the job ----------------------------------------------------------


@pytest.mark.parametrize("runs_dir", [[], ["--runs-dir", "runs"], ["--runs-dir=results/runs"]])
def test_submit_refuses_a_runs_dir_inside_the_jobs_temporary_folder(runs_dir, run_cli):
    # port 9 (discard): nothing listens, so reaching the cluster would fail differently and later
    result = run_cli("submit", "--address", "http://127.0.0.1:9", "--", "sweep", "--data-root", "/data/fer", *runs_dir)
    assert result.code == 2
    assert_no_traceback(result)
    assert "submit: sweep:" in result.err and "temporary working directory on the head node" in result.err
    assert "--runs-dir /mnt/shared/raytrain/runs" in result.err and "cluster/README.md" in result.err


def test_a_submitted_job_records_the_submitting_checkouts_commit(subprocesses, monkeypatch):
    from raytrain.provenance import COMMIT_ENV_VAR, DIRTY_ENV_VAR, git_commit
    from raytrain.sweeps.jobs import job_runtime_env
    from tests.conftest import PROJECT_ROOT

    head = subprocesses.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    env = job_runtime_env(PROJECT_ROOT)
    assert env["working_dir"] == str(PROJECT_ROOT) and env["env_vars"][COMMIT_ENV_VAR] == head.stdout.strip()
    assert env["env_vars"][DIRTY_ENV_VAR] in ("0", "1")  # the diff too when dirty: tests/test_provenance.py
    # inside the job, where the upload has no .git, the sweep records what submit passed on
    monkeypatch.setenv(COMMIT_ENV_VAR, "abc1234")
    assert git_commit() == "abc1234"


# --- a node lost mid-trial ----------------------------------------------------------------------------


def test_a_node_lost_mid_trial_is_survived_and_ray_internals_stay_off_the_console(
    subprocesses,
    local_cluster,  # noqa: F811 - the fixture imported above
    synthetic_root,
    tmp_path,
):
    from tests.test_resume import trial_results, wait_for

    for name in ("left", "right"):  # one CPU each: the head and the worker node take one trial apiece
        path = slow_config(tmp_path / "configs", name=name, epochs=8)
        path.write_text(path.read_text() + "resources: {cpu: 1}\n")
    runs = tmp_path / "runs"
    env = {**local_cluster["env"], "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}
    env["RAYTRAIN_CACHE_DIR"] = str(tmp_path / "cache")
    address = f"127.0.0.1:{local_cluster['port']}"
    log = tmp_path / "driver.log"
    with open(log, "wb") as out:
        driver = subprocesses.Popen(
            [sys.executable, "-m", "raytrain", "sweep", "configs", "--data-root", str(synthetic_root)]
            + ["--runs-dir", "runs", "--address", address, "--yes"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def both_checkpointed() -> bool:
            try:
                return all(max(r["epoch"] for r in trial_results(runs, n)) >= 2 for n in ("left", "right"))
            except ValueError:  # a trial folder not there yet
                return False

        wait_for(both_checkpointed, 240, "both trials to checkpoint")
        # the worker node's raylet (its --temp-dir is <cluster dir>/w1): the node and its trial die with it
        worker_dir = f"{local_cluster['env']['RAYTRAIN_CLUSTER_DIR']}/w1/"
        processes = subprocesses.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        [raylet] = [
            int(line.split()[0]) for line in processes.splitlines() if "raylet/raylet " in line and worker_dir in line
        ]
        at_kill = {n: max(r["epoch"] for r in trial_results(runs, n)) for n in ("left", "right")}
        assert max(at_kill.values()) < 8, "a trial had finished: the test proves nothing"
        os.kill(raylet, signal.SIGKILL)
        code = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    said = log.read_text()
    assert code == 0, said[-3000:]
    assert "2 completed, 0 failed, 0 unfinished" in said
    for internals in ("Traceback", "state-dump", "Trial task failed", "(raylet)", "ray::", "RayActorError"):
        assert internals not in said, f"{internals!r} reached the console:\n{said[-3000:]}"
    records = artifacts.read_log(runs)
    assert sorted((r["experiment"], r["status"]) for r in records) == [("left", "completed"), ("right", "completed")]
    restored = [
        n
        for n in ("left", "right")
        if any(r["iterations_since_restore"] == 1 and r["epoch"] > 1 for r in trial_results(runs, n))
    ]
    assert len(restored) == 1, "the lost trial did not continue from its checkpoint"
