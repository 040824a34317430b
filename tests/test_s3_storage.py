"""--storage s3://: a real two-node Ray cluster writes a sweep to a real S3 endpoint (moto's server on
127.0.0.1), the sweep's driver is killed, and `raytrain resume` restores it from the bucket. Also the
checks that stop a bad --storage before any training."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from raytrain import artifacts
from raytrain.training import checkpoints
from tests.conftest import PROJECT_ROOT, free_loopback_port, write_config
from tests.test_cluster_script import VENV_BIN, _free_ports, _port_free, _script

BUCKET, PREFIX = "raytrain-test", "sweeps"
STORAGE = f"s3://{BUCKET}/{PREFIX}"
# fast ends first; slow is still training when the driver is killed. Each takes one node's only CPU.
EPOCHS = {"fast": 2, "slow": 6}
# 1.4 MB of weights (resnet18: 45 MB): each checkpoint goes through moto, a Python server, and back on resume
MODEL = "arch: shufflenet_v2_x0_5"


@pytest.fixture(scope="module")
def s3_endpoint(subprocesses):
    """moto's S3 server on loopback, with an empty bucket; the AWS variables that point at it."""
    pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install -e '.[test]'); the S3 tests need it"
    )
    import boto3

    port = free_loopback_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocesses.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocesses.DEVNULL,
        stderr=subprocesses.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not come up on {endpoint}") from None
                time.sleep(0.2)
        # the standard AWS variables, as a user of MinIO or any S3-compatible store sets them
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"env": env, "client": client, "endpoint": endpoint}
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_cluster(subprocesses, s3_endpoint):
    """A head and a worker node on 127.0.0.1 (cluster/local_cluster.sh), started with the AWS
    variables: trials inherit the environment of the node that runs them."""
    port, dashboard = _free_ports()
    temp_dir = Path(subprocesses.check_output(["mktemp", "-d", "/tmp/rts-XXXXXX"], text=True).strip())
    env = {
        **os.environ,
        **s3_endpoint["env"],
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAYTRAIN_CLUSTER_DIR": str(temp_dir),
        "RAYTRAIN_CLUSTER_TIMEOUT_S": "60",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        started = _script("start", "--port", str(port), "--dashboard-port", str(dashboard), env=env)
        assert started.returncode == 0, f"start failed:\n{started.stdout}\n{started.stderr}"
        # what the sweep's driver runs with: the same variables, and token auth for an explicit address
        yield {"address": f"127.0.0.1:{port}", "env": {**env, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1"}}
    finally:
        stopped = _script("stop", "--port", str(port), env=env, timeout=30)
        assert stopped.returncode == 0, f"stop failed:\n{stopped.stdout}\n{stopped.stderr}"
        assert _port_free(port), f"port {port} still in use after stop"
        subprocesses.run(["rm", "-rf", str(temp_dir)], check=False)


def bucket_keys(client, prefix: str = PREFIX) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def trial_results(client, experiment: str) -> list[dict]:
    """Every result Tune recorded for the trial, read from its result.json in the bucket."""
    keys = [k for k in bucket_keys(client) if f"/{experiment}_" in k and k.endswith("/result.json")]
    if not keys:
        return []
    [key] = keys
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def checkpoint_objects(client, experiment: str) -> dict[str, str]:
    """The trial's checkpoint files in the bucket and their ETags: a trial run again writes new ones."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    return {
        item["Key"]: item["ETag"]
        for page in pages
        for item in page.get("Contents", [])
        if f"/{experiment}_" in item["Key"] and "/checkpoint_" in item["Key"]
    }


def has_checkpoint(client, experiment: str) -> bool:
    return any(f"/{experiment}_" in k and "/checkpoint_" in k for k in bucket_keys(client))


def lose_the_recorded_checkpoint(client, experiment_uri: str, experiment: str) -> str:
    """Leave the bucket as a driver killed mid-checkpoint can: the experiment state names checkpoint
    k, which the driver already deleted, and checkpoint k+1 is whole. Returns k+1's folder name."""
    from ray import tune

    [trial] = [
        t for t in tune.ExperimentAnalysis(experiment_uri).trials if t.config["experiment"]["name"] == experiment
    ]
    recorded = trial.checkpoint.path.split("/", 1)[1]  # bucket/key -> key
    index = int(recorded.rsplit("_", 1)[1])
    following = f"{recorded.rsplit('_', 1)[0]}_{index + 1:06d}"
    lost = bucket_keys(client, recorded + "/")
    if not lost:  # the race happened by itself: the driver deleted k, and k+1 is the trial's own upload
        assert bucket_keys(client, following + "/"), f"neither {recorded} nor {following} is in the bucket"
        return following.rsplit("/", 1)[1]
    for key in bucket_keys(client, following + "/"):  # a next checkpoint the trial was uploading when killed
        client.delete_object(Bucket=BUCKET, Key=key)
    for key in lost:
        client.copy_object(
            Bucket=BUCKET, Key=following + key[len(recorded) :], CopySource={"Bucket": BUCKET, "Key": key}
        )
        client.delete_object(Bucket=BUCKET, Key=key)
    return following.rsplit("/", 1)[1]


def wait_for(condition, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; driver log:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.5)


@pytest.mark.timeout(300)
def test_a_sweep_on_two_nodes_in_s3_is_killed_and_resumed_from_the_bucket(
    subprocesses, s3_cluster, s3_endpoint, synthetic_root, tmp_path, monkeypatch
):
    client, env = s3_endpoint["client"], s3_cluster["env"]
    for name, value in s3_endpoint["env"].items():  # this process reads the bucket through Tune too
        monkeypatch.setenv(name, value)
    configs = tmp_path / "configs"
    for name, epochs in EPOCHS.items():
        write_config(
            configs,
            name,
            training=f"epochs: {epochs}, batch_size: 16",
            other="patience: 20, workers: 1, checkpoint_epochs: 1",
            resources="cpu: 1",
            model=MODEL,
        )
    runs = tmp_path / "runs"
    log = tmp_path / "driver.log"
    command = [sys.executable, "-m", "raytrain"]
    driver = subprocesses.Popen(
        [
            *command,
            "sweep",
            str(configs),
            "--data-root",
            str(synthetic_root),
            "--runs-dir",
            str(runs),
            "--storage",
            STORAGE,
            "--address",
            s3_cluster["address"],
            "--yes",
        ],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=open(log, "ab"),
        stderr=subprocesses.STDOUT,
    )
    try:
        wait_for(lambda: any(r["experiment"] == "fast" for r in artifacts.read_log(runs)), 150, "fast to finish", log)
        wait_for(lambda: has_checkpoint(client, "slow"), 60, "a checkpoint of slow in the bucket", log)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver only: the cluster and the bucket stay
        code = driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == -signal.SIGKILL, output[-3000:]
    assert f"note: the Tune experiment (checkpoints, trial logs) is in {STORAGE}/" in output
    assert f"the runs folder (best.pt, metrics, experiment_log.jsonl) is {runs}" in output
    fast_before, slow_before = checkpoint_objects(client, "fast"), trial_results(client, "slow")
    fast_results = trial_results(client, "fast")
    # each trial took one node's only CPU: both nodes wrote to the bucket
    assert len({r["node_id"] for r in fast_results + slow_before}) == 2, "both trials ran on one node"
    killed_at_epoch = max((r["epoch"] for r in slow_before), default=0)
    assert killed_at_epoch < EPOCHS["slow"], "slow finished before the kill: the test proves nothing"
    # the Tune experiment is in the bucket, not on this machine; the runs folder is here
    assert not list(runs.glob(f"{artifacts.TUNE_DIR}/*/*/result.json"))
    assert artifacts.is_complete(runs, "fast")
    [sweep_file] = runs.glob(f"{artifacts.TUNE_DIR}/*.sweep.json")
    sweep_name = sweep_file.name.removesuffix(".sweep.json")
    # the kill may or may not have fallen between a checkpoint's deletion and the state's upload; make it so
    continued_from = lose_the_recorded_checkpoint(client, f"{STORAGE}/{sweep_name}", "slow")

    resumed = subprocesses.run(
        [*command, "resume", "--runs-dir", str(runs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "2 completed, 0 failed, 0 unfinished" in resumed.stdout
    assert (
        "[slow] its last recorded checkpoint" in resumed.stdout
        and f"continuing from {continued_from}" in resumed.stdout
    )

    records = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in records) == sorted(EPOCHS), "one log line per experiment"
    assert all(r["status"] == "completed" for r in records)
    # no epoch trained again, no checkpoint written again. (Its result.json is not compared: the killed
    # driver uploads it in the background, and once in five runs the bucket's copy differed after the
    # resume without any epoch trained again.)
    assert "[fast] epoch" not in resumed.stdout, "fast was run again"
    # A kill between fast's log line and the prune of its checkpoints leaves the prune to the resume,
    # which deletes objects and marks checkpoint.json published: neither is a checkpoint written again.
    fast_after = checkpoint_objects(client, "fast")
    written_again = {
        k for k, etag in fast_after.items() if fast_before.get(k) != etag and not k.endswith(checkpoints.INDEX_FILE)
    }
    assert not written_again, f"fast wrote checkpoint files again: {sorted(written_again)}"
    assert not [k for k in fast_after if k.endswith(".pt")], "fast's weights were left in the bucket after publishing"

    slow = trial_results(client, "slow")
    restarts = [r for r in slow if r["iterations_since_restore"] == 1 and r["epoch"] > 1]
    assert restarts, "slow was not restored from its checkpoint in the bucket"
    assert [r["epoch"] for r in slow].count(1) == 1, "slow started over from epoch 1"
    assert [h["epoch"] for h in json.loads((runs / "slow" / artifacts.HISTORY).read_text())] == list(
        range(1, EPOCHS["slow"] + 1)
    )
    for name in EPOCHS:
        assert artifacts.is_complete(runs, name), f"{name} is not whole in the runs folder on the driver's machine"
    keys = bucket_keys(client)
    assert any(k.endswith("/tuner.pkl") for k in keys) and any("/experiment_state-" in k for k in keys)


# --- a bad --storage stops the command before any training ------------------------------------------


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("s3:///no-bucket", "not a storage URI pyarrow can open (Missing bucket name in S3 URI)"),
        ("s3://", "names no bucket; use s3://BUCKET/PREFIX"),
        ("s3://bucket/runs?endpoint=localhost", "Unexpected query parameter in S3 URI: 'endpoint'"),
        ("s4://bucket/runs", "Unrecognized filesystem type"),
    ],
)
def test_a_malformed_storage_uri_is_one_message_and_exit_2(uri, expected, run_cli, tmp_path):
    result = run_cli(
        "run",
        PROJECT_ROOT / "configs/demo/baseline_small.yaml",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--storage",
        uri,
    )
    assert result.code == 2
    assert result.err.startswith(f"error: --storage {uri}: ") and expected in result.err, result.err
    assert "Traceback" not in result.err


def test_a_bucket_that_cannot_be_written_stops_the_sweep_before_ray_starts(s3_endpoint, run_cli, tmp_path, monkeypatch):
    import ray

    for name, value in s3_endpoint["env"].items():
        monkeypatch.setenv(name, value)
    ray_was_up = ray.is_initialized()
    result = run_cli(
        "run",
        PROJECT_ROOT / "configs/demo/baseline_small.yaml",
        "--data-root",
        tmp_path,
        "--runs-dir",
        tmp_path / "runs",
        "--storage",
        "s3://no-such-bucket/runs",
    )
    assert result.code == 2
    assert result.err.startswith("error: --storage s3://no-such-bucket/runs: cannot write there (")
    assert "AWS_ENDPOINT_URL=http://HOST:PORT" in result.err and "Traceback" not in result.err
    assert ray.is_initialized() == ray_was_up, "Ray started before the bucket was checked"


@pytest.mark.parametrize(
    "storage, expected",
    [
        ("s3:///no-bucket", "--storage s3:///no-bucket: not a storage URI pyarrow can open"),
        ("runs/_tune", "--storage runs/_tune would put the Tune experiment in the job's temporary working directory"),
    ],
)
def test_submit_refuses_a_storage_the_job_cannot_use_before_uploading(storage, expected, run_cli):
    result = run_cli(
        "submit",
        "--address",
        "http://127.0.0.1:1",
        "--",
        "sweep",
        "--data-root",
        "/data",
        "--runs-dir",
        "/srv/runs",
        "--storage",
        storage,
    )
    assert result.code == 2
    assert expected in result.err and "Traceback" not in result.err


def test_the_endpoint_can_be_given_in_the_uri_instead(s3_endpoint, monkeypatch):
    from raytrain.sweeps import storage
    from raytrain.sweeps.settings import SweepSettings

    for name, value in s3_endpoint["env"].items():
        if name != "AWS_ENDPOINT_URL":
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    uri = f"{STORAGE}?endpoint_override={s3_endpoint['endpoint'].removeprefix('http://')}&scheme=http"
    storage.check_reachable(uri)
    settings = SweepSettings(name="sweep-1", data_root="", runs_dir="", storage=uri, experiments=[])
    assert settings.experiment_path == f"{STORAGE}/sweep-1?endpoint_override={uri.split('=', 1)[1]}"
