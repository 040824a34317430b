"""Benchmark: raytrain's training epoch end to end against the seed's hand-written loop, same images.

    .venv/bin/python tests/bench/bench_vs_seed.py [--per-class 150] [--sizes 48 112] [--repeats 2]
    .venv/bin/python tests/bench/bench_vs_seed.py --smoke      # seconds; what `make test` runs

The seed-style side is what the seed's train script did: torchvision ImageFolder + PIL transforms
(resize, flip, affine, brightness/contrast) + a DataLoader with 2 workers, resnet18 (1 channel, from
scratch) in fp32, AdamW, cross-entropy with label smoothing. raytrain's side is a real trial's
`train_one_epoch` built by `train.Trial` from configs/demo/baseline_small.yaml at the same size: the
decoded dataset in memory, batch augmentation, and the precision `training.precision: auto` picks
on this machine (bf16 autocast on CPUs with native bf16). Both sides train the same images at batch
128 with the same torch threads; runs alternate and the best epoch of each side counts.
Target (issue 13): raytrain >= 1.5x the seed-style loop at 48 px and at 112 px on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_data beside this file

from bench_data import load_gray, seed_transform  # noqa: E402

from raytrain.config import load_config  # noqa: E402
from raytrain.data import generate_synthetic, load_dataset  # noqa: E402
from raytrain.training.models import build_model  # noqa: E402
from raytrain.training.numerics import cpu_has_native_bf16  # noqa: E402
from raytrain.training.trainable import TrainingRun  # noqa: E402


def seed_style_rate(train_dir: Path, cfg, workers: int) -> callable:
    """One epoch of the seed's loop; returns a function that runs it and gives images/s."""
    data = datasets.ImageFolder(
        str(train_dir), transform=seed_transform(cfg.data.img_size, cfg.augmentation), loader=load_gray
    )
    loader = DataLoader(
        data,
        batch_size=cfg.training.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    torch.manual_seed(0)
    model = build_model(cfg.model.arch, len(data.classes), 1, cfg.model.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)

    def epoch() -> float:
        model.train()
        seen, start = 0, time.perf_counter()
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.loss.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
        loss.item()
        return seen / (time.perf_counter() - start)

    return epoch


def raytrain_rate(dataset, cfg) -> callable:
    trial = TrainingRun(cfg, dataset)

    def epoch() -> float:
        stats = trial.train_epoch(torch.Generator().manual_seed(0))
        return stats["images"] / stats["seconds"]

    epoch.precision = trial.precision
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150, help="synthetic 48 px images per class (x7; 90%% train)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 112])
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs per side and size, alternating")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="the seed loop's DataLoader workers")
    parser.add_argument("--smoke", action="store_true", help="tiny: 24 px, a few batches, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.per_class, args.sizes, args.repeats, args.batch_size = 8, [24], 1, 16
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_synthetic(Path(tmp) / "synth", per_class=args.per_class, seed=0)
        dataset = load_dataset(root, cache_dir=Path(tmp) / "cache", workers=2)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, native bf16: "
            f"{cpu_has_native_bf16()}, torch {torch.__version__}, {threads} threads; "
            f"{len(dataset.splits['train'])} train images, batch {args.batch_size}, seed loop with {args.workers} "
            "DataLoader workers"
        )
        print(f"{'size':>6} {'raytrain img/s':>15} {'seed-style img/s':>17} {'ratio':>7}  raytrain precision")
        for size in args.sizes:
            cfg = load_config(
                ROOT / "configs/demo/baseline_small.yaml",
                [
                    f"data.img_size={size}",
                    f"training.batch_size={args.batch_size}",
                    f"resources.cpu={threads}",
                ],
            )
            ours_epoch = raytrain_rate(dataset, cfg)
            theirs_epoch = seed_style_rate(Path(root) / "train", cfg, args.workers)
            ours_epoch(), theirs_epoch()  # warm-up: kernels chosen, workers started, pages cached
            ours, theirs = [], []
            for _ in range(args.repeats):  # alternate, so load from other processes hits both alike
                ours.append(ours_epoch())
                theirs.append(theirs_epoch())
            ratio = max(ours) / max(theirs)
            print(
                f"{size:>4}px {max(ours):>15,.1f} {max(theirs):>17,.1f} {ratio:>6.2f}x  {ours_epoch.precision}"
                f"   (runs: {', '.join(f'{r:.0f}' for r in ours)} vs {', '.join(f'{r:.0f}' for r in theirs)})"
            )
        print("target: >= 1.5x at 48 px and at 112 px")


if __name__ == "__main__":
    main()
