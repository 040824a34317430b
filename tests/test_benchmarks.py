"""The benchmarks' smoke modes: each one runs end to end in seconds, so a benchmark cannot rot
between the runs that measure with it. The figures themselves are not checked here (timings do
not belong in pass/fail tests); what is checked is that every figure line is printed."""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.conftest import PROJECT_ROOT

BENCH = PROJECT_ROOT / "tests" / "bench"


@pytest.fixture
def run_bench(subprocesses, tmp_path):
    """Runs a benchmark script in tmp_path and returns what it printed; fails on a non-zero exit."""

    def run(script: str, *args: str) -> str:
        done = subprocesses.run(
            [sys.executable, str(BENCH / script), *args],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env={**os.environ, "RAYTRAIN_CACHE_DIR": str(tmp_path / "cache")},
        )
        assert done.returncode == 0, f"{script} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
        return done.stdout

    return run


def test_bench_vs_seed_smoke_prints_both_sides_and_the_ratio(run_bench, tmp_path):
    out = run_bench("bench_vs_seed.py", "--smoke")
    assert re.search(r"24px\s+[\d,.]+\s+[\d,.]+\s+[\d.]+x\s+(bf16|fp32)", out), out


def test_bench_gpu_cpu_smoke_prints_the_loop_and_packed_sweep_figures(run_bench, tmp_path):
    out = run_bench("bench_gpu.py", "--cpu-smoke")
    assert re.search(r"loop\s+24 px: raytrain\s+[\d,]+ img/s\s+bare PyTorch\s+[\d,]+ img/s\s+ratio [\d.]+x", out), out
    for n in (1, 2):
        assert re.search(rf"packed {n} trial\(s\).*img/s summed over trials\s+gain over 1 trial [\d.]+x", out), out


def test_bench_train_small_prints_the_ratio_to_the_bare_loop(run_bench, tmp_path):
    out = run_bench(
        "bench_train.py",
        "--images",
        "64",
        "--img-size",
        "24",
        "--batch-size",
        "16",
        "--repeats",
        "1",
    )
    assert re.search(r"ratio raytrain / bare\s+:\s+[\d.]+x", out), out


def test_bench_data_small_prints_both_pipelines_at_both_sizes(run_bench, tmp_path):
    out = run_bench("bench_data.py", "--per-class", "5", "--epochs", "1")
    for size in (48, 112):
        assert re.search(rf"{size}px\s+[\d,]+\s+[\d,]+\s+[\d.]+x", out), out


def test_bench_sweep_smoke_prints_both_wall_times_and_the_start_up(run_bench, tmp_path):
    out = run_bench("bench_sweep.py", "--smoke")
    assert re.search(
        r"one parallel sweep\s+:\s+[\d.]+ s\n\s+1 x `raytrain run` in turn : \s*[\d.]+ s\n\s+speed-up "
        r"sequential/sweep\s+:\s+[\d.]+x",
        out,
    ), out
    assert re.search(r"start-up: command to first training step: [\d.]+ s", out), out


def test_bench_overhead_smoke_prints_the_overhead_with_processes_reused_and_not(run_bench, tmp_path):
    out = run_bench("bench_overhead.py", "--smoke")
    for way in ("fresh", "reuse"):
        assert re.search(rf"^{way}\s+2\s+[12]\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+-?[\d.]+\s+[12]$", out, re.M), out
    assert re.search(r"overhead per trial: -?[\d.]+ s fresh -> -?[\d.]+ s reused", out), out


def test_bench_scale_smoke_prints_disk_startup_and_results_figures(run_bench, tmp_path):
    out = run_bench("bench_scale.py", "--smoke")
    assert re.search(
        r"after\s+runs/ \+ runs/_tune/:\s+[\d.]+ MB\s+best.pt [\d.]+ MB.*weights / best.pt [\d.]+x", out
    ), out
    assert re.search(
        r"bytes written per epoch per trial:\s+[\d.]+ MB\s+largest checkpoint [\d.]+ MB = [\d.]+x one copy", out
    ), out
    assert re.search(r"after\s+launch to first training step:\s+[\d.]+ s", out), out
    for stage in ("ray.init", "trial: import torch, raytrain.training.trainable"):
        assert re.search(rf"{re.escape(stage)}\s+[\d.]+ s", out), out
    for label in (
        "results.load, no index",
        "results.load, index there",
        "compare, nothing changed",
        "compare, one added",
        "raytrain report",
        "raytrain report peak",
    ):
        assert re.search(rf"{re.escape(label)} \((s|MB)\)\s+-\s+[\d,.]+", out), out


def test_bench_importance_smoke_prints_a_false_positive_rate_per_design(run_bench, tmp_path):
    out = run_bench("bench_importance.py", "--smoke")
    for design in ("3x2x2 grid, 3 seeds", "4x4 grid, no seeds", "5 levels, 2 seeds", "search, 30 trials x 3 knobs"):
        rates = rf"^{re.escape(design)}\s+\d+\s+[\d.]+%\s+[\d.]+%\s+[\d.]+%\s+[\d.e+-]+$"
        assert re.search(rates, out, re.MULTILINE), out
