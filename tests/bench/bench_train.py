"""Benchmark: the train function's epoch throughput vs a bare PyTorch loop, same model and batches.

    .venv/bin/python tests/bench/bench_train.py [--images 2048] [--img-size 48] [--arch resnet18]

Both sides train the same resnet18 (from scratch, 1 channel) on the same in-memory 48 px images at
batch 128 with AdamW, in the same numerics (--precision, default what `auto` picks here: bf16
autocast and NHWC on CPUs with native bf16). raytrain's side is `train_one_epoch` exactly as a trial
runs it (batch augmentation from configs/demo/baseline_small.yaml, OneCycle, loss with class weights
and label smoothing, on-device accounting); the bare side is forward/backward/step on pre-normalised
float batches and nothing else. Runs alternate, best of --repeats each; the ratio is the figure.
Target: raytrain >= 0.9x the bare loop. (Against the seed's own loop, see bench_vs_seed.py.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from raytrain.config import load_config  # noqa: E402
from raytrain.data import class_weights  # noqa: E402
from raytrain.data.synthetic import render_faces  # noqa: E402
from raytrain.training.augment import BatchAugmenter  # noqa: E402
from raytrain.training.loop import TensorSplit, train_one_epoch  # noqa: E402
from raytrain.training.losses import build_loss  # noqa: E402
from raytrain.training.models import build_model  # noqa: E402
from raytrain.training.numerics import autocast, resolve_precision, use_channels_last  # noqa: E402
from raytrain.training.optim import build_optimizer, build_scheduler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--img-size", type=int, default=48)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    precision = resolve_precision(args.precision, cpu)

    import numpy as np

    cfg = load_config(
        ROOT / "configs/demo/baseline_small.yaml", [f"data.img_size={args.img_size}", f"model.arch={args.arch}"]
    )
    labels = np.arange(args.images) % 7
    images = render_faces(labels, 48, np.random.default_rng(0))[:, None]  # uint8 (N, 1, 48, 48)
    split = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels).long())
    augmenter = BatchAugmenter(cfg.augmentation, args.img_size, 1, 7)
    floats = augmenter.eval(split.images)  # the bare loop gets its inputs ready-made
    steps = args.images // args.batch_size

    def model_and_optimizer():
        torch.manual_seed(0)
        model = build_model(args.arch, 7, 1, cfg.model.dropout)
        if use_channels_last(cpu, precision):  # as TrainingRun does
            model = model.to(memory_format=torch.channels_last)
        return model, build_optimizer(model, cfg.training)

    def raytrain_epoch() -> float:
        model, optimizer = model_and_optimizer()
        scheduler = build_scheduler(optimizer, cfg.training, steps)
        loss_fn = build_loss(cfg.loss, torch.as_tensor(class_weights(labels, 7), dtype=torch.float32))
        stats = train_one_epoch(
            model,
            split,
            augmenter=augmenter,
            loss_fn=loss_fn,
            optimizer=optimizer,
            scheduler=scheduler,
            batch_size=args.batch_size,
            generator=torch.Generator().manual_seed(0),
            precision=precision,
        )
        return stats["images"] / stats["seconds"]

    def bare_epoch() -> float:
        model, optimizer = model_and_optimizer()
        model.train()
        order = torch.randperm(args.images)
        start = time.perf_counter()
        for step in range(steps):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            with autocast(cpu, precision):
                loss = F.cross_entropy(model(floats[idx]).float(), split.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loss.item()
        return steps * args.batch_size / (time.perf_counter() - start)

    raytrain_rates, bare_rates = [], []
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both sides alike
        raytrain_rates.append(raytrain_epoch())
        bare_rates.append(bare_epoch())
    ours, bare = max(raytrain_rates), max(bare_rates)
    print(
        f"{args.arch} {args.img_size}px batch {args.batch_size}, {args.images} images, {args.threads} threads, CPU, "
        f"{precision}"
    )
    print(f"  raytrain train_one_epoch : {ours:8.1f} images/s  (runs: {', '.join(f'{r:.0f}' for r in raytrain_rates)})")
    print(f"  bare PyTorch loop        : {bare:8.1f} images/s  (runs: {', '.join(f'{r:.0f}' for r in bare_rates)})")
    print(f"  ratio raytrain / bare    : {ours / bare:8.2f}x  (target >= 0.9x)")


if __name__ == "__main__":
    main()
