"""cluster/: the local two-node script starts a real Ray cluster that runs work on both nodes and stops
it again; the cloud launcher YAML and the KubeRay RayJob parse and carry the keys that matter."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = PROJECT_ROOT / "cluster"
SCRIPT = CLUSTER_DIR / "local_cluster.sh"
# The venv that runs this test holds `ray`; derived, not hard-coded, so any clone works.
VENV_BIN = Path(sys.executable).parent


def _port_free(port: int) -> bool:
    # The GCS port listens on all interfaces, so check the wildcard address, not only loopback.
    with socket.socket() as s:
        # SO_REUSEADDR as servers set it: a port whose listener is gone but whose old connections
        # linger in TIME_WAIT counts as free, one with a live listener does not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_ports() -> tuple[int, int]:
    """A GCS port P (with P+1 for the Ray client server) and a dashboard port, all free now.

    Drawn below 10000: Ray hands ports 10002-19999 to its workers, and the ephemeral range above
    32768 is where every process gets random ports, so either could be taken mid-test."""
    rng = random.Random()
    for _ in range(200):
        port, dashboard = rng.randrange(6400, 7900, 2), rng.randrange(8300, 9900)
        if all(_port_free(p) for p in (port, port + 1, dashboard)):
            return port, dashboard
    raise RuntimeError("no free port pair found in 6400-9900")


def _script(*args: str, env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def local_cluster(subprocesses):
    port, dashboard = _free_ports()
    # A short private --temp-dir: Ray's unix sockets inside it must stay under ~107 characters.
    temp_dir = tempfile.mkdtemp(prefix="rtc-", dir="/tmp")
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAYTRAIN_CLUSTER_DIR": temp_dir,
        "RAYTRAIN_CLUSTER_TIMEOUT_S": "60",
    }
    env.pop("RAY_ADDRESS", None)  # a stray address must not redirect the driver below
    try:
        started = _script("start", "--port", str(port), "--dashboard-port", str(dashboard), env=env)
        assert started.returncode == 0, f"start failed:\n{started.stdout}\n{started.stderr}"
        yield {"port": port, "dashboard": dashboard, "env": env, "start_output": started.stdout}
    finally:
        stopped = _script("stop", "--port", str(port), env=env, timeout=30)
        leftover = subprocesses.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert stopped.returncode == 0, f"stop failed:\n{stopped.stdout}\n{stopped.stderr}"
        assert not leftover.strip(), f"cluster processes survived stop: {leftover.split()}"
        assert _port_free(port), f"port {port} still in use after stop"


# Runs in its own process: a driver connected here must not collide with a ray.init() in pytest.
CHECK_NODES = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=sys.argv[1], log_to_driver=False)
    nodes = [n for n in ray.nodes() if n["Alive"]]

    @ray.remote(num_cpus=1)
    def node_id():
        return ray.get_runtime_context().get_node_id()

    pinned = [node_id.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
              for n in nodes]
    ran_on = ray.get([f.remote() for f in pinned], timeout=60)
    print(json.dumps({
        "nodes": [{"id": n["NodeID"], "cpus": n["Resources"].get("CPU"),
                   "head": "node:__internal_head__" in n["Resources"]} for n in nodes],
        "ran_on": ran_on,
    }))
    """
)


@pytest.mark.timeout(180)
def test_local_cluster_runs_a_task_on_each_of_two_nodes(subprocesses, local_cluster):
    port, dashboard, env = local_cluster["port"], local_cluster["dashboard"], local_cluster["env"]
    assert f"127.0.0.1:{port}" in local_cluster["start_output"]
    assert f"http://127.0.0.1:{dashboard}" in local_cluster["start_output"]

    # A client given an explicit address must opt into token auth itself (Ray 2.60).
    client_env = {**env, "RAY_AUTH_MODE": "token"}
    proc = subprocesses.run(
        [sys.executable, "-c", CHECK_NODES, f"127.0.0.1:{port}"],
        env=client_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    nodes = report["nodes"]
    assert len(nodes) == 2, nodes
    assert [n["cpus"] for n in nodes] == [1.0, 1.0]
    assert sorted(n["head"] for n in nodes) == [False, True]
    # Each pinned task ran where it was pinned: the worker node really executes work.
    assert report["ran_on"] == [n["id"] for n in nodes]


# What `raytrain submit` and `ray job submit` do: a Ray Job whose driver runs on the head.
SUBMIT_JOB = textwrap.dedent(
    """
    import sys, time
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(sys.argv[1])
    job = client.submit_job(entrypoint="python -c 'import ray; ray.init(); print(\\"nodes\\", len(ray.nodes()))'")
    deadline = time.monotonic() + 60
    while not (status := client.get_job_status(job)).is_terminal():
        if time.monotonic() > deadline:
            sys.exit(f"job still {status} after 60 s")
        time.sleep(0.5)
    print(status.value)
    print(client.get_job_logs(job))
    """
)


@pytest.mark.timeout(120)
def test_local_cluster_runs_a_submitted_job_only_with_the_token(subprocesses, local_cluster):
    dashboard, env = local_cluster["dashboard"], local_cluster["env"]
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/api/jobs/", timeout=10)
    assert denied.value.code == 401

    proc = subprocesses.run(
        [sys.executable, "-c", SUBMIT_JOB, f"http://127.0.0.1:{dashboard}"],
        env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("SUCCEEDED"), proc.stdout
    assert "nodes 2" in proc.stdout  # the job's driver joined this cluster, not a new one


@pytest.mark.timeout(60)
def test_local_cluster_status_and_double_start(local_cluster):
    port, dashboard, env = local_cluster["port"], local_cluster["dashboard"], local_cluster["env"]
    status = _script("status", "--port", str(port), env=env, timeout=40)
    assert status.returncode == 0, status.stderr
    assert f"http://127.0.0.1:{dashboard}" in status.stdout

    again = _script("start", "--port", str(port), "--dashboard-port", str(dashboard), env=env)
    assert again.returncode == 1
    assert f"port {port}" in again.stderr and "already in use" in again.stderr


def test_gpu_cluster_yaml_is_a_valid_launcher_config():
    config = yaml.safe_load((CLUSTER_DIR / "gpu-cluster.yaml").read_text())
    node_types = config["available_node_types"]
    assert config["cluster_name"]
    assert config["head_node_type"] in node_types
    gpu_types = [t for t in node_types.values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types and all(0 <= t["min_workers"] <= t["max_workers"] for t in gpu_types)
    assert node_types[config["head_node_type"]]["resources"].get("CPU") == 0
    assert any("pip install" in c and "ray[default]" in c for c in config["setup_commands"])
    assert any(c.startswith("/home/ubuntu/raytrain") for c in config["file_mounts"])
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)

    # The launcher's own schema check (what `ray up` runs), after it fills in the provider defaults.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))


def test_rayjob_yaml_runs_a_sweep_on_gpu_workers():
    import ray

    job = yaml.safe_load((CLUSTER_DIR / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("raytrain sweep")
    assert "--storage s3://" in spec["entrypoint"] and "--yes" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    yaml.safe_load(spec["runtimeEnvYAML"])  # a string holding YAML: it must parse too

    cluster = spec["rayClusterSpec"]
    # Client and cluster must run the same Ray: bump the manifest together with the project's Ray.
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in head["ports"]} >= {6379, 8265}
    groups = cluster["workerGroupSpecs"]
    gpu_limits = [
        g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0) for g in groups
    ]
    assert any(int(n) >= 1 for n in gpu_limits)
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)


def test_submit_runs_a_sweep_as_a_job_with_trials_on_both_nodes(subprocesses, local_cluster, synthetic_root, tmp_path):
    from raytrain import artifacts
    from tests.conftest import write_config

    configs = tmp_path / "configs"
    for name in ("left", "right"):  # one CPU each: the head and the worker take one trial apiece
        write_config(configs, name, training="epochs: 3, batch_size: 16")
    runs = tmp_path / "runs"
    env = {**local_cluster["env"], "RAY_AUTH_MODE": "token"}
    proc = subprocesses.run(
        [
            sys.executable,
            "-m",
            "raytrain",
            "submit",
            "--address",
            f"http://127.0.0.1:{local_cluster['dashboard']}",
            "--",
            "sweep",
            str(configs),
            "--data-root",
            str(synthetic_root),
            "--runs-dir",
            str(runs),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SUCCEEDED" in proc.stdout and "[left] done" in proc.stdout, "the job's logs are followed"
    log = artifacts.read_log(runs)
    assert sorted(r["experiment"] for r in log) == ["left", "right"]
    assert all(r["status"] == "completed" for r in log)
    assert len({r["node_id"] for r in log}) == 2, "both trials ran on one node"
    # the upload has no .git: the commit comes from the submitting checkout
    from raytrain.provenance import checkout_commit

    assert {r["git_commit"] for r in log} == {checkout_commit(PROJECT_ROOT)}
    assert f"results in {runs} on the cluster's head node" in proc.stdout
    assert artifacts.is_complete(runs, "left") and artifacts.is_complete(runs, "right")
