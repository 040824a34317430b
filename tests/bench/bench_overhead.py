"""Benchmark: what a sweep spends per trial besides training, with trial processes reused and not.

    .venv/bin/python tests/bench/bench_overhead.py [--trials 24] [--slots 2]   # ~3 min on 2 busy cores
    .venv/bin/python tests/bench/bench_overhead.py --smoke                      # the suite runs this

One `raytrain sweep` of many one-epoch trials of a tiny model (24 px synthetic faces), run twice in
this one process (one Ray for both): with RAYTRAIN_REUSE_TRIAL_PROCESSES=0 (a new process, which
imports torch, per trial: raytrain before reuse) and with it on (the default). The fixed start-up (command to the
first trial's first epoch: Ray, the dataset, the first process and its torch import) and wind-down
(the last checkpoint to the command's end) are left out, as are the trials' own epochs (train and
val, `epoch_time_s`):

    overhead per trial = ((wall - start-up - wind-down) * slots - sum of epoch times) / trials

what a trial costs beyond its epoch: its process start where there is one, building the model,
its checkpoint, Tune's bookkeeping and publishing to runs/. It also counts the trial processes
(trace marks) and the most trials the status line said were running at once. Target: <= 0.5 s
per trial with reuse (from about 2.4 s).

Measured twice, one run after the other (`.venv/bin/python tests/bench/bench_overhead.py --trials 24
--slots 2`), on the shared 2-core box (AMD EPYC, `lscpu` model name; load average 2.5 falling to 0.4
from other jobs), ray 2.60, torch 2.14 CPU:

    trial processes  trials  processes  wall s  start-up s  wind-down s  epochs s  overhead s/trial  most running
    fresh                24         24   110.9         9.5          0.5      25.9              7.32             2
    reuse                24          2    20.6         4.7          0.6      19.1              0.48             2
    overhead per trial: 7.32 s fresh -> 0.48 s reused (15.2x less)

    fresh                24         24    86.3         9.5          0.6      21.8              5.44             2
    reuse                24          2    21.9         5.3          0.6      19.8              0.51             2
    overhead per trial: 5.44 s fresh -> 0.51 s reused (10.7x less)

With reuse a trial costs about half a second besides its epoch (target 0.5 s: met in the first run,
0.01 s over in the second); without it, 5-7 s here, where a process start and its torch import take
several seconds on two busy cores (about 2.4 s on the quieter machine of the issue). What is left:
building the model (ResNet-18's init, ~0.2 s), its checkpoint and best.pt written, copied to the
storage and published (fsynced) to runs/, and Tune's bookkeeping. The status line counted both
running trials as running whenever it was printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path

from scratch import scratch_folder  # beside this file

ROOT = Path(__file__).resolve().parents[2]
REUSE_ENV = "RAYTRAIN_REUSE_TRIAL_PROCESSES"  # raytrain.sweeps.driver.REUSE_PROCESSES_ENV
TARGET_S = 0.5


def config_yaml(trials: int) -> str:
    # one epoch each, patience out of the way; lr drawn per trial so every trial is its own experiment
    return (
        f"extends: {ROOT / 'configs/demo/baseline_small.yaml'}\n"
        "name: overhead\n"
        "training: {epochs: 1, batch_size: 16}\n"
        "data: {img_size: 24}\n"
        "other: {workers: 1, patience: 5}\n"
        "resources: {cpu: 1}\n"
        f"search:\n  num_samples: {trials}\n  seed: 0\n  space:\n    training.lr: {{loguniform: [1.0e-4, 1.0e-2]}}\n"
    )


def run_sweep(work: Path, data: Path, *, reuse: bool, slots: int, trace: Path) -> dict:
    """One real `raytrain sweep`, in this process (both sweeps share one Ray: the second skips
    ray.init, which the start-up leaves out anyway)."""
    from raytrain.cli import main

    label = "reuse" if reuse else "fresh"
    os.environ[REUSE_ENV] = "1" if reuse else "0"  # read by the driver when it builds the Tuner
    command = ["sweep", str(work / "configs"), "--data-root", str(data), "--runs-dir", str(work / f"runs-{label}")]
    command += ["--yes", "--max-concurrent", str(slots), "--name", f"overhead-{label}"]
    said = io.StringIO()
    launched = time.time()
    with contextlib.redirect_stdout(said):
        code = main(command)
    ended = time.time()
    if code != 0:
        raise SystemExit(f"sweep ({label}) exited {code}:\n{said.getvalue()[-3000:]}")
    marks = [m for m in map(json.loads, trace.read_text().splitlines()) if launched <= m["t"] <= ended]
    first_epoch = min(m["t"] for m in marks if m["event"] == "training_starts")
    last_checkpoint = max(m["t"] for m in marks if m["event"] == "checkpoint_written")
    epoch_s = [
        json.loads(line)["epoch_time_s"]
        for path in (work / f"runs-{label}").glob("_tune/*/*/result.json")
        for line in path.read_text().splitlines()
        if line.strip() and "epoch_time_s" in json.loads(line)
    ]
    running = [int(n) for n in re.findall(r"trials: (\d+) running", said.getvalue())]
    return {
        "label": label,
        "trials": len(epoch_s),
        "startup_s": first_epoch - launched,
        "winddown_s": ended - last_checkpoint,
        "wall_s": ended - launched,
        "epoch_s": sum(epoch_s),
        "processes": len({m["pid"] for m in marks if m["event"] == "trial_starts"}),
        "most_running": max(running, default=0),
    }


def overhead_per_trial(row: dict, slots: int) -> float:
    steady = row["wall_s"] - row["startup_s"] - row["winddown_s"]
    return (steady * slots - row["epoch_s"]) / row["trials"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--slots", type=int, default=2, help="trials at once (one CPU each)")
    parser.add_argument("--per-class", type=int, default=20, help="synthetic images per class")
    parser.add_argument("--smoke", action="store_true", help="2 trials of 5 images per class: checks that it runs")
    parser.add_argument("--keep", action="store_true", help="keep the data and runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.per_class = 2, 5
    with scratch_folder("bench-overhead-", keep=args.keep) as work:
        from raytrain.data import generate_synthetic, load_dataset

        # before Ray starts: its trial processes inherit the environment (trace marks, the cache)
        os.environ.update(RAYTRAIN_CACHE_DIR=str(work / "cache"), RAYTRAIN_TRACE_LOG=str(work / "trace.jsonl"))
        data = generate_synthetic(work / "data", size=24, per_class=args.per_class, seed=0)
        load_dataset(data, workers=1)  # decoded into the cache: the sweeps measure trials, not decoding
        (work / "configs").mkdir()
        (work / "configs" / "overhead.yaml").write_text(config_yaml(args.trials))
        trace = work / "trace.jsonl"
        rows = [run_sweep(work, data, reuse=reuse, slots=args.slots, trace=trace) for reuse in (False, True)]
    print(f"\n{args.trials} one-epoch trials, {args.slots} at a time, {os.cpu_count()} CPUs")
    print(
        f"{'trial processes':<16}{'trials':>7}{'processes':>11}{'wall s':>8}{'start-up s':>12}{'wind-down s':>13}"
        f"{'epochs s':>10}{'overhead s/trial':>18}{'most running':>14}"
    )
    for row in rows:
        print(
            f"{row['label']:<16}{row['trials']:>7}{row['processes']:>11}{row['wall_s']:>8.1f}{row['startup_s']:>12.1f}"
            f"{row['winddown_s']:>13.1f}{row['epoch_s']:>10.1f}{overhead_per_trial(row, args.slots):>18.2f}"
            f"{row['most_running']:>14}"
        )
    fresh, reused = (overhead_per_trial(row, args.slots) for row in rows)
    print(f"overhead per trial: {fresh:.2f} s fresh -> {reused:.2f} s reused ({fresh / max(reused, 1e-9):.1f}x less)")
    print(f"target (<= {TARGET_S} s per trial with reuse): {'met' if reused <= TARGET_S else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
