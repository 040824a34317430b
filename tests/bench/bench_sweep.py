"""Benchmark: 4 small configs as one parallel sweep vs the same 4 through `raytrain run` one after
another, and raytrain's fixed start-up overhead (command start to the first training step).

    .venv/bin/python tests/bench/bench_sweep.py [--epochs 3] [--size 48] [--smoke]

Every command is a real `raytrain` process on the same synthetic data (decoded into the cache
first, so neither side pays for decoding). Prints both wall times and their ratio. --smoke: one
config, one epoch at 24 px, for tests/test_benchmarks.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scratch import scratch_folder, synthetic_data  # beside this file

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("baseline_small", "focal_small", "sampler_small", "baseline_small_lr")


def raytrain(*args: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "raytrain", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def first_step_delay(runs: Path, launched_at: float) -> float:
    """Seconds from launching the command to the start of the first trial's first epoch."""
    starts = []
    for result in runs.glob("_tune/*/*/result.json"):
        first = json.loads(result.read_text().splitlines()[0])
        starts.append(first["timestamp"] - first["epoch_time_s"])
    return min(starts) - launched_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--per-class", type=int, default=100, help="synthetic images per class (700 in all)")
    parser.add_argument("--keep", action="store_true", help="keep the data and runs (default: removed at the end)")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: checks the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.size, args.per_class = 1, 24, 5
    with scratch_folder("bench-sweep-", keep=args.keep) as work:
        measure(work, args)


def measure(work: Path, args: argparse.Namespace) -> None:
    env = dict(os.environ, RAYTRAIN_CACHE_DIR=str(work / "cache"))
    data = synthetic_data(work / "data", size=args.size, per_class=args.per_class, env=env)
    configs = work / "configs"
    configs.mkdir()
    names = CONFIGS[:1] if args.smoke else CONFIGS
    for name in names:
        base = "baseline_small" if name == "baseline_small_lr" else name
        extra = "\ntraining: {lr: 0.001}" if name == "baseline_small_lr" else ""
        (configs / f"{name}.yaml").write_text(
            f"extends: {ROOT / 'configs/demo' / (base + '.yaml')}\nname: {name}\nother: {{patience: 100}}{extra}\n"
        )
    overrides = ["--set", f"training.epochs={args.epochs}"]

    launched = time.time()
    parallel = raytrain(
        "sweep",
        str(configs),
        "--data-root",
        str(data),
        "--runs-dir",
        str(work / "parallel"),
        "--yes",
        *overrides,
        env=env,
    )
    startup = first_step_delay(work / "parallel", launched)
    sequential = 0.0
    for name in names:
        sequential += raytrain(
            "run",
            str(configs / f"{name}.yaml"),
            "--data-root",
            str(data),
            "--runs-dir",
            str(work / "sequential"),
            *overrides,
            env=env,
        )

    print(
        f"{len(names)} configs, {args.epochs} epochs each, resnet18 at {args.size} px, {7 * args.per_class} images, "
        f"{os.cpu_count()} CPUs, 0.6 CPU per trial (the demo configs)"
    )
    print(f"  one parallel sweep         : {parallel:7.1f} s")
    print(f"  {len(names)} x `raytrain run` in turn : {sequential:7.1f} s")
    print(f"  speed-up sequential/sweep  : {sequential / parallel:7.2f}x")
    print(f"  start-up: command to first training step: {startup:.1f} s")


if __name__ == "__main__":
    main()
