"""Shared fixtures: the project's paths, a way to run the CLI in-process and read what it said, and
the two fixtures that make a test slow.

The tiers: a test whose fixtures include `ray_session` (a real local Ray) or `subprocesses` (it
starts processes: the CLI as a user runs it, servers, a cluster) is marked `slow` here, by what it
uses, not by hand (the one exception, torch.compile's test, says why where it is marked).
`make test-fast` runs the rest (`-m "not slow"`); `make test` runs everything.
A fast test that starts Ray or a Python process anyway fails and says which fixture to ask for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from raytrain.cli import main

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = PROJECT_ROOT / "configs"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Run `raytrain ARGS...` in this process; returns its exit code, stdout and stderr."""

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def free_loopback_port() -> int:
    """A port nothing listens on now, on 127.0.0.1: for the servers tests start (S3, MLflow)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# fixture -> why a test that uses it (directly or through another fixture) is in the slow tier
SLOW_FIXTURES = {"ray_session": "starts a local Ray", "subprocesses": "starts processes"}


def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in SLOW_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tests_start_neither_ray_nor_python(request, monkeypatch):
    """A test outside the slow tier that starts Ray or a Python process would make the fast tier
    slow unnoticed: it fails instead, naming the fixture that puts it where it belongs."""
    if request.node.get_closest_marker("slow"):
        return
    popen_init = subprocess.Popen.__init__

    def guarded_popen(self, args, *rest, **kwargs):
        program = args[0] if isinstance(args, (list, tuple)) and args else args
        if str(program) == sys.executable:
            pytest.fail("this test starts a Python process: ask for the `subprocesses` fixture (slow tier)")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)
    if "ray" in sys.modules:
        monkeypatch.setattr(
            sys.modules["ray"], "init", lambda *a, **k: pytest.fail("this test starts Ray: ask for `ray_session`")
        )


@pytest.fixture(scope="session")
def subprocesses():
    """The subprocess module, for tests and fixtures that start processes: asking for it puts them
    in the slow tier."""
    return subprocess


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray for the whole session, as Ray's own tests do (ray_start_2_cpus)."""
    ray = pytest.importorskip("ray")
    # trials unpickle test-module trainables by module name: workers need the test folders on their path
    path = os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic FER dataset on disk: 7 classes x 10 images at 24 px, split 8/1/1."""
    from raytrain.data import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("fer") / "data", size=24, per_class=10, seed=0)


@pytest.fixture(scope="session")
def tiny_dataset(synthetic_root, tmp_path_factory):
    from raytrain.data import load_dataset

    return load_dataset(synthetic_root, workers=1, cache_dir=tmp_path_factory.mktemp("cache"))


def tiny_config(**sections) -> dict:
    """The real baseline shrunk for a CPU test (the lightning-hydra-template way): 24 px, 2 epochs,
    from scratch. `sections` are dotted overrides, e.g. {"training.lr": 1e-3}."""
    from raytrain.config import load_config, resolved_dict

    overrides = {
        "model.pretrained": False,
        "training.epochs": 2,
        "training.batch_size": 16,
        "training.lr": 2e-3,
        "data.img_size": 24,
        "other.patience": 5,
        "other.workers": 1,
        "resources.cpu": 1,
        "training.precision": "fp32",  # the same numerics on every machine; test_numerics covers auto
        # every epoch, not every 2 minutes: tests stop and restore trials between their second-long epochs
        "other.checkpoint_epochs": 1,
    } | sections
    config = load_config(CONFIGS_DIR / "baseline.yaml", [f"{k}={v}" for k, v in overrides.items()])
    return resolved_dict(config)


def write_config(folder: Path, name: str, **sections: str) -> Path:
    """A tiny config on top of the shipped demo config; `sections` are YAML flow mappings."""
    folder.mkdir(exist_ok=True)
    lines = [f"extends: {PROJECT_ROOT / 'configs/demo/baseline_small.yaml'}", f"name: {name}"]
    # checkpoint_epochs 1: tests stop and restore trials between epochs (see tiny_config)
    merged = {
        "training": "epochs: 1, batch_size: 16",
        "data": "img_size: 24",
        "other": "workers: 1, checkpoint_epochs: 1",
    }
    merged |= sections
    lines += [f"{section}: {{{body}}}" for section, body in merged.items()]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_runs(ray_session, synthetic_root, tmp_path_factory) -> Path:
    """One real sweep of three tiny configs (lr, epochs and loss differ), shared by the results
    and report tests: runs/ as a user would have it after `raytrain sweep`."""
    from raytrain.cli import main

    root = tmp_path_factory.mktemp("tiny_runs")
    configs = root / "configs"
    write_config(configs, "alpha")
    write_config(configs, "beta", training="epochs: 2, batch_size: 16, lr: 0.001")
    write_config(configs, "gamma", loss="type: focal")
    runs = root / "runs"
    assert main(["sweep", str(configs), "--data-root", str(synthetic_root), "--runs-dir", str(runs), "--yes"]) == 0
    return runs
