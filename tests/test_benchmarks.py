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


def test_bench_duplicates_smoke_prints_the_times_false_positives_and_copies_found(run_bench, tmp_path):
    out = run_bench("bench_duplicates.py", "--smoke")
    assert re.search(r"hash [\d.]+ s, search [\d.]+ s, exact groups [\d.]+ s; every pair compared: ~[\d,]+ s", out), out
    assert re.search(r"false positives: [\d,]+ pairs of the 1,124,250 among distinct faces", out), out
    assert re.search(r"found: shifted 1 px [\d.]+%, .*JPEG q75 [\d.]+%", out), out


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


def test_gpu_check_dry_run_runs_every_step_and_summarises_them(subprocesses, tmp_path):
    """tests/bench/gpu_check.sh run --dry-run: what the GPU machine runs, tiny and on the CPU, so the
    one call a GPU session gets cannot fail on a step that rotted here."""
    out = tmp_path / "out"
    done = subprocesses.run(
        ["bash", str(BENCH / "gpu_check.sh"), "run", "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable, "RAYTRAIN_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    for step in ("env", "test_cuda", "sweep", "bench", "compile"):
        assert re.search(rf"^  {step}\s+ok \(\d+ s\)$", summary, re.MULTILINE), summary
        assert (out / f"{step}.log").is_file()
    assert re.search(r"^  install\s+(ok|skipped: .*) \(\d+ s\)$", summary, re.MULTILINE), summary
    # the facts the GPU run is for, here with a GPU Ray is told of and torch cannot see
    assert "a task with num_gpus=0: CUDA_VISIBLE_DEVICES=None" in summary
    assert "a task with num_gpus=0.25: CUDA_VISIBLE_DEVICES='0'" in summary
    assert "a trial with resources.gpu=0 trains on cpu" in summary
    assert re.search(r"1 trial\(s\) at --gpus-per-trial 0: [\d,]+ img/s summed", summary), summary
    assert re.search(r"one checkpoint of resnet18 \(\d+ MB\): written in [\d.]+ s.*step counters on cpu", summary)
    assert re.search(r"loop\s+24 px: raytrain\s+[\d,]+ img/s", summary), summary
    # bench_gpu.py runs here only: its loop against bare PyTorch, and its packed sweeps
    bench = (out / "bench.log").read_text()
    assert re.search(r"loop\s+24 px: raytrain\s+[\d,]+ img/s\s+bare PyTorch\s+[\d,]+ img/s\s+ratio [\d.]+x", bench), (
        bench
    )
    for n in (1, 2):
        assert re.search(rf"packed {n} trial\(s\).*img/s summed over trials\s+gain over 1 trial [\d.]+x", bench), bench
    assert "recompiles: 1 in all, 0 after the first epoch" in summary, summary
    assert "5 skipped" in (out / "test_cuda.log").read_text(), "tests/test_cuda.py skips without CUDA"
    assert "loop 224 px >= 15,000: not measured" in summary
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and not list(out.glob("*/*/*")), f"more than the device returns: {files}"


def test_gpu_check_reads_the_gpu_figures_against_the_targets():
    """The lines bench_gpu.py prints on a GPU, as the summary reads them (the dry run prints none)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    bench = (
        "loop  48 px: raytrain     31,200 img/s   bare PyTorch     35,000 img/s   ratio 0.89x   (bf16, batch 256)\n"
        "loop 224 px: raytrain     14,000 img/s   bare PyTorch     16,000 img/s   ratio 0.88x   (bf16, batch 256)\n"
        "packed 1 trial(s) (1 GPU each):     30,000 img/s summed over trials   gain over 1 trial 1.00x   end to end\n"
        "packed 4 trial(s) (0.25 GPU each):     66,000 img/s summed over trials   gain over 1 trial 2.20x   end\n"
    )
    assert gpu_check.targets(bench) == {
        "loop 224 px": (14_000, False),
        "loop 112 px": (None, False),
        "packed 48 px summed": (66_000, True),
        "4 packed / 1": (2.2, True),
    }
