"""Benchmark: raytrain on a GPU. One line per figure:

  1. resnet18 training images/s through raytrain's own loop (a real `train.Trial`: batch
     augmentation, the dataset on the device, `training.precision: auto`) at 48, 112 and 224 px,
     next to a bare PyTorch loop on the same device (ready-made float batches on the device, the
     same autocast and memory format, forward/backward/step and nothing else), and their ratio;
  2. a real `raytrain sweep` of 1, 2, 4 and 8 small trials packed on one GPU
     (--gpus-per-trial 1, 0.5, 0.25, 0.125): combined training images/s and the gain over one trial.

    .venv/bin/python tests/bench/bench_gpu.py                  # on a machine with a CUDA GPU
    .venv/bin/python tests/bench/bench_gpu.py --cpu-smoke      # tiny, on the CPU: `make test` runs it
    python3 tests/bench/bench_gpu.py --sizes 48,224 --packs 1,4 --images 8192 --epochs 2 --per-class 1500 \
        --sweep-epochs 3                                       # shortened, as tests/bench/gpu_check.sh runs it

Targets on an H100/H200-class GPU (issue 13): one trial >= 15,000 img/s at 224 px and >= 40,000 at
112 px; >= 50,000 img/s at 48 px summed over packed trials; 4 packed trials >= 2x one trial.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scratch import scratch_folder  # noqa: E402 (beside this file)

from raytrain.config import load_config  # noqa: E402
from raytrain.data import generate_synthetic, load_dataset  # noqa: E402
from raytrain.training.loop import steps_per_epoch, train_one_epoch  # noqa: E402
from raytrain.training.models import build_model  # noqa: E402
from raytrain.training.numerics import autocast, use_channels_last  # noqa: E402
from raytrain.training.trainable import TrainingRun  # noqa: E402

# (sizes, images, batch, loop epochs, packed trial counts, sweep images per class, sweep epochs)
GPU = dict(sizes=(48, 112, 224), images=16384, batch=256, epochs=3, packs=(1, 2, 4, 8), per_class=3000, sweep_epochs=5)
CPU_SMOKE = dict(sizes=(24,), images=64, batch=16, epochs=1, packs=(1, 2), per_class=6, sweep_epochs=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loop_rates(dataset, size: int, batch: int, epochs: int, device: torch.device) -> tuple[float, float, str]:
    """(raytrain img/s, bare img/s, precision): best epoch of each, after one warm-up epoch."""
    cfg = load_config(
        ROOT / "configs/demo/baseline_small.yaml",
        [
            f"data.img_size={size}",
            f"training.batch_size={batch}",
            f"training.epochs={epochs + 1}",
            f"resources.cpu={os.cpu_count() or 1}",  # a trial sets torch's threads from it
        ],
    )
    trial = TrainingRun(cfg, dataset)
    assert trial.device.type == device.type, f"the trial picked {trial.device}, the benchmark wants {device}"
    train = trial.splits["train"]

    def raytrain_epoch(seed: int) -> float:
        stats = train_one_epoch(
            trial.forward_model,
            train,
            augmenter=trial.augmenter,
            loss_fn=trial.loss_fn,
            optimizer=trial.optimizer,
            scheduler=trial.scheduler,
            batch_size=batch,
            generator=torch.Generator(device=device).manual_seed(seed),
            precision=trial.precision,
        )
        return stats["images"] / stats["seconds"]

    torch.manual_seed(0)
    model = build_model(cfg.model.arch, dataset.num_classes, dataset.channels, cfg.model.dropout).to(device)
    if use_channels_last(device, trial.precision):
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    floats = trial.augmenter.eval(train.images)  # ready-made: normalised and resized, on the device
    labels = train.labels

    def bare_epoch(seed: int) -> float:
        model.train()
        steps = steps_per_epoch(len(labels), batch)
        order = torch.randperm(len(labels), device=device, generator=torch.Generator(device=device).manual_seed(seed))
        sync(device)
        start = time.perf_counter()
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            with autocast(device, trial.precision):
                loss = F.cross_entropy(model(floats[idx]).float(), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        return steps * batch / (time.perf_counter() - start)

    raytrain_epoch(0), bare_epoch(0)  # warm-up: cuDNN autotuning, allocator, oneDNN kernels
    ours = max(raytrain_epoch(e) for e in range(1, epochs + 1))
    bare = max(bare_epoch(e) for e in range(1, epochs + 1))
    return ours, bare, trial.precision


def packed_sweep(n: int, *, data: Path, work: Path, settings: dict, device: torch.device, env: dict) -> dict:
    """A real `raytrain sweep` of n trials sharing one GPU (or, in the CPU smoke, the CPUs)."""
    configs = work / f"configs-{n}"
    configs.mkdir(parents=True)
    size = 48 if device.type == "cuda" else settings["sizes"][0]
    for i in range(n):
        (configs / f"packed_{i}.yaml").write_text(
            f"extends: {ROOT / 'configs/demo/baseline_small.yaml'}\nname: packed_{i}\n"
            f"training: {{epochs: {settings['sweep_epochs']}, batch_size: {settings['batch']}}}\n"
            f"data: {{img_size: {size}}}\nother: {{patience: 100, seed: {i}}}\n"
        )
    cpus = os.cpu_count() or 1
    resources = (
        ["--gpus-per-trial", f"{1 / n:g}", "--cpus-per-trial", f"{max(1, cpus // n)}"]
        if device.type == "cuda"
        else ["--gpus-per-trial", "0", "--cpus-per-trial", f"{max(0.5, min(1, cpus / n)):g}"]
    )
    runs = work / f"runs-{n}"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raytrain",
            "sweep",
            str(configs),
            "--data-root",
            str(data),
            "--runs-dir",
            str(runs),
            "--yes",
            *resources,
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    epochs = [
        json.loads(line)
        for path in runs.glob("_tune/*/*/result.json")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    assert len(epochs) == n * settings["sweep_epochs"], (
        f"expected {n} trials x {settings['sweep_epochs']} epochs, got {len(epochs)} results"
    )
    # per trial, the median train rate of its epochs after the first (cuDNN autotuning, warm-up)
    by_trial: dict[str, list[float]] = {}
    for result in epochs:
        if result["epoch"] > 1 or settings["sweep_epochs"] == 1:
            by_trial.setdefault(result["trial_id"], []).append(result["train/images_per_s"])
    summed = sum(statistics.median(rates) for rates in by_trial.values())
    # end to end: every trained image over the span from the first epoch's start to the last's end
    span = max(r["timestamp"] for r in epochs) - min(r["timestamp"] - r["epoch_time_s"] for r in epochs)
    return {"summed": summed, "span_s": span, "wall_s": wall, "epochs": len(epochs)}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, so the benchmark cannot rot")
    parser.add_argument("--keep", action="store_true", help="keep the data and runs (default: removed at the end)")
    # each replaces one setting of the chosen mode (GPU or CPU_SMOKE above), to shorten a run
    parser.add_argument("--sizes", type=_ints, help="loop image sizes, e.g. 48,224")
    parser.add_argument("--packs", type=_ints, help="packed trial counts, e.g. 1,4 ('' runs no sweep)")
    parser.add_argument("--images", type=int, help="images in the loop's dataset")
    parser.add_argument("--epochs", type=int, help="timed loop epochs (after one warm-up)")
    parser.add_argument("--per-class", type=int, help="images per class in the sweeps' dataset")
    parser.add_argument("--sweep-epochs", type=int, help="epochs of each packed trial")
    args = parser.parse_args()
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        # skipped, not failed: `make bench` runs every benchmark, on CPU-only machines too
        print("bench_gpu: skipped, no CUDA device here (--cpu-smoke runs it tiny on the CPU)")
        return
    settings = dict(CPU_SMOKE if args.cpu_smoke else GPU)
    for key in ("sizes", "packs", "images", "epochs", "per_class", "sweep_epochs"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {os.cpu_count()} CPUs")

    with scratch_folder("bench-gpu-", keep=args.keep) as work:
        measure(work, settings, device)


def measure(work: Path, settings: dict, device: torch.device) -> None:
    env = dict(os.environ, RAYTRAIN_CACHE_DIR=str(work / "cache"))
    per_loop_class = max(1, settings["images"] // 7)
    loop_data = generate_synthetic(work / "loop-data", per_class=per_loop_class, seed=0)
    dataset = load_dataset(loop_data, cache_dir=work / "cache", workers=min(8, os.cpu_count() or 1))
    for size in settings["sizes"]:
        ours, bare, precision = loop_rates(dataset, size, settings["batch"], settings["epochs"], device)
        print(
            f"loop {size:>3} px: raytrain {ours:>10,.0f} img/s   bare PyTorch {bare:>10,.0f} img/s   "
            f"ratio {ours / bare:.2f}x   ({precision}, batch {settings['batch']})",
            flush=True,
        )

    if not settings["packs"]:
        return
    sweep_data = generate_synthetic(work / "sweep-data", per_class=settings["per_class"], seed=1)
    # decoded once here, into the cache the sweeps read (RAYTRAIN_CACHE_DIR), so no sweep pays for it
    sweep_train = len(
        load_dataset(sweep_data, cache_dir=work / "cache", workers=min(8, os.cpu_count() or 1)).splits["train"]
    )
    single = None
    for n in settings["packs"]:
        figures = packed_sweep(n, data=sweep_data, work=work, settings=settings, device=device, env=env)
        single = single or figures["summed"]
        share = f"{1 / n:g} GPU each" if device.type == "cuda" else "CPU"
        trained = figures["epochs"] * steps_per_epoch(sweep_train, settings["batch"]) * settings["batch"]
        print(
            f"packed {n} trial(s) ({share}): {figures['summed']:>10,.0f} img/s summed over trials   "
            f"gain over 1 trial {figures['summed'] / single:.2f}x   end to end ~{trained / figures['span_s']:,.0f} "
            "img/s   "
            f"sweep wall {figures['wall_s']:.0f} s",
            flush=True,
        )
    if device.type == "cuda":
        print(
            "targets: 224 px >= 15,000 and 112 px >= 40,000 img/s (one trial); 48 px >= 50,000 summed when packed; 4 "
            "packed >= 2x one"
        )


if __name__ == "__main__":
    main()
