"""FERDataset and load_dataset (find the source, read the cache or decode, assemble the splits), the
fixed-seed val carve, and the class counts and weights that training takes from the train split.
numpy only: it must not import torch or ray, so a dataset pickles into Ray's object store as plain arrays.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raytrain.data.cache import cache_path, default_cache_dir, read_cache, write_cache
from raytrain.data.decode import Decoded, decode_source
from raytrain.data.sources import LAYOUT_NAMES, SPLIT_NAMES, DamagedDataWarning, DatasetError, Source, find_source

# The val carve's seed. It is NOT the experiment seed: every experiment must be scored on the same
# images, whatever its own seed. Changing it changes every carved val split (and so every score).
SPLIT_SEED = 20_240_607


# data.labels: what a FER+ trial trains on. Metrics are always against the majority label.
LABEL_MODES = ("majority", "votes")


@dataclass(frozen=True, eq=False)
class Split:
    """One split: images uint8 (N, C, H, W) and labels int64 (N,), both read-only; with data.labels
    votes also `targets`, float32 (N, classes) vote distributions (rows sum to 1) to train on."""

    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Split:
        """The split's `rows` (indices or a boolean mask) in every per-image array it holds, read-only
        as loaded: the val carve and data.drop_cross_split_duplicates both cut a split this way."""
        arrays = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value = value[rows]
                value.setflags(write=False)
            arrays[field.name] = value
        return dataclasses.replace(self, **arrays)


@dataclass(frozen=True, eq=False)
class FERDataset:
    """A decoded dataset: plain numpy, picklable, shared read-only by every trial.

    `splits` always holds "train" and "val" (carved from train when the data has none, see
    `val_carved`) and "test" when the data has one. `notes` says what loading changed (resizing,
    16-bit scaling, images without a majority label); `skipped` lists the image files that could not
    be decoded ("<path>: <why>").
    """

    class_names: list[str]
    splits: dict[str, Split]
    source: str
    layout: str  # a key of sources.LAYOUT_NAMES: "folders", "csv", "ferplus", ...
    val_carved: bool
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    label_source: str = ""  # where the labels come from, e.g. "class folder names"

    @property
    def soft_targets(self) -> bool:
        """Whether training uses vote distributions (data.labels: votes) rather than the labels."""
        return self.splits["train"].targets is not None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.splits["train"].images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every stored image."""
        return tuple(self.splits["train"].images.shape[2:])


def load_dataset(
    root: str | Path,
    *,
    channels: int = 1,
    val_fraction: float = 0.1,
    workers: int = 4,
    cache_dir: str | Path | None = None,
    labels: str = "majority",
    class_names: list[str] | None = None,
) -> FERDataset:
    """Decode `root` into uint8 arrays, through the on-disk cache.

    Layouts (sources.find_source tells them apart): `root/train/<class>/*.{png,jpg,jpeg,bmp}` with
    optional `val/` and `test/` (class folders named `0`, `1`, ... are named by `class_names`, else
    AffectNet's order); a FER2013 csv (the file, or a folder holding exactly one csv); FER+
    (fer2013new.csv beside fer2013.csv); RAF-DB basic; a manifest csv (path,label[,split]). For FER+,
    `labels` "votes" adds each image's vote distribution as its training target; the labels are the
    majority vote either way. Images become `channels` channels (1 = "L",
    3 = RGB). If the images do not all share one size, every image is resized (bilinear) to the most
    common size, and `notes` says how many. Without a val split on disk, a stratified val split of
    `val_fraction` is carved from train with the fixed SPLIT_SEED. The decoded arrays are cached in
    `cache_dir` (default: `default_cache_dir()`), keyed by the files' paths, sizes and mtimes, so a
    second load is near-instant and any changed, added or removed file triggers a fresh decode.
    Raises DatasetError naming the file or folder at fault. An image file that cannot be decoded
    (torn, not an image, too large) is left out with a DamagedDataWarning; `skipped` lists them all.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    source = find_source(Path(root).expanduser(), class_names)
    cached_at = cache_path(source, channels, Path(cache_dir) if cache_dir else default_cache_dir())
    decoded = read_cache(cached_at)
    if decoded is None:
        decoded = decode_source(source, channels, workers)
        write_cache(cached_at, decoded)
    if decoded.skipped:
        # on every load, the cached one too: a sweep on this data trains without these images
        warnings.warn(
            f"{source.root}: {len(decoded.skipped)} image file(s) could not be decoded and were left out "
            f"(`raytrain data check` lists them); the first: {decoded.skipped[0]}",
            DamagedDataWarning,
            stacklevel=2,
        )
    return _assemble(source, decoded, val_fraction, labels)


# ---------------------------------------------------------------------------------------------------
# Class weights: all from the train split's labels.


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class, int64 (num_classes,)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency loss weights, float32 (num_classes,), scaled so their mean is 1.

    A class with no train images gets weight 0, not infinity: it never appears as a target, and an
    infinite weight would turn the loss into NaN the moment label smoothing or mixup touches it.
    """
    counts = class_counts(labels, num_classes).astype(np.float64)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    if inverse.sum() == 0:
        return np.zeros(num_classes, dtype=np.float32)
    return (inverse * num_classes / inverse.sum()).astype(np.float32)


def sampler_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample draw probabilities, float64 (N,), summing to 1: every class is drawn equally often."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = class_counts(labels, num_classes)
    present = np.count_nonzero(counts)
    if present == 0:
        return np.zeros(0, dtype=np.float64)
    return 1.0 / (counts[labels] * present)


def carve_val(labels: np.ndarray, val_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_indices, val_indices), each sorted, for a train split that has no val.

    Per class, round(n * val_fraction) images go to val, but at least one (so every class is scored)
    and at most n - 1 (so every class with >= 2 images keeps one to learn from). Each class draws from
    its own generator, so adding images to one class leaves every other class's split unchanged.
    """
    labels = np.asarray(labels, dtype=np.int64)
    val_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n = len(members)
        if n < 2:
            continue
        n_val = min(max(1, round(n * val_fraction)), n - 1)
        rng = np.random.default_rng([seed, int(cls)])
        val_parts.append(rng.choice(members, size=n_val, replace=False))
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


# ---------------------------------------------------------------------------------------------------
# Assembling the dataset.


def _assemble(source: Source, decoded: Decoded, val_fraction: float, labels: str) -> FERDataset:
    if "train" not in decoded.splits:
        raise DatasetError(
            f"{source.root}: no Training rows; the Usage column needs Training rows "
            "(PublicTest = val, PrivateTest = test)"
        )
    if labels == "votes" and not decoded.targets:
        raise DatasetError(
            f"{source.root}: data.labels votes trains on annotators' vote counts, which only FER+ has (fer2013new.csv "
            f"beside fer2013.csv); this is {LAYOUT_NAMES[source.layout]}: set data.labels: majority"
        )
    targets = decoded.targets if labels == "votes" else {}
    splits = {name: Split(*arrays, targets.get(name)) for name, arrays in decoded.splits.items()}
    carved = "val" not in splits
    if carved:
        train = splits["train"]
        train_idx, val_idx = carve_val(train.labels, val_fraction)
        if len(val_idx) == 0:
            raise DatasetError(
                f"{source.root}: too few train images to carve a val split (every class has < 2); "
                "add a val split or more images"
            )
        splits["train"], splits["val"] = train.take(train_idx), train.take(val_idx)
    for split in splits.values():
        # trials read these zero-copy from Ray's object store, where they are read-only anyway;
        # making them read-only here too turns an accidental in-place edit into an error everywhere
        for array in (split.images, split.labels, split.targets):
            if array is not None:
                array.setflags(write=False)
    ordered = {name: splits[name] for name in SPLIT_NAMES if name in splits}
    label_source = source.label_source + (f" (data.labels: {labels})" if decoded.targets else "")
    return FERDataset(
        class_names=list(decoded.class_names),
        splits=ordered,
        source=str(source.root),
        layout=source.layout,
        val_carved=carved,
        notes=(*source.notes, *decoded.notes),
        skipped=decoded.skipped,
        label_source=label_source,
    )
