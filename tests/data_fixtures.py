"""Helpers for the data-layer tests: tiny datasets in every layout raytrain reads (image folders, the
FER2013 csv, FER+, RAF-DB basic, a manifest), written in tmp_path from synthesized pixels."""

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


USAGE_OF = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
FERPLUS_VOTE_COLUMNS = FERPLUS_HEADER.split(",")[2:]


def votes_for(column: str, n: int = 10, **others: int) -> list[int]:
    """10 vote counts (fer2013new.csv's columns): `n` for `column`, plus `others` by column name."""
    counts = dict.fromkeys(FERPLUS_VOTE_COLUMNS, 0) | {column: n} | others
    return [counts[c] for c in FERPLUS_VOTE_COLUMNS]


def make_ferplus(root: Path, rows: list[tuple], *, size: int = 8, seed: int = 0) -> Path:
    """root/fer2013.csv (random pixels) and root/fer2013new.csv, row by row: rows of (split, 10 vote
    counts) or (split, votes, image name); by default row i names fer%07d.png."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pixels = [(0, rng.integers(0, 256, size * size), USAGE_OF[row[0]]) for row in rows]
    (root / "fer2013.csv").write_text(fer_csv_text(pixels))
    lines = [FERPLUS_HEADER]
    for i, (split, votes, *name) in enumerate(rows):
        image = name[0] if name else f"fer{i:07d}.png"
        lines.append(",".join([USAGE_OF[split], image, *map(str, votes)]))
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    return root


def make_rafdb(root: Path, labels: dict[str, int], *, aligned: bool = True, size: int = 8, seed: int = 0) -> Path:
    """RAF-DB basic: EmoLabel/list_patition_label.txt (`<name> <label 1-7>` lines, in the given order) and
    Image/aligned/<stem>_aligned.jpg (or Image/original/<name>) random RGB images."""
    rng = np.random.default_rng(seed)
    lines = []
    for name, label in labels.items():
        stem, suffix = name.rsplit(".", 1)
        file = f"aligned/{stem}_aligned.{suffix}" if aligned else f"original/{name}"
        write_image(root / "Image" / file, rng.integers(0, 256, (size, size, 3)))
        lines.append(f"{name} {label}")
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel/list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def make_manifest(root: Path, rows: list[tuple[str, ...]], *, header: str = "path,label,split", size: int = 8) -> Path:
    """root/manifest.csv with `rows` (cells in `header`'s order) and a random image at every path."""
    rng = np.random.default_rng(0)
    columns = header.split(",")
    for row in rows:
        write_image(root / row[columns.index("path")], rng.integers(0, 256, (size, size)))
    (root / "manifest.csv").write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return root / "manifest.csv"


def aug_config(**overrides) -> AugmentationConfig:
    """Every transform off except those given: each test sees one transform at a time."""
    off = {name: 0.0 for name in AugmentationConfig.model_fields}
    return AugmentationConfig(**(off | overrides))


def shipped_augmentation(name: str) -> AugmentationConfig:
    """The augmentation section of a shipped config (configs/<name>.yaml), extends resolved."""
    return load_config(CONFIGS_DIR / f"{name}.yaml").augmentation
