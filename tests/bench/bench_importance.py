"""Benchmark: how often `raytrain importance` calls a knob important when nothing matters, and how long
an answer takes.

    .venv/bin/python tests/bench/bench_importance.py [--grid-sweeps 20000] [--search-sweeps 200] [--trials 30]
    .venv/bin/python tests/bench/bench_importance.py --smoke      # seconds: the suite runs this

Every sweep is simulated, with no training: its metric is noise alone (normal, sd 0.02 around 0.5), so
any knob marked as mattering is a false positive. Grids go through the real ANOVA all at once
(vectorised: tens of thousands of sweeps take seconds); searches (random draws of a log-uniform
learning rate, a uniform weight decay and a loss out of three) go one by one through
results.importance.analyze, fANOVA with its shuffles and bootstrap. Prints, per design, the share of
knobs whose uncorrected p < 0.05 (the test's own calibration, nominal 5%), the share of knobs and of
sweeps marked as mattering (Holm p <= 0.05 and a 95% interval clear of 0; nominal: at most 5% of
sweeps), and seconds per answer.

Measured (2 CPUs shared with other work, load average 3-4; the default arguments, about 20 min):

    design                              sweeps  p < 0.05  knobs marked  sweeps marked  s/answer
    3x2x2 grid, 3 seeds                  20000     5.01%         1.71%          4.85%  0.000132
    4x4 grid, no seeds                   20000     5.07%         2.50%          4.57%  0.000125
    5 levels, 2 seeds                    20000     5.01%         2.50%          2.50%  7.89e-05
    search, 30 trials x 3 knobs            200     2.17%         0.00%          0.00%      5.03

The F test is calibrated (5.0% at a nominal 5%), and a grid has a knob marked in 4.6-4.9% of null
sweeps; one knob alone is marked in 2.5%, since its two-sided 95% interval must clear 0 too. fANOVA's
shuffle test is conservative (2.2%), and its bootstrap interval more so: no knob of 600 was marked
(a 95% upper bound of 0.5%). The price is power: see MIN_TRIALS in results/importance.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from raytrain.results import importance, stats

GRIDS = {  # design -> (levels per knob, seeds per setting)
    "3x2x2 grid, 3 seeds": ((3, 2, 2), 3),
    "4x4 grid, no seeds": ((4, 4), 1),
    "5 levels, 2 seeds": ((5,), 2),
}
NOISE = 0.02  # sd of the metric between runs: FER-sized val sets give about this between seeds


def grid_rates(levels: tuple[int, ...], seeds: int, sweeps: int, rng: np.random.Generator) -> dict:
    """The ANOVA on `sweeps` null grids at once: rates of p < 0.05 and of knobs/sweeps marked."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in levels], indexing="ij"), axis=-1).reshape(-1, len(levels))
    codes = [np.repeat(grid[:, k], seeds) for k in range(len(levels))]
    model = importance._GridModel(codes, list(levels))
    started = time.perf_counter()
    found = importance.anova_importance(model, rng.normal(0.5, NOISE, size=(sweeps, len(codes[0]))))
    p_holm = np.array([stats.holm(row) for row in found["p_value"]])
    marked = (p_holm <= 0.05) & (found["low"] > 0)
    return {
        "uncorrected": float(np.mean(found["p_value"] < 0.05)),
        "knobs": float(marked.mean()),
        "sweeps": float(marked.any(axis=1).mean()),
        "seconds": (time.perf_counter() - started) / sweeps,
    }


def null_search(trials: int, rng: np.random.Generator) -> pd.DataFrame:
    """One random search whose metric ignores its three knobs."""
    return pd.DataFrame(
        {
            "experiment": [f"null/t{i + 1:03d}" for i in range(trials)],
            "status": "completed",
            "training.lr": np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), trials)),
            "training.weight_decay": rng.uniform(0.0, 0.1, trials),
            "loss.type": rng.choice(["ce", "focal", "mse"], trials),
            "val/macro_f1": rng.normal(0.5, NOISE, trials),
        }
    )


def search_rates(trials: int, sweeps: int, rng: np.random.Generator) -> dict:
    uncorrected, marked, any_marked, seconds = [], [], [], []
    for sweep in range(sweeps):
        started = time.perf_counter()
        found = importance.analyze(null_search(trials, rng), seed=sweep)
        seconds.append(time.perf_counter() - started)
        assert found.method == importance.FANOVA, found.reason
        uncorrected += list(found.table["p_value"] < 0.05)
        marked += list(found.table["matters"])
        any_marked.append(bool(found.table["matters"].any()))
    return {
        "uncorrected": float(np.mean(uncorrected)),
        "knobs": float(np.mean(marked)),
        "sweeps": float(np.mean(any_marked)),
        "seconds": float(np.mean(seconds)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-sweeps", type=int, default=20000, help="null grids per design (vectorised)")
    parser.add_argument("--search-sweeps", type=int, default=200, help="null searches (seconds each)")
    parser.add_argument("--trials", type=int, default=30, help="trials per search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="200 grids per design and 2 searches: runs, says little")
    args = parser.parse_args(argv)
    grid_sweeps, search_sweeps = (200, 2) if args.smoke else (args.grid_sweeps, args.search_sweeps)
    rng = np.random.default_rng(args.seed)
    print("null sweeps (the metric is noise alone); nominal: p < 0.05 for 5% of knobs, marked in at most 5% of sweeps")
    print(f"{'design':<34}{'sweeps':>8}{'p < 0.05':>10}{'knobs marked':>14}{'sweeps marked':>15}{'s/answer':>10}")
    rows = [(name, grid_sweeps, grid_rates(*shape, grid_sweeps, rng)) for name, shape in GRIDS.items()]
    rows.append(
        (f"search, {args.trials} trials x 3 knobs", search_sweeps, search_rates(args.trials, search_sweeps, rng))
    )
    for name, sweeps, rates in rows:
        print(
            f"{name:<34}{sweeps:>8}{rates['uncorrected']:>10.2%}{rates['knobs']:>14.2%}{rates['sweeps']:>15.2%}"
            f"{rates['seconds']:>10.3g}"
        )


if __name__ == "__main__":
    main()
