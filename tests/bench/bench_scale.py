"""Benchmark: what raytrain costs at scale besides training, one named part at a time.

    .venv/bin/python tests/bench/bench_scale.py [--part disk|startup|results|all] [--before OTHER_CHECKOUT] [--smoke]

disk     A finished resnet18 experiment (48 px, 6 epochs, default checkpoint settings) through
         `raytrain run`: the bytes left in runs/ and runs/_tune/ together (hard links counted once)
         against best.pt plus the small files, the bytes each checkpoint writes per epoch, and the
         largest checkpoint against one copy of the model and optimiser state.
results  scale_results.py: results.load (without and with the index), `raytrain compare` and
         `raytrain report` (seconds and peak memory) on 1,000 generated copies of a real finished
         experiment, then 10,000; targets at 1,000: compare <= 1.5 s, load <= 1 s, report <= 6 s
         and <= 500 MB.
startup  `raytrain run` of a one-epoch tiny config: seconds from launching the command to the start
         of the first training step, with the breakdown raytrain's trace marks give (python and
         imports, planning, ray.init, dataset load and put, Tune to the trial process, torch import,
         building the trial); also with mlflow and wandb hidden, as a plain `pip install raytrain`.

--before DIR runs the same experiment with the raytrain checkout in DIR (its .venv/bin/python),
for a before/after pair of figures. --smoke: a tiny model, 24 px, 2 epochs, one run serving both
parts, no --before: seconds, for tests/test_benchmarks.py. New parts go in PARTS.

Measured on the 2-core development machine (shared, load 6-19 while measuring; timings are noisy):
  disk, resnet18 48 px 6 epochs: before 213.6 MB (best.pt 42.7 MB; 5.00x best.pt in weights), after
    42.9 MB (1.00x); written per epoch per trial: before 170.7 MB, after 128.0 MB = one copy of the
    model + AdamW state (1.33x -> 1.00x).
  startup, launch to first training step, fastest of 3 interleaved runs at load ~8: before 54.4 s,
    after 44.3 s; one run at load ~5: after 15.3 s (ray.init 5.0, Tune to the trial process 4.7,
    trial's torch import 3.9, planning and imports 1.5, building the trial 0.9).
On the same machine quiet (load 0.3), after only:
  startup (--part startup --repeats 2): 8.4 s and 10.6 s (ray.init 2.9, Tune to the trial process
    1.5, trial's torch import 3.2, planning 1.0).
A day later, quiet (load ~1), before = the previous commit of main, in one interleaved run
(--part startup --repeats 3 --before), fastest of 3:
  startup: before 11.1 s, after 10.6 s (planning 1.2, ray.init 2.6 (3.9 before: no idle workers
    prestarted), Tune to the trial process 3.1, trial's torch and torchvision import 3.6); after,
    without the mlflow and wandb extras installed, 8.6 s: Tune's callback telemetry imports both
    in the driver where they are installed (Tune to the trial process 3.1 -> 1.9 s).
  results at 1,000 (scale_results.py --n 1000 --big 0 --before ...): report 7.88 s -> 4.69 s and
    215 -> 190 MB (per-class F1 and confusion matrices as HTML tables, fixed margins for plots of
    numbers), compare 1.66 -> 1.37 s (no config schema import), load with the index 0.22 -> 0.19 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from scratch import scratch_folder, synthetic_data  # noqa: E402 (beside this file)

TRACE_LOG_ENV = "RAYTRAIN_TRACE_LOG"  # raytrain.trace's; not imported, so --before can run any checkout
MB = 2**20


@dataclass
class Run:
    runs: Path
    name: str
    launched_at: float
    wall_s: float
    trace: list[dict]


@dataclass
class Setup:
    work: Path
    data: Path
    env: dict
    smoke: bool
    before: Path | None
    repeats: int = 3


def write_config(folder: Path, name: str, *, arch: str, size: int, epochs: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    # the demo's resnet18 config: 48 px, from scratch; patience high enough to run every epoch
    path.write_text(
        f"extends: {ROOT / 'configs/demo/baseline_small.yaml'}\nname: {name}\n"
        f"model: {{arch: {arch}}}\ntraining: {{epochs: {epochs}, batch_size: 32}}\n"
        f"data: {{img_size: {size}}}\nother: {{patience: 100, workers: 1}}\nresources: {{cpu: 2}}\n"
    )
    return path


def raytrain_run(
    setup: Setup, config: Path, runs: Path, python: str = sys.executable, extra_env: dict | None = None
) -> Run:
    trace = runs.parent / f"{runs.name}.trace.jsonl"
    env = dict(setup.env, **{TRACE_LOG_ENV: str(trace)}, **(extra_env or {}))
    launched = time.time()
    done = subprocess.run(
        [python, "-m", "raytrain", "run", str(config), "--data-root", str(setup.data), "--runs-dir", str(runs)],
        # cwd outside any checkout: `-m raytrain` must import the package of `python`'s own venv
        env=env,
        capture_output=True,
        text=True,
        cwd=setup.work,
    )
    wall = time.time() - launched
    if done.returncode != 0:
        raise SystemExit(f"raytrain run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    marks = [json.loads(line) for line in trace.read_text().splitlines()] if trace.is_file() else []
    return Run(runs, config.stem, launched, wall, marks)


def venv_python(checkout: Path) -> str:
    return str(checkout / ".venv" / "bin" / "python")


# --- disk ------------------------------------------------------------------------------------------


def disk_usage(folder: Path) -> tuple[int, int, int]:
    """(all bytes, bytes of *.pt files) under `folder`, each file (inode) once."""
    seen, total, weights = set(), 0, 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        total += stat.st_size
        weights += stat.st_size if path.suffix == ".pt" else 0
    return total, weights


def checkpoint_bytes(run: Run) -> list[int]:
    """Bytes each checkpoint wrote: from the trace, or (a checkout without it) the checkpoints left."""
    marked = [m["bytes"] for m in run.trace if m["event"] == "checkpoint_written"]
    if marked:
        return marked
    folders = run.runs.glob("_tune/*/*/checkpoint_*")
    return [sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) for f in folders]


def one_copy_of_state(arch: str) -> int:
    """torch.save of the model's and the AdamW optimiser's state after one step: one copy."""
    import io

    import torch

    from raytrain.training.models import build_model

    model = build_model(arch, 7, 1, 0.3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(2, 1, 32, 32)).sum().backward()
    optimizer.step()
    size = 0
    for state in (model.state_dict(), optimizer.state_dict()):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        size += buffer.tell()
    return size


def part_disk(setup: Setup, runs_cache: dict) -> None:
    arch, size, epochs = ("shufflenet_v2_x0_5", 24, 2) if setup.smoke else ("resnet18", 48, 6)
    config = write_config(setup.work / "configs", "disk", arch=arch, size=size, epochs=epochs)
    sides = [("after", sys.executable)] + ([("before", venv_python(setup.before))] if setup.before else [])
    print(f"\n== disk: {arch}, {size} px, {epochs} epochs, default checkpoint settings ==")
    one_copy = one_copy_of_state(arch)
    for side, python in sides:
        run = runs_cache.get(("disk", side)) or raytrain_run(setup, config, setup.work / f"runs-disk-{side}", python)
        runs_cache[("disk", side)] = run
        total, weights = disk_usage(run.runs)
        best = (run.runs / run.name / "best.pt").stat().st_size
        small = total - weights
        written = checkpoint_bytes(run)
        per_epoch = sum(written) / epochs if run.trace else (sum(written) / len(written) if written else 0)
        print(
            f"{side:6}  runs/ + runs/_tune/: {total / MB:8.1f} MB   best.pt {best / MB:.1f} MB   small files "
            f"{small / MB:.2f} MB   "
            f"weights / best.pt {weights / best:.2f}x (target <= 1.3x)"
        )
        print(
            f"{side:6}  bytes written per epoch per trial: {per_epoch / MB:8.1f} MB   largest checkpoint "
            f"{max(written, default=0) / MB:.1f} MB = {max(written, default=0) / one_copy:.2f}x one copy of model + "
            "optimiser "
            f"({one_copy / MB:.1f} MB)"
        )


# --- startup ---------------------------------------------------------------------------------------


STAGES = (  # (label, from mark, to mark); "launch" is when the benchmark started the command
    ("python start, imports of the CLI", "launch", "cli_starts"),
    ("planning, imports of the sweep", "cli_starts", "ray_init_starts"),
    ("ray.init", "ray_init_starts", "ray_init_done"),
    ("dataset load (cached) + put", "ray_init_done", "dataset_put"),
    ("Tune set-up to the trial process", "dataset_put", "trial_starts"),
    ("trial: import torch, raytrain.training.trainable", "trial_starts", "torch_imported"),
    ("trial: data to device, model, optimiser", "torch_imported", "training_starts"),
)


def without_tracker_packages(work: Path) -> dict:
    """The environment of a raytrain install without the mlflow and wandb extras: a folder first on
    PYTHONPATH whose mlflow.py and wandb.py raise ImportError. Where they are installed, Tune's
    callback telemetry imports both in the driver before the first trial starts (~1 s)."""
    hidden = work / "without-trackers"
    hidden.mkdir(exist_ok=True)
    for name in ("mlflow", "wandb"):
        (hidden / f"{name}.py").write_text(f'raise ImportError("{name}: hidden by bench_scale.py")\n')
    return {"PYTHONPATH": str(hidden)}


def first_step_delay(run: Run) -> float | None:
    """Seconds from launch to the first epoch's start, from Tune's own result.json (any checkout)."""
    starts = []
    for result in run.runs.glob("_tune/*/*/result.json"):
        first = json.loads(result.read_text().splitlines()[0])
        starts.append(first["timestamp"] - first["epoch_time_s"])
    return min(starts) - run.launched_at if starts else None


def part_startup(setup: Setup, runs_cache: dict) -> None:
    repeats = 1 if setup.smoke else setup.repeats
    print(
        f"\n== startup: `raytrain run` of a one-epoch tiny config, to its first training step (fastest of {repeats}) =="
    )
    config = write_config(
        setup.work / "configs", "startup", arch="shufflenet_v2_x0_5", size=24, epochs=1 if not setup.smoke else 2
    )
    sides = [("after", sys.executable, None)] + ([("before", venv_python(setup.before), None)] if setup.before else [])
    if not setup.smoke:
        sides.append(("after, without the tracker extras", sys.executable, without_tracker_packages(setup.work)))
    runs: dict[str, list[Run]] = {side: [] for side, _, _ in sides}
    for repeat in range(repeats):
        for i, (side, python, extra_env) in enumerate(
            sides
        ):  # interleaved: a busy spell on a shared machine hits every side
            # the smoke's one run serves both parts
            run = runs_cache.get(("disk", side)) if setup.smoke else None
            folder = setup.work / f"runs-startup-{i}-{repeat}"
            runs[side].append(run or raytrain_run(setup, config, folder, python, extra_env))
    for side, _, _ in sides:
        delays = sorted(first_step_delay(r) for r in runs[side])
        run = min(runs[side], key=first_step_delay)
        print(
            f"{side}\n        launch to first training step: {delays[0]:6.1f} s   (all runs: "
            f"{', '.join(f'{d:.1f}' for d in delays)} s; "
            f"whole command {run.wall_s:.1f} s; target <= 10 s)"
        )
        marks = {}
        for m in run.trace:
            marks.setdefault(m["event"], m["t"])
        marks["launch"] = run.launched_at
        for label, start, end in STAGES:
            if start in marks and end in marks:
                print(f"        {label:42} {marks[end] - marks[start]:6.1f} s")


# --- results ---------------------------------------------------------------------------------------


def part_results(setup: Setup, runs_cache: dict) -> None:
    """results.load, compare and report on 1,000 and 10,000 copies of a real finished experiment
    (scale_results.py generates and measures). In a process of its own: a child's peak memory
    starts at its parent's size, and this one has imported torch for the disk part."""
    print("\n== results: results.load, `raytrain compare`, `raytrain report` on generated experiments ==", flush=True)
    command = [sys.executable, str(Path(__file__).with_name("scale_results.py")), "--work", str(setup.work / "results")]
    if setup.smoke:
        command.append("--smoke")
        run = runs_cache.get(("disk", "after"))  # the smoke's one real run is what the copies copy
        if run:
            command += ["--source", str(run.runs / run.name)]
    command += ["--before", venv_python(setup.before)] if setup.before else ["--no-before"]
    subprocess.run(command, check=True, env=setup.env)


PARTS = {"disk": part_disk, "startup": part_startup, "results": part_results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--before", type=Path, help="a raytrain checkout with its .venv, e.g. a clone of main")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: checks the benchmark runs")
    parser.add_argument("--per-class", type=int, default=30, help="synthetic images per class")
    parser.add_argument("--repeats", type=int, default=3, help="startup: runs per side; the fastest is shown")
    parser.add_argument("--keep", action="store_true", help="keep the data and runs (default: removed at the end)")
    args = parser.parse_args()
    if args.smoke:
        args.before, args.per_class = None, 10
    with scratch_folder("bench-scale-", keep=args.keep) as work:
        measure(work, args)


def measure(work: Path, args: argparse.Namespace) -> None:
    env = dict(os.environ, RAYTRAIN_CACHE_DIR=str(work / "cache"), PYTHONUNBUFFERED="1")
    env.pop(TRACE_LOG_ENV, None)
    data = synthetic_data(work / "data", size=24 if args.smoke else 48, per_class=args.per_class, env=env)
    setup = Setup(work, data, env, args.smoke, args.before, args.repeats)
    runs_cache: dict = {}
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            part(setup, runs_cache)


if __name__ == "__main__":
    main()
