"""Benchmark: raytrain's input pipeline against torchvision ImageFolder + PIL transforms + DataLoader.

Run on demand (pytest does not collect it: the name does not start with test_):
    python tests/bench/bench_data.py [--per-class N] [--epochs E] [--workers W] [--threads T]
It generates a synthetic 48 px dataset, then times full training epochs (batch 128, default
augmentation) at 48->48 px and 48->112 px through both pipelines on the same images, and prints
images/s of each pipeline's best epoch (the one least disturbed by other processes) and the ratio.
Target: raytrain >= 10x ImageFolder at the same output size.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from raytrain.config import AugmentationConfig
from raytrain.data import generate_synthetic, load_dataset
from raytrain.training.augment import BatchAugmenter

BATCH = 128
SIZES = (48, 112)


def load_gray(path: str) -> Image.Image:
    # ImageFolder's default loader converts to RGB; the images are grayscale, so keep them "L"
    with Image.open(path) as img:
        return img.convert("L")


def seed_transform(size: int, aug: AugmentationConfig) -> transforms.Compose:
    """The seed's per-image PIL augmentation, the same knobs as raytrain's batch augmentation."""
    return transforms.Compose(
        [
            transforms.Resize(size),
            transforms.RandomHorizontalFlip(aug.hflip),
            transforms.RandomAffine(aug.rotation, translate=(aug.translate,) * 2, scale=(1 - aug.scale, 1 + aug.scale)),
            transforms.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
            transforms.ToTensor(),
            transforms.Normalize((0.449,), (0.226,)),
        ]
    )


def torchvision_epoch_rate(train_dir: Path, size: int, aug: AugmentationConfig, workers: int, epochs: int) -> float:
    data = datasets.ImageFolder(str(train_dir), transform=seed_transform(size, aug), loader=load_gray)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up epoch: starts the workers, fills the page cache
        pass

    def epoch() -> int:
        return sum(len(x) for x, _y in loader)

    return best_rate(epoch, epochs)


def raytrain_epoch_rate(
    images: torch.Tensor, labels: torch.Tensor, size: int, aug: AugmentationConfig, epochs: int, k: int
) -> float:
    augmenter = BatchAugmenter(aug, size, images.shape[1], k, device="cpu")
    generator = torch.Generator().manual_seed(0)

    def epoch() -> int:
        seen = 0
        order = torch.randperm(len(labels), generator=generator)
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            x, _targets = augmenter.train(images[idx], labels[idx], generator)
            seen += len(x)
        return seen

    epoch()  # warm-up: first-call allocations
    return best_rate(epoch, epochs)


def best_rate(epoch, epochs: int) -> float:
    """Images/s of the fastest of `epochs` runs of epoch() (which returns the images it produced)."""
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        seen = epoch()
        rates.append(seen / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=None, help="balanced N per class (default: FER-like, 2871)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline and size (the best counts)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the torchvision pipeline")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for raytrain (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    aug = AugmentationConfig()  # the baseline's defaults: flip, affine, brightness/contrast, mixup

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = generate_synthetic(Path(tmp) / "synth", per_class=args.per_class, seed=0)
        generated_s = time.perf_counter() - start
        start = time.perf_counter()
        dataset = load_dataset(root, cache_dir=Path(tmp) / "cache", workers=2)
        decoded_s = time.perf_counter() - start
        start = time.perf_counter()
        dataset = load_dataset(root, cache_dir=Path(tmp) / "cache", workers=2)
        cached_s = time.perf_counter() - start
        train = dataset.splits["train"]
        images, labels = torch.from_numpy(train.images.copy()), torch.from_numpy(train.labels.copy())
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads; DataLoader workers: {args.workers}"
        )
        print(
            f"data: {len(labels)} train images, {images.shape[2]}x{images.shape[3]}x{images.shape[1]}; "
            f"generated in {generated_s:.2f} s, decoded in {decoded_s:.2f} s, cached load {cached_s:.3f} s"
        )
        print(f"{'output':>8} {'raytrain img/s':>15} {'ImageFolder img/s':>18} {'ratio':>7}")
        for size in SIZES:
            ours = raytrain_epoch_rate(images, labels, size, aug, args.epochs, dataset.num_classes)
            theirs = torchvision_epoch_rate(Path(root) / "train", size, aug, args.workers, args.epochs)
            print(f"{f'{size}px':>8} {ours:>15,.0f} {theirs:>18,.0f} {ours / theirs:>6.1f}x")


if __name__ == "__main__":
    main()
