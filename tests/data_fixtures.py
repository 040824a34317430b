"""Helpers for the data-layer tests: tiny image-folder and FER2013-csv datasets written in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from raytrain.config import AugmentationConfig, load_config

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Save uint8 (H, W) as grayscale or (H, W, 3) as RGB; the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def make_folders(
    root: Path,
    counts: dict[str, int],
    *,
    splits: tuple[str, ...] = ("train",),
    size: int = 8,
    seed: int = 0,
) -> Path:
    """root/<split>/<class>/<i>.png with counts[class] random grayscale images per split."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for name, n in counts.items():
            for i in range(n):
                write_image(root / split / name / f"{i:03d}.png", rng.integers(0, 256, (size, size)))
    return root


def fer_csv_text(rows: list[tuple[int, np.ndarray | str, str]], header: str = "emotion,pixels,Usage") -> str:
    """A FER2013 csv: rows of (emotion, pixels as an array or raw text, Usage)."""
    lines = [header]
    for emotion, pixels, usage in rows:
        text = pixels if isinstance(pixels, str) else " ".join(str(v) for v in np.ravel(pixels))
        lines.append(f"{emotion},{text},{usage}")
    return "\n".join(lines) + "\n"


def aug_config(**overrides) -> AugmentationConfig:
    """Every transform off except those given: each test sees one transform at a time."""
    off = {name: 0.0 for name in AugmentationConfig.model_fields}
    return AugmentationConfig(**(off | overrides))


def shipped_augmentation(name: str) -> AugmentationConfig:
    """The augmentation section of a shipped config (configs/<name>.yaml), extends resolved."""
    return load_config(CONFIGS_DIR / f"{name}.yaml").augmentation
