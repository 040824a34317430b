"""Benchmark: Optuna TPE + ASHA vs random search + ASHA vs PBT vs the full grid, at the same budget.

    .venv/bin/python tests/bench/bench_search.py [--seeds 3] [--methods optuna_asha,random_asha,pbt] [--work DIR]
    .venv/bin/python tests/bench/bench_search.py --smoke                    # ~1 min: the suite runs this

The problem is built here: 7 classes of oriented bars in noise (24 px grayscale image folders), a
small torchvision model (shufflenet_v2_x0_5) from scratch, and a learning-rate x weight-decay space
in which most points are poor (too slow to learn in a few epochs, or decayed to nothing). Each
method is a real `raytrain sweep` of the same base config; the grid runs every point for every
epoch, the two searches get as many trials as the grid has points, and ASHA stops their poor trials;
PBT trains as many members as the grid has points for as many epochs (the grid's trial-epochs),
all deciding together after every epoch (synchronous), the bottom quarter copying the top quarter.
Prints, per method and search seed, the best val macro F1 found, the trial-epochs spent and when the
best so far came within 0.01 of the grid's (every epoch of every trial counted, in the order they ended).
Targets: optuna+ASHA within 0.01 of the grid's best with <= 40% of the grid's trial-epochs; PBT's best
at least optuna+ASHA's on 2 of 3 search seeds.

PBT against optuna+ASHA and the grid, shrunk to run in ~7 minutes on the shared 2-core box (AMD EPYC,
`lscpu` model name; other jobs running), ray 2.60:

    .venv/bin/python tests/bench/bench_search.py --seeds 3 --methods optuna_asha,pbt --per-class 40 \
        --grid-points 3 --work /tmp/bench-search

    9 trials per method, 5 epochs max, shufflenet_v2_x0_5 at 24 px, 280 images (7 bar orientations), 2 CPUs
    method         seed  best val F1  gap to grid  trial-epochs  % of grid  to reach  % of grid  pruned  failed
    grid              -        0.233       +0.000            45       100%        30        67%       0       0
    optuna_asha       1        0.282       +0.049            35        78%        35        78%       5       0
    pbt               1        0.347       +0.114            45       100%        28        62%       0       0
    optuna_asha       2        0.250       +0.017            37        82%        11        24%       4       0
    pbt               2        0.192       -0.041            45       100%     never          -       0       0
    optuna_asha       3        0.345       +0.112            39        87%        33        73%       3       0
    pbt               3        0.434       +0.201            45       100%        32        71%       0       0
    optuna_asha    mean        0.293       +0.059          37.0        82%
    pbt            mean        0.324       +0.091          45.0       100%
    target (PBT's best >= optuna+ASHA's on at least 2 of 3 seeds): 2 of 3, met

PBT beat optuna+ASHA on seeds 1 and 3 (by 0.07 and 0.09) and lost on seed 2 (by 0.06, under the
grid's best too); its mean is 0.03 higher. It spent all 45 trial-epochs (the grid's), optuna+ASHA
35-39 (ASHA stopped 3-5 of 9 trials). Shrunk (3x3 grid, 40 images per class, so val is 42 images):
differences of 0.05 are within the noise of one run, and three seeds do not settle which is better.

Optuna+ASHA, random+ASHA and the grid at the full size (16 trials, 80 images per class), measured
before PBT, with 'to reach' counted per trial as trials finished (2 shared CPUs, ray 2.60, optuna TPE
with 5 random startup trials, 2 proposals in flight; ~35 min):

    method         seed  best val F1  gap to grid  trial-epochs  % of grid  to reach  % of grid  pruned  failed
    grid              -        0.355       +0.000            76       100%        45        59%       0       1
    optuna_asha       1        0.554       +0.199            64        84%        32        42%       8       0
    random_asha       1        0.365       +0.011            70        92%        51        67%       5       0
    optuna_asha       2        0.462       +0.107            60        79%        32        42%       9       0
    random_asha       2        0.498       +0.144            60        79%        10        13%      10       0
    optuna_asha       3        0.648       +0.294            70        92%        31        41%       5       0
    random_asha       3        0.357       +0.003            66        87%         5         7%       7       0
    optuna_asha    mean        0.555       +0.200          64.7        85%
    random_asha    mean        0.407       +0.052          65.3        86%

optuna+ASHA beat the grid's best on every seed (by 0.11 to 0.29; random+ASHA by 0.00 to 0.14) but
came within 0.01 of it only after 41-42% of the grid's trial-epochs (target <= 40%: just missed),
and its whole budget cost 79-92% of the grid's epochs: with 16 trials ASHA (grace 1, reduction 3)
lets about half through to the end. The decade grid misses the good learning-rate band, so its best
is a low bar that a lucky random draw can clear at once (random seeds 2 and 3).

With --reduction-factor 4 (Ray's own ASHA default; quiet machine, same data and seeds) it did worse:
optuna+ASHA best 0.388 / 0.292 / 0.648 (seed 2 never came within 0.01 of the grid's 0.355), within
0.01 after 75% / never / 41% of the grid's trial-epochs; random+ASHA 0.365 / 0.498 / 0.357. At 16
trials the seed-to-seed spread is as large as the difference between the methods.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scratch import scratch_folder  # beside this file

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
SPLITS = {"train": 0.7, "val": 0.15, "test": 0.15}


def make_bars(root: Path, *, per_class: int, size: int = 24, seed: int = 0) -> Path:
    """Image folders: class k is a bar at angle k * 180/7 degrees, placed, sized and lit at random,
    in Gaussian noise. Learnable in a few epochs at a good learning rate, not at a poor one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for label, name in enumerate(CLASSES):
        angle = np.pi * label / len(CLASSES)
        for i in range(per_class):
            cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
            jitter = angle + rng.normal(0, 0.06)
            # distance from the bar's axis and along it
            across = np.abs((xx - cx) * np.sin(jitter) - (yy - cy) * np.cos(jitter))
            along = np.abs((xx - cx) * np.cos(jitter) + (yy - cy) * np.sin(jitter))
            bar = (across < rng.uniform(1.5, 2.5)) & (along < rng.uniform(size * 0.25, size * 0.4))
            image = 0.3 + rng.uniform(0.4, 0.6) * bar + rng.normal(0, 0.15, (size, size))
            split = _split_of(i, per_class)
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / f"{name}_{i:04d}.png")
    return root


def _split_of(i: int, n: int) -> str:
    edge = 0.0
    for split, share in SPLITS.items():
        edge += share
        if i < round(edge * n):
            return split
    return "test"


# lr x wd: a good band of lr in the middle of four decades, and weight decay that erases the weights
# once lr * wd is large (AdamW decays by lr * wd per step)
LR, WD = (1.0e-5, 1.0e-1), (1.0e-4, 1.0e2)
SEARCHES = ("optuna_asha", "random_asha", "pbt")  # each run against the grid, per search seed
GRID_LR = [1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1]
GRID_WD = [1.0e-4, 1.0e-2, 1.0, 1.0e2]


def base_yaml(name: str, epochs: int) -> str:
    return (
        f"extends: {ROOT / 'configs/demo/baseline_small.yaml'}\n"
        f"name: {name}\n"
        "model: {arch: shufflenet_v2_x0_5, pretrained: false, dropout: 0.0}\n"
        f"training: {{epochs: {epochs}, batch_size: 16}}\n"  # 16: enough steps per epoch on a small set
        "loss: {label_smoothing: 0.0}\n"
        "augmentation: {hflip: 0.0, rotation: 0.0, scale: 0.0, translate: 0.0, brightness: 0.0, contrast: 0.0, "
        "mixup_alpha: 0.0}\n"
        "data: {img_size: 24}\n"
        f"other: {{workers: 1, patience: {epochs}}}\n"  # never stopped by patience: only ASHA stops early
        "resources: {cpu: 1}\n"
    )


def method_yaml(
    method: str, seed: int, *, epochs: int, budget: int, grid_lr: list, grid_wd: list, reduction: float = 3
) -> str:
    name = f"{method}_s{seed}"
    text = base_yaml(name, epochs)
    asha = f"  scheduler: {{type: asha, grace_period: 1, reduction_factor: {reduction:g}}}\n"
    ranges = (
        f"    training.lr: {{loguniform: [{LR[0]}, {LR[1]}]}}\n"
        f"    training.weight_decay: {{loguniform: [{WD[0]}, {WD[1]}]}}\n"
    )
    if method == "grid":
        grids = f"    training.lr: {{grid: {grid_lr}}}\n    training.weight_decay: {{grid: {grid_wd}}}\n"
        return text + f"search:\n  space:\n{grids}"
    if method == "random_asha":
        return text + f"search:\n  num_samples: {budget}\n  seed: {seed}\n{asha}  space:\n{ranges}"
    if method == "pbt":
        # as many members as the grid has points, for as many epochs: the same trial-epochs. All
        # decide together after every epoch (synchronous), so no member trains an epoch twice; the
        # bottom quarter copies the top quarter
        pbt = (
            f"search:\n  algorithm: pbt\n  population: {budget}\n  perturbation_interval: 1\n"
            f"  synchronous: true\n  quantile_fraction: 0.25\n  seed: {seed}\n"
        )
        return text + pbt + f"  space:\n{ranges}"
    # two proposals in flight, one per CPU here: each proposal sees every result but the one
    # trial still running beside it
    optuna = f"search:\n  algorithm: optuna\n  num_samples: {budget}\n  max_concurrent: 2\n  seed: {seed}\n"
    return text + optuna + f"{asha}  space:\n{ranges}"


def run_method(method: str, seed: int, work: Path, data: Path, **shape) -> dict:
    """One real `raytrain sweep` (in this process, so every sweep shares one Ray) -> its best val
    macro F1, trial-epochs spent and trials. A trial that diverges (NaN loss at a high lr and weight
    decay) fails: that is part of a poor space, so its epochs count and it scores nothing. Run again
    with the same --work, finished sweeps are skipped (raytrain skips what runs/ holds)."""
    from raytrain import artifacts, results
    from raytrain.cli import main

    configs = work / "configs" / f"{method}_s{seed}"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / "search.yaml").write_text(method_yaml(method, seed, **shape))
    runs = work / "runs" / f"{method}_s{seed}"
    # a sweep name of its own per run: nothing to look up from an earlier run of the same --work
    name = f"{method}_s{seed}_{time.strftime('%H%M%S')}"
    code = main(["sweep", str(configs), "--data-root", str(data), "--runs-dir", str(runs), "--yes", "--name", name])
    if code not in (0, 1):  # 1: some trials failed
        raise SystemExit(f"{method} seed {seed}: sweep exited {code}; see the output above")
    frame = results.load(runs)
    log = artifacts.read_log(runs)
    epochs = epoch_results(runs)
    return {
        "best": float(frame["val/macro_f1"].max()),
        "trial_epochs": len(epochs),
        "trials": len(frame),
        "pruned": sum(r["status"] == "pruned" for r in log),
        "failed": len({r["experiment"] for r in log if r["status"] == "failed"}),
        "curve": best_so_far(epochs),
    }


def epoch_results(runs: Path) -> list[dict]:
    """Every epoch any trial trained, in the order they ended: Tune's result.json lines (one per
    epoch reported; a PBT member that copies another and goes on reports each epoch it trains)."""
    import json

    results = [
        json.loads(line)
        for path in runs.glob("_tune/*/*/result.json")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    results = [r for r in results if "val/macro_f1" in r]
    return sorted(results, key=lambda r: (r["timestamp"], r.get("time_total_s", 0.0)))


def best_so_far(epochs: list[dict]) -> list[tuple[int, float]]:
    """(trial-epochs spent so far, the best val macro F1 of any epoch so far), epoch by epoch in the
    order they ended (Tune's timestamps are whole seconds: epochs ending in the same second are in
    any order). Every method is counted the same way, whether its trials end early or not."""
    best, curve = 0.0, []
    for spent, result in enumerate(epochs, start=1):
        best = max(best, result["val/macro_f1"])
        curve.append((spent, best))
    return curve


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """Trial-epochs spent when the best so far first reached `target`; None if it never did."""
    return next((spent for spent, best in curve if best >= target), None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per searching method")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=80, help="images per class (70/15/15 train/val/test)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny: 1 seed, a 2-point grid, 2 epochs (checks that it runs, not the target)",
    )
    parser.add_argument(
        "--work", type=Path, help="folder for data and runs, kept (default: a temporary one, removed at the end)"
    )
    parser.add_argument("--reduction-factor", type=float, default=3, help="ASHA keeps 1/N of the trials at each rung")
    parser.add_argument(
        "--grid-points",
        type=int,
        default=len(GRID_LR),
        help=f"grid values per knob, the first N of each (default {len(GRID_LR)}: {len(GRID_LR) ** 2} points); the "
        "searches get as many trials, a population as many members",
    )
    parser.add_argument(
        "--methods",
        default=",".join(SEARCHES),
        help=f"the searching methods to run beside the grid, comma-separated (default: {','.join(SEARCHES)})",
    )
    args = parser.parse_args(argv)
    with scratch_folder("bench-search-", given=args.work) as work:
        measure(work, args)


def measure(work: Path, args: argparse.Namespace) -> None:
    points = args.grid_points
    grid_lr, grid_wd = (GRID_LR[1:3], GRID_WD[1:2]) if args.smoke else (GRID_LR[:points], GRID_WD[:points])
    epochs, per_class, seeds = (2, 8, 1) if args.smoke else (args.epochs, args.per_class, args.seeds)
    os.environ["RAYTRAIN_CACHE_DIR"] = str(work / "cache")
    data = work / "data" if (work / "data").is_dir() else make_bars(work / "data", per_class=per_class)
    shape = dict(
        epochs=epochs,
        budget=len(grid_lr) * len(grid_wd),
        grid_lr=grid_lr,
        grid_wd=grid_wd,
        reduction=args.reduction_factor,
    )

    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(SEARCHES)
    if unknown:
        raise SystemExit(f"--methods: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SEARCHES)}")
    rows = {("grid", 0): run_method("grid", 0, work, data, **shape)}
    for seed in range(1, seeds + 1):
        for method in methods:
            rows[(method, seed)] = run_method(method, seed, work, data, **shape)
    print_table(rows, shape, per_class, methods)
    if not args.smoke and "optuna_asha" in methods:
        met = target_met(rows)
        print(
            f"target (optuna+ASHA within 0.01 of the grid's best after <= 40% of the grid's trial-epochs, every seed): "
            f"{'met' if met else 'NOT met'}"
        )
    if not args.smoke and {"optuna_asha", "pbt"} <= set(methods):
        wins = pbt_wins(rows)
        print(
            f"target (PBT's best >= optuna+ASHA's on at least 2 of {seeds} seeds): {wins} of {seeds}, "
            f"{'met' if wins >= min(2, seeds) else 'NOT met'}"
        )


def pbt_wins(rows: dict) -> int:
    """Seeds on which PBT's best val macro F1 matched or beat optuna+ASHA's."""
    seeds = sorted(seed for method, seed in rows if method == "pbt")
    return sum(rows[("pbt", s)]["best"] >= rows[("optuna_asha", s)]["best"] for s in seeds)


def print_table(rows: dict, shape: dict, per_class: int, methods: list[str]) -> None:
    grid = rows[("grid", 0)]
    print(
        f"\n{shape['budget']} trials per method, {shape['epochs']} epochs max, shufflenet_v2_x0_5 at 24 px, "
        f"{7 * per_class} images (7 bar orientations), {os.cpu_count()} CPUs"
    )
    print(
        "'to reach': trial-epochs spent (every epoch of every trial, in the order they ended) when the best epoch so "
        "far first came within 0.01 of the grid's best"
    )
    print(
        f"{'method':<14}{'seed':>5}{'best val F1':>13}{'gap to grid':>13}{'trial-epochs':>14}{'% of grid':>11}"
        f"{'to reach':>10}{'% of grid':>11}{'pruned':>8}{'failed':>8}"
    )
    for (method, seed), row in rows.items():
        reach = epochs_to_reach(row["curve"], grid["best"] - 0.01)
        reach_text = (
            f"{reach:>10}{100 * reach / grid['trial_epochs']:>10.0f}%"
            if reach is not None
            else f"{'never':>10}{'-':>11}"
        )
        seed_text = seed if method != "grid" else "-"
        share = 100 * row["trial_epochs"] / grid["trial_epochs"]
        print(
            f"{method:<14}{seed_text:>5}{row['best']:>13.3f}{row['best'] - grid['best']:>+13.3f}"
            f"{row['trial_epochs']:>14}{share:>10.0f}%{reach_text}{row['pruned']:>8}{row['failed']:>8}"
        )
    for method in methods:
        mine = [r for (m, _), r in rows.items() if m == method]
        best = np.mean([r["best"] for r in mine])
        epochs = np.mean([r["trial_epochs"] for r in mine])
        print(
            f"{method:<14}{'mean':>5}{best:>13.3f}{best - grid['best']:>+13.3f}"
            f"{epochs:>14.1f}{100 * epochs / grid['trial_epochs']:>10.0f}%"
        )


def target_met(rows: dict) -> bool:
    """Every optuna+ASHA seed came within 0.01 of the grid's best having spent <= 40% of the grid's
    trial-epochs (the whole budget may spend more: the search goes on after it got there)."""
    grid = rows[("grid", 0)]
    optuna = [r for (m, _), r in rows.items() if m == "optuna_asha"]
    reached = [epochs_to_reach(r["curve"], grid["best"] - 0.01) for r in optuna]
    return all(n is not None and n <= 0.4 * grid["trial_epochs"] for n in reached)


if __name__ == "__main__":
    sys.exit(main())
