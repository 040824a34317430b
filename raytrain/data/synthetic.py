"""Procedural FER-like faces for demos, tests and benchmarks: `generate_synthetic` writes a dataset.

Each expression is a set of face-part parameters (mouth curve and opening, brow height and slant, eye
opening, nose wrinkle), jittered per image so that neighbouring expressions overlap; pose, scale,
lighting, noise and occlusion vary on top. numpy renders whole batches, PIL writes the PNGs; it must
not import torch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from raytrain.data.sources import CANONICAL_CLASSES, DatasetError

# FER2013's train counts per class (angry ... neutral): the default keeps its imbalance
FER2013_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)
# 0.1 of FER2013: 2871 images by default, disgusted the rarest (44), happy the most common (722)
DEFAULT_SCALE = 0.1
# share of each class's images that goes to val and to test (the rest is train)
HELD_OUT_FRACTION = 0.1

# Per expression: mouth curve (+ = corners up), mouth opening, mouth width, mouth tilt (asymmetry),
# brow raise (+ = up), brow slant (+ = inner ends down, a frown), eye opening, nose wrinkle.
_PARAM_NAMES = ("curve", "open", "width", "tilt", "brow_raise", "brow_slant", "eye_open", "wrinkle")
_EXPRESSIONS = {
    "angry": (-0.3, 0.0, 0.8, 0.0, -0.6, 0.8, 0.75, 0.2),
    "disgusted": (-0.5, 0.1, 0.9, 0.5, -0.35, 0.35, 0.6, 1.0),
    "fearful": (-0.3, 0.45, 1.0, 0.0, 0.6, -0.5, 1.45, 0.0),
    "happy": (1.0, 0.15, 1.2, 0.0, 0.15, 0.0, 0.7, 0.0),
    "sad": (-0.9, 0.0, 0.9, 0.0, 0.1, -0.7, 0.75, 0.0),
    "surprised": (0.0, 1.0, 0.6, 0.0, 1.0, 0.0, 1.4, 0.0),
    "neutral": (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
}
# Per-image jitter (std) of each parameter: large enough that classes overlap, as real faces do.
_JITTER = (0.3, 0.12, 0.12, 0.15, 0.3, 0.3, 0.2, 0.25)

# pixels rendered per numpy pass: 256 images at 48 px, ~2.4 MB per float32 array whatever the size
_RENDER_PIXELS = 256 * 48 * 48


def default_class_counts() -> dict[str, int]:
    """Images per class (all splits together) when `per_class` is not given."""
    return {c: round(n * DEFAULT_SCALE) for c, n in zip(CANONICAL_CLASSES, FER2013_TRAIN_COUNTS)}


def generate_synthetic(
    out: str | Path,
    *,
    layout: str = "folders",
    size: int = 48,
    per_class: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a synthetic FER-like dataset to `out` (a new or empty folder) and return `out`.

    layout "folders" writes `train/<class>/*.png`, `val/<class>/`, `test/<class>/` (80/10/10 per
    class); "csv" writes one `fer2013.csv` (emotion,pixels,Usage). Class sizes follow FER2013's
    imbalance (see `default_class_counts`) unless `per_class` gives every class that many images.
    The same seed writes the same bytes. The folder appears complete or not at all.
    """
    out = Path(out).expanduser()
    if layout not in ("folders", "csv"):
        raise DatasetError(f"--layout must be 'folders' or 'csv', got {layout!r}")
    if size < 16:
        raise DatasetError(f"--size must be >= 16 pixels (faces need room for eyes and a mouth), got {size}")
    if per_class is not None and per_class < 1:
        raise DatasetError(f"--per-class must be >= 1, got {per_class}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: already exists and is not an empty folder; choose a new folder or delete it")

    counts = {c: per_class for c in CANONICAL_CLASSES} if per_class else default_class_counts()
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CANONICAL_CLASSES)), [counts[c] for c in CANONICAL_CLASSES])
    images = render_faces(labels, size, rng)
    splits = _assign_splits(labels)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        if layout == "folders":
            _write_folders(tmp, images, labels, splits)
        else:
            _write_csv(tmp / "fer2013.csv", images, labels, splits)
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def render_faces(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, size, size) grayscale faces showing the expression CANONICAL_CLASSES[label]."""
    base = np.array([_EXPRESSIONS[c] for c in CANONICAL_CLASSES], dtype=np.float32)
    params = base[labels] + rng.normal(size=(len(labels), len(_PARAM_NAMES))).astype(np.float32) * _JITTER
    # every draw happens here or from `noise_rng`, each in one fixed order, so a seed gives the same
    # images however the rendering below is batched
    scene = {
        "angle": rng.uniform(-0.25, 0.25, len(labels)),  # radians, about +-15 degrees
        "scale": rng.uniform(0.8, 1.02, len(labels)),
        "offset": rng.uniform(-0.1, 0.1, (len(labels), 2)),
        "flip_tilt": rng.choice([-1.0, 1.0], len(labels)),  # which mouth corner an asymmetry lifts
        "background": rng.uniform(0.05, 0.95, len(labels)),
        "skin": rng.uniform(0.45, 0.85, len(labels)),
        "dark": rng.uniform(0.1, 0.35, len(labels)),
        "light_dir": rng.uniform(0, 2 * np.pi, len(labels)),
        "light_strength": rng.uniform(0.0, 0.4, len(labels)),
        "noise_std": rng.uniform(0.01, 0.06, len(labels)),
        "occluded": rng.random(len(labels)) < 0.15,
        "occluder": rng.uniform(0, 1, (len(labels), 5)),  # x, y, w, h, brightness
    }
    noise_rng = np.random.default_rng(rng.integers(2**63))  # drawn per batch: all at once can be GBs
    # float32 throughout: float64 would double the rendering time for no visible difference
    scene = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in scene.items()}
    out = np.empty((len(labels), size, size), dtype=np.uint8)
    per_pass = max(1, _RENDER_PIXELS // (size * size))
    for start in range(0, len(labels), per_pass):
        batch = slice(start, start + per_pass)
        noise = noise_rng.standard_normal((len(params[batch]), size, size), dtype=np.float32)
        out[batch] = _render(params[batch], {k: v[batch] for k, v in scene.items()} | {"noise": noise}, size)
    return out


def _render(params: np.ndarray, scene: dict[str, np.ndarray], size: int) -> np.ndarray:
    p = {name: params[:, i, None, None] for i, name in enumerate(_PARAM_NAMES)}
    s = {k: v[:, None, None] if v.ndim == 1 else v for k, v in scene.items()}
    # pixel centres in [-1, 1], then each face's own frame: undo its offset, rotation and scale
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = axis[None, None, :], axis[None, :, None]
    dx, dy = x - s["offset"][:, 0, None, None], y - s["offset"][:, 1, None, None]
    cos, sin = np.cos(s["angle"]), np.sin(s["angle"])
    u = (cos * dx + sin * dy) / s["scale"]
    v = (-sin * dx + cos * dy) / s["scale"]
    pixel = 2.0 / size / s["scale"]  # one pixel in face units: the width of the anti-aliased edge

    def fill(distance):  # signed distance (negative inside) -> coverage in [0, 1]
        return np.clip(0.5 - distance / pixel, 0.0, 1.0)

    img = np.broadcast_to(s["background"], u.shape).astype(np.float32)
    face = fill(_ellipse(u, v, 0.0, 0.05, 0.62, 0.8))
    img = img + (s["skin"] - img) * face
    dark = s["skin"] * s["dark"]

    # eyes: white of the eye, its height set by eye_open, with a dark pupil
    eye_ry = np.clip(0.065 * p["eye_open"], 0.015, 0.13)
    for side in (-1, 1):
        white = fill(_ellipse(u, v, side * 0.25, -0.1, 0.12, eye_ry))
        img = img + (0.95 - img) * white
        pupil = fill(_ellipse(u, v, side * 0.25, -0.1, 0.045, np.minimum(eye_ry, 0.045))) * white
        img = img + (dark - img) * pupil
    # brows: inner end at |u| = 0.1, outer at 0.4; slant lowers the inner ends (anger) or lifts them
    for side in (-1, 1):
        brow_y = -0.3 - 0.1 * p["brow_raise"]
        tilt = p["tilt"] * 0.06 * side * s["flip_tilt"]  # disgust: one brow lower than the other
        inner_y = brow_y + 0.08 * p["brow_slant"] + tilt
        outer_y = brow_y - 0.03 * p["brow_slant"] + tilt
        brow = _segment(u, v, side * 0.1, inner_y, side * 0.4, outer_y)
        img = img + (dark - img) * fill(brow - 0.035)
    # nose, and the wrinkles beside it that disgust adds
    img = img + (dark - img) * 0.5 * fill(_segment(u, v, 0.0, 0.0, 0.0, 0.18) - 0.02)
    for side in (-1, 1):
        wrinkle = fill(_segment(u, v, side * 0.08, 0.02, side * 0.16, 0.14) - 0.015)
        img = img + (dark - img) * wrinkle * np.clip(p["wrinkle"], 0, 1)
    # mouth: a curved line (corners up for +curve, tilted for asymmetry), opened into an ellipse
    half_width = 0.2 * np.clip(p["width"], 0.4, 1.5)
    t = u / half_width
    centre_line = 0.42 - 0.12 * p["curve"] * (t**2 - 0.3) + 0.08 * p["tilt"] * s["flip_tilt"] * t
    lips = np.maximum(np.abs(v - centre_line) - 0.028, np.abs(u) - half_width)
    open_ry = 0.15 * np.clip(p["open"], 0, 1.2)
    # a closed mouth has no opening (a near-flat ellipse's approximate distance smears sideways)
    opening = np.where(open_ry > 0.012, _ellipse(u, v, 0.0, 0.43, half_width * 0.8, np.maximum(open_ry, 0.012)), np.inf)
    img = img + (dark * 0.6 - img) * fill(np.minimum(lips, opening)) * face

    # lighting gradient across the image, sensor noise, and sometimes an occluder (hand, hair)
    light = 1 + s["light_strength"] * (np.cos(s["light_dir"]) * x + np.sin(s["light_dir"]) * y)
    img = img * light + s["noise"] * s["noise_std"]
    occ = s["occluder"][:, :, None, None]
    ox, oy, ow, oh = occ[:, 0] * 2 - 1, occ[:, 1] * 2 - 1, 0.2 + 0.4 * occ[:, 2], 0.2 + 0.4 * occ[:, 3]
    box = (np.abs(x - ox) < ow / 2) & (np.abs(y - oy) < oh / 2) & s["occluded"]
    img = np.where(box, occ[:, 4] * 0.8 + s["noise"] * 0.03, img)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def _ellipse(u, v, cu, cv, ru, rv):
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes)."""
    return (np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2) - 1) * np.minimum(ru, rv)


def _segment(u, v, u0, v0, u1, v1):
    """Distance to the segment (u0, v0)-(u1, v1)."""
    du, dv = u1 - u0, v1 - v0
    t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv), 0, 1)
    return np.hypot(u - u0 - t * du, v - v0 - t * dv)


def _assign_splits(labels: np.ndarray) -> np.ndarray:
    """ "train"/"val"/"test" per image: HELD_OUT_FRACTION of each class (>= 1 once it has 3) to val
    and to test. Images are already random, so the last ones of each class are held out."""
    splits = np.full(len(labels), "train", dtype=object)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_held = max(1, round(len(members) * HELD_OUT_FRACTION)) if len(members) >= 3 else 0
        if n_held:
            splits[members[-2 * n_held : -n_held]] = "val"
            splits[members[-n_held:]] = "test"
    return splits


def _write_folders(root: Path, images: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> None:
    for i, (image, label, split) in enumerate(zip(images, labels, splits)):
        folder = root / split / CANONICAL_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{CANONICAL_CLASSES[label]}_{i:05d}.png")


_USAGE_OF = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_PIXEL_TEXT = [str(i) for i in range(256)]  # a lookup is ~4x faster than str() per pixel


def _write_csv(path: Path, images: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> None:
    # written by hand, not with csv.writer: no field needs quoting, and this is ~2x faster
    with open(path, "w", encoding="utf-8") as f:
        f.write("emotion,pixels,Usage\n")
        for split in ("train", "val", "test"):  # FER2013's own row order
            for i in np.flatnonzero(splits == split):
                pixels = " ".join([_PIXEL_TEXT[v] for v in images[i].ravel().tolist()])
                f.write(f"{labels[i]},{pixels},{_USAGE_OF[split]}\n")
