"""Real images the project did not generate: scikit-learn's bundled handwritten digits (1,797 8x8
greyscale scans, 10 classes), written out as an image-folder dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_digits(root: Path, every: int = 1) -> Path:
    """The scans as image folders; `every`: only every n-th scan (3: 599 of them, a third of the time to train)."""
    from sklearn.datasets import load_digits  # ships its data inside the package: no download

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # the scans hold 0..16
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        if i % every:
            continue
        split = "test" if i % 10 == 0 else "train"  # val is carved from train by raytrain
        folder = root / split / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root
