"""MLflow, TensorBoard and W&B mirror runs/: one real tiny sweep with --mlflow against a real
`mlflow server` (SQLite store, local artifact folder, on 127.0.0.1) and --wandb offline, read back
through MLflow's client, TensorBoard's event reader and W&B's run file, and compared with
results.load. Then: a server that is down at the start, a resumed trial that continues its MLflow
run, and a server that dies mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from raytrain import artifacts, results
from raytrain.cli import main
from tests.conftest import free_loopback_port, write_config

mlflow = pytest.importorskip("mlflow")
EXPERIMENTS = {"alpha": "epochs: 2, batch_size: 16, lr: 0.003", "beta": "epochs: 2, batch_size: 16, lr: 0.001"}
WANDB_PROJECT = "raytrain-test"


@pytest.fixture(scope="module")
def mlflow_server(subprocesses, tmp_path_factory):
    """A real MLflow tracking server: SQLite backend store, artifacts proxied into a local folder."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_loopback_port()
    server = subprocesses.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=open(root / "server.log", "wb"),
        stderr=subprocesses.STDOUT,
        start_new_session=True,  # its own process group: the server and its workers stop together
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri, server
    stop(server)


def stop(server: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop the server this module started, by its own process group; SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, sig)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def tracked(ray_session, synthetic_root, mlflow_server, tmp_path_factory):
    """One real sweep of two tiny experiments with --mlflow and --wandb (offline)."""
    root = tmp_path_factory.mktemp("tracked")
    for name, training in EXPERIMENTS.items():
        write_config(root / "configs", name, training=training)
    runs = root / "runs"
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_DIR", "WANDB_SILENT")}
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")
    os.environ.pop("WANDB_DIR", None)
    try:
        code = main(
            [
                "sweep",
                str(root / "configs"),
                "--data-root",
                str(synthetic_root),
                "--runs-dir",
                str(runs),
                "--yes",
                "--mlflow",
                mlflow_server[0],
                "--wandb",
                WANDB_PROJECT,
            ]
        )
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    assert code == 0
    [sweep] = {r["sweep"] for r in artifacts.read_log(runs)}
    return runs, sweep


def mlflow_run(client, sweep: str, experiment: str):
    [exp] = [e for e in client.search_experiments() if e.name == sweep]
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`raytrain.experiment` = '{experiment}'")
    assert len(found) == 1, f"{experiment}: {len(found)} MLflow runs"
    return found[0]


# --- MLflow -------------------------------------------------------------------------------------------


def test_mlflow_holds_each_trial_as_results_load_shows_it(tracked, mlflow_server, tmp_path):
    runs, sweep = tracked
    client = mlflow.MlflowClient(mlflow_server[0])
    frame = results.load(runs)
    history = results.load_history(runs)
    assert sorted(frame["experiment"]) == sorted(EXPERIMENTS)
    for _, row in frame.iterrows():
        run = mlflow_run(client, sweep, row["experiment"])
        assert run.info.run_name == row["experiment"]
        assert run.info.status == "FINISHED" and run.data.tags["raytrain.status"] == row["status"] == "completed"
        # params: the resolved config under the dotted names results.load uses
        params = run.data.params
        assert params["training.lr"] == str(row["training.lr"]) and params["model.arch"] == row["model.arch"]
        assert params["training.epochs"] == "2" and "name" in params
        # every epoch with its step
        epochs = history[history["experiment"] == row["experiment"]]
        for metric in ("val/macro_f1", "train/loss", "lr", "val/f1/happy"):
            logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric)]
            assert logged == list(zip(epochs["epoch"], epochs[metric])), metric
        # the summary is the best epoch (what raytrain ranks by) and test
        metrics = run.data.metrics
        assert metrics["best_epoch"] == row["best_epoch"]
        for column in [c for c in frame.columns if c.startswith(("val/", "test/")) and "/support/" not in c]:
            name = f"best/{column}" if column.startswith("val/") else column
            assert metrics[name] == pytest.approx(row[column], abs=1e-12), name
        assert metrics["best/val/macro_f1"] == epochs["val/macro_f1"].max()
        # artifacts: the weights, the config and both confusion matrices, byte for byte
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert names == {"best.pt", "config.yaml", "best_confusion_matrix.npy", "test_confusion_matrix.npy"}
        got = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
        assert got.read_bytes() == (runs / row["experiment"] / "config.yaml").read_bytes()


def test_a_server_that_is_down_at_the_start_stops_the_sweep_before_training(run_cli, tmp_path):
    write_config(tmp_path / "configs", "alpha")
    uri = f"http://127.0.0.1:{free_loopback_port()}"  # nothing listens there
    got = run_cli(
        "sweep",
        tmp_path / "configs",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--yes",
        "--mlflow",
        uri,
    )
    assert got.code == 2
    assert f"--mlflow {uri}: the MLflow tracking server does not answer" in got.err and "Nothing was trained" in got.err
    assert "Traceback" not in got.err and not (tmp_path / "runs" / "_tune").exists()


def test_without_the_mlflow_package_the_message_says_what_to_install(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets where it is not installed
    write_config(tmp_path / "configs", "alpha")
    got = run_cli(
        "run",
        tmp_path / "configs" / "alpha.yaml",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--mlflow",
        "http://127.0.0.1:1",
    )
    assert got.code == 2 and "pip install 'raytrain[mlflow]'" in got.err


def test_wandb_online_without_a_key_says_how_to_log_in_or_go_offline(run_cli, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, so no key stored by `wandb login`
    write_config(tmp_path / "configs", "alpha")
    got = run_cli(
        "run",
        tmp_path / "configs" / "alpha.yaml",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--wandb",
        "proj",
    )
    assert got.code == 2 and "`wandb login`" in got.err and "WANDB_MODE=offline" in got.err, got.err


# --- TensorBoard ----------------------------------------------------------------------------------------


def test_tensorboard_has_one_run_per_experiment_with_readable_tags_and_best_epoch_hparams(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs, sweep = tracked
    frame = results.load(runs).set_index("experiment")
    history = results.load_history(runs)
    for name in EXPERIMENTS:
        events = EventAccumulator(
            str(runs / "_tune" / sweep / name)
        )  # `tensorboard --logdir runs/_tune`: <sweep>/<name>
        events.Reload()
        epochs = history[history["experiment"] == name]
        for tag in ("val/macro_f1", "val/accuracy", "val/loss", "train/loss", "lr", "val/f1/angry", "val/f1/neutral"):
            scalars = [(s.step, s.value) for s in events.Scalars(tag)]
            assert [step for step, _ in scalars] == list(epochs["epoch"]), tag
            assert [value for _, value in scalars] == pytest.approx(list(epochs[tag]), rel=1e-6, abs=1e-7), tag
        [best] = events.Scalars("best/val/macro_f1")
        assert best.step == frame.loc[name, "best_epoch"] and best.value == pytest.approx(
            frame.loc[name, "val/macro_f1"], abs=1e-7
        )
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        session = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        assert (
            b"training.lr" in session
            and b"best/val/macro_f1" in events.PluginTagToContent("hparams")["_hparams_/experiment"]
        )
    # Tune's own event files (ray/tune/* under <name>_<trial id>) are not written beside them
    assert not list((runs / "_tune" / sweep).glob("*_*/events.out.tfevents.*"))


# --- W&B ---------------------------------------------------------------------------------------------


def wandb_records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header, then LevelDB-log framing (32 KiB
    blocks; each chunk a 7-byte header of CRC, length and type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B"
    position, chunks = 7, []
    while position + 7 <= len(data):
        if block - position % block < 7:  # the rest of a block too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += block - position % block
            continue
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def read_wandb_run(path: Path) -> dict:
    run = {"history": [], "summary": {}}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run |= {"name": record.run.display_name, "project": record.run.project, "group": record.run.run_group}
            run["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            run["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run["summary"] |= {_key(item): json.loads(item.value_json) for item in record.summary.update}
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_runs_hold_every_epoch_and_the_best_epoch_as_summary(tracked):
    runs, sweep = tracked
    files = sorted((runs / "_wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    wandb_runs = {run["name"]: run for run in map(read_wandb_run, files)}
    assert sorted(wandb_runs) == sorted(EXPERIMENTS)  # one run per experiment, ready for `wandb sync`
    frame = results.load(runs).set_index("experiment")
    history = results.load_history(runs)
    for name, run in wandb_runs.items():
        assert run["project"] == WANDB_PROJECT and run["group"] == sweep and run["exit_code"] == 0
        assert run["config"]["training"]["lr"] == frame.loc[name, "training.lr"]
        epochs = history[history["experiment"] == name]
        assert [(h["_step"], h["val/macro_f1"]) for h in run["history"]] == list(
            zip(epochs["epoch"], epochs["val/macro_f1"])
        )
        summary = run["summary"]
        assert summary["status"] == "completed" and summary["best_epoch"] == frame.loc[name, "best_epoch"]
        for column in ("val/macro_f1", "val/accuracy", "val/f1/happy", "test/macro_f1", "test/accuracy"):
            assert summary[column] == pytest.approx(frame.loc[name, column], abs=1e-12), column


# --- resume and a server that goes down ----------------------------------------------------------------


def _reported_epoch(line: str) -> int:
    try:
        return json.loads(line).get("epoch", 0)
    except ValueError:  # empty, or a line Tune is still writing
        return 0


def interrupt_after(runs: Path, epoch: int) -> threading.Event:
    """Ctrl+C (SIGINT to this process, as a terminal sends it) once a trial has reported `epoch`,
    unless the returned event is set first (the sweep is over: a late SIGINT would stop pytest)."""
    over = threading.Event()

    def watch():
        while not over.wait(0.1):
            for path in runs.glob("_tune/*/*/result.json"):
                if any(_reported_epoch(line) >= epoch for line in path.read_text().splitlines()):
                    if not over.is_set():
                        os.kill(os.getpid(), signal.SIGINT)
                    return

    threading.Thread(target=watch, daemon=True).start()
    return over


def test_a_resumed_trial_continues_its_mlflow_run(ray_session, synthetic_root, mlflow_server, tmp_path):
    uri = mlflow_server[0]
    write_config(tmp_path / "configs", "long", training="epochs: 4, batch_size: 16")
    runs = tmp_path / "runs"
    over = interrupt_after(runs, epoch=1)
    args = ["--data-root", str(synthetic_root), "--runs-dir", str(runs), "--mlflow", uri]
    code = main(["sweep", str(tmp_path / "configs"), "--yes", "--name", "resumed", *args])
    over.set()
    assert code == 130
    client = mlflow.MlflowClient(uri)
    before = mlflow_run(client, "resumed", "long")
    logged_before = [m.step for m in client.get_metric_history(before.info.run_id, "val/macro_f1")]
    assert 1 <= len(logged_before) < 4

    assert main(["resume", "resumed", "--runs-dir", str(runs)]) == 0  # the tracking settings come from the sweep
    after = mlflow_run(client, "resumed", "long")  # still one run
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(after.info.run_id, "val/macro_f1")] == [1, 2, 3, 4]
    row = results.load(runs).set_index("experiment").loc["long"]
    assert after.data.metrics["best/val/macro_f1"] == pytest.approx(row["val/macro_f1"], abs=1e-12)
    # TensorBoard: the resumed trial's second events file continues the first, no epoch shown twice
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs / "_tune" / "resumed" / "long"))
    events.Reload()
    assert [s.step for s in events.Scalars("val/macro_f1")] == [1, 2, 3, 4]


def test_a_server_that_dies_mid_sweep_never_fails_a_trial(ray_session, synthetic_root, mlflow_server, tmp_path, capsys):
    """Last in this module: it kills the module's server."""
    uri, server = mlflow_server
    write_config(tmp_path / "configs", "survivor", training="epochs: 2, batch_size: 16")
    runs = tmp_path / "runs"

    def kill_once_the_trial_runs():
        # result.json appears as the trial starts, after the MLflow run was made: the epochs and
        # the finished trial then meet a dead server
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(runs.glob("_tune/*/*/result.json")):
            time.sleep(0.1)
        stop(server, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_the_trial_runs, daemon=True)
    killer.start()
    code = main(
        [
            "sweep",
            str(tmp_path / "configs"),
            "--data-root",
            str(synthetic_root),
            "--runs-dir",
            str(runs),
            "--yes",
            "--mlflow",
            uri,
        ]
    )
    killer.join(timeout=5)
    err = capsys.readouterr().err
    assert server.poll() is not None, "the server was meant to be down by now"
    assert code == 0 and artifacts.is_complete(runs, "survivor")
    assert results.load(runs).set_index("experiment").loc["survivor", "status"] == "completed"
    assert err.count("warning: MLflow:") == 1 and "stopped logging to it for the rest of this sweep" in err
