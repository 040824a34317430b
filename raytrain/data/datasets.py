"""Datasets on disk -> one decoded uint8 array per split: image folders and the FER2013 csv.

Owns layout detection, decoding (a process pool for large folders), the on-disk cache, the fixed-seed
val carve and the class weights. Plain numpy and PIL: it must not import torch or ray, so decoding
workers start fast and a dataset pickles into Ray's object store as plain arrays.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing
import os
import re
import tempfile
import warnings
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from raytrain.errors import UserError

CANONICAL_CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
# folder names seen in the wild -> canonical class; matched case-insensitively
CLASS_ALIASES = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# FER2013's `Usage` column -> split; its `emotion` column indexes CANONICAL_CLASSES
FER_USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
FER_COLUMNS = ("emotion", "pixels", "Usage")

# The val carve's seed. It is NOT the experiment seed: every experiment must be scored on the same
# images, whatever its own seed. Changing it changes every carved val split (and so every score).
SPLIT_SEED = 20_240_607

# Bump when the cached arrays or the alias table change meaning: old cache files then stop matching.
CACHE_FORMAT_VERSION = 1
CACHE_ENV_VAR = "RAYTRAIN_CACHE_DIR"

# A worker process costs ~0.3 s to start (spawn + numpy/PIL import); one is worth it per ~2000 files.
_FILES_PER_PROCESS = 2000


class DatasetError(UserError):
    """A dataset that cannot be used; the message names the file or folder and the fix.
    A ValueError (through UserError), so the CLI prints it as one message with exit code 2."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split: images uint8 (N, C, H, W) and labels int64 (N,), both read-only."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class FERDataset:
    """A decoded dataset: plain numpy, picklable, shared read-only by every trial.

    `splits` always holds "train" and "val" (carved from train when the data has none, see
    `val_carved`) and "test" when the data has one. `notes` says what loading changed (resizing).
    """

    class_names: list[str]
    splits: dict[str, Split]
    source: str
    layout: str  # "folders" or "csv"
    val_carved: bool
    notes: tuple[str, ...] = ()

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


def default_cache_dir() -> Path:
    """$RAYTRAIN_CACHE_DIR, else ~/.cache/raytrain/datasets."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "raytrain" / "datasets")


def load_dataset(
    root: str | Path,
    *,
    channels: int = 1,
    val_fraction: float = 0.1,
    workers: int = 4,
    cache_dir: str | Path | None = None,
) -> FERDataset:
    """Decode `root` (image folders or a FER2013 csv) into uint8 arrays, through the on-disk cache.

    Layouts: `root/train/<class>/*.{png,jpg,jpeg,bmp}` with optional `val/` and `test/`, or a FER2013
    csv (the file, or a folder holding exactly one csv). Images become `channels` channels (1 = "L",
    3 = RGB). If the images do not all share one size, every image is resized (bilinear) to the most
    common size, and `notes` says how many. Without a val split on disk, a stratified val split of
    `val_fraction` is carved from train with the fixed SPLIT_SEED. The decoded arrays are cached in
    `cache_dir` (default: `default_cache_dir()`), keyed by the files' paths, sizes and mtimes, so a
    second load is near-instant and any changed, added or removed file triggers a fresh decode.
    Raises DatasetError naming the file or folder at fault.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    source = _find_source(Path(root).expanduser())
    cache_path = _cache_path(source, channels, Path(cache_dir) if cache_dir else default_cache_dir())
    decoded = _read_cache(cache_path)
    if decoded is None:
        decoded = source.decode(channels, workers)
        _write_cache(cache_path, decoded)
    return _assemble(source, decoded, val_fraction)


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
# Finding the data: a root becomes a _Source that knows its files, its fingerprint and how to decode.


@dataclass(frozen=True)
class _Decoded:
    """What the cache holds: per split (images, labels) before any val carve."""

    class_names: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _FolderSource:
    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> [(image path, label)], in a stable order
    layout: ClassVar[str] = "folders"

    def fingerprint_entries(self) -> list:
        entries = []
        for split, items in self.files.items():
            for path, label in items:
                st = path.stat()
                entries.append([split, path.relative_to(self.root).as_posix(), label, st.st_size, st.st_mtime_ns])
        return entries

    def decode(self, channels: int, workers: int) -> _Decoded:
        return _decode_folders(self, channels, workers)


@dataclass(frozen=True)
class _CsvSource:
    root: Path  # the csv file itself
    layout: ClassVar[str] = "csv"

    @property
    def class_names(self) -> list[str]:
        return list(CANONICAL_CLASSES)

    def fingerprint_entries(self) -> list:
        st = self.root.stat()
        return [[self.root.name, st.st_size, st.st_mtime_ns]]

    def decode(self, channels: int, workers: int) -> _Decoded:
        return _decode_fer_csv(self.root, channels)


def _find_source(root: Path) -> _FolderSource | _CsvSource:
    layouts = "train/<class>/*.png (optional val/, test/) or a FER2013 csv (emotion,pixels,Usage)"
    if not root.exists():
        raise DatasetError(f"{root}: data root does not exist; pass a folder holding {layouts}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root}: not a folder or a .csv file; pass a folder holding {layouts}")
        return _CsvSource(root.resolve())
    split_dirs = _split_dirs(root)
    if "train" in split_dirs:
        return _scan_folders(root.resolve(), split_dirs)
    csvs = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if len(csvs) == 1:
        return _CsvSource(csvs[0].resolve())
    if len(csvs) > 1:
        names = ", ".join(p.name for p in csvs)
        raise DatasetError(f"{root}: holds {len(csvs)} csv files ({names}); pass the FER2013 csv file itself")
    raise DatasetError(f"{root}: no train/ folder and no csv file; expected {layouts}")


def _split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        split = _SPLIT_DIR_NAMES.get(entry.name.lower())
        if split is None or not entry.is_dir():
            continue
        if split in found:
            raise DatasetError(
                f"{root}: both {found[split].name}/ and {entry.name}/ look like the {split} split; keep one"
            )
        found[split] = entry
    return found


def canonical_class_name(folder_name: str) -> str:
    """`Fear` -> `fearful`; a name that is no FER class is kept as is (lower-cased)."""
    name = folder_name.strip().lower()
    return CLASS_ALIASES.get(name, name)


def class_order(names: set[str] | list[str]) -> list[str]:
    """Canonical FER order when every name is a FER class, else sorted: stable across machines."""
    if set(names) <= set(CANONICAL_CLASSES):
        return [c for c in CANONICAL_CLASSES if c in names]
    return sorted(names)


def _scan_folders(root: Path, split_dirs: dict[str, Path]) -> _FolderSource:
    class_dirs = {split: _class_dirs(split_dirs[split]) for split in SPLIT_NAMES if split in split_dirs}
    train_classes = set(class_dirs["train"])
    for split, dirs in class_dirs.items():
        missing, extra = sorted(train_classes - set(dirs)), sorted(set(dirs) - train_classes)
        if missing or extra:
            what = "; ".join([f"missing {missing}"] * bool(missing) + [f"not in train: {extra}"] * bool(extra))
            raise DatasetError(
                f"{split_dirs[split]}: classes differ from {split_dirs['train']} ({what}); "
                "every split needs one folder per class, with the same class names"
            )
    class_names = class_order(train_classes)
    label_of = {name: i for i, name in enumerate(class_names)}
    files = {
        split: [(path, label_of[name]) for name in class_names for path in _images_in(dirs[name])]
        for split, dirs in class_dirs.items()
    }
    return _FolderSource(root, class_names, files)


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        name = canonical_class_name(entry.name)
        if name in dirs:
            raise DatasetError(
                f"{split_dir}: {dirs[name].name}/ and {entry.name}/ are both the class {name!r}; "
                "merge them into one folder"
            )
        dirs[name] = entry
    if not dirs:
        raise DatasetError(f"{split_dir}: no class folders; put each class's images in {split_dir}/<class>/")
    return dirs


def _images_in(class_dir: Path) -> list[Path]:
    images = sorted(
        p
        for p in class_dir.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not images:
        raise DatasetError(
            f"{class_dir}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
        )
    return images


# ---------------------------------------------------------------------------------------------------
# Decoding image folders.


def _decode_folders(source: _FolderSource, channels: int, workers: int) -> _Decoded:
    paths = [str(path) for items in source.files.values() for path, _ in items]
    mode = "L" if channels == 1 else "RGB"
    with _chunk_mapper(len(paths), workers) as map_chunks:
        sizes = [size for chunk in map_chunks(_read_sizes, paths) for size in chunk]
        size_counts = Counter(sizes)
        (width, height), _ = size_counts.most_common(1)[0]
        images = np.concatenate(map_chunks(_decode_images, paths, mode, (width, height)))
    # (N, H, W) or (N, H, W, 3) -> (N, C, H, W)
    images = images[:, None] if channels == 1 else np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    splits, start = {}, 0
    for split, items in source.files.items():
        labels = np.array([label for _, label in items], dtype=np.int64)
        splits[split] = (images[start : start + len(items)], labels)
        start += len(items)
    notes = ()
    resized = len(paths) - size_counts[(width, height)]
    if resized:
        notes = (f"{resized} of {len(paths)} images were resized to {height}x{width}, the most common size",)
    return _Decoded(source.class_names, splits, notes)


@contextmanager
def _chunk_mapper(n_items: int, workers: int):
    """Yields map_chunks(fn, items, *args) -> [fn(chunk, *args), ...], run in a process pool when
    there are enough items to pay for starting one, else in this process as a single chunk."""
    processes = min(workers, os.cpu_count() or 1, n_items // _FILES_PER_PROCESS)
    if processes < 2:
        yield lambda fn, items, *args: [fn(items, *args)]
        return
    # spawn, not fork: the caller may be a Ray driver or hold torch threads, which fork can deadlock
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:

        def map_chunks(fn, items, *args):
            per_chunk = math.ceil(len(items) / (processes * 4))  # 4 chunks per process evens out slow files
            chunks = [items[i : i + per_chunk] for i in range(0, len(items), per_chunk)]
            return list(pool.map(fn, chunks, *([arg] * len(chunks) for arg in args)))

        yield map_chunks


def _read_sizes(paths: list[str]) -> list[tuple[int, int]]:
    """(width, height) of each image from its header, without decoding the pixels."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise _unreadable(path, err) from None
    return sizes


def _decode_images(paths: list[str], mode: str, size: tuple[int, int]) -> np.ndarray:
    """Decode, convert to `mode` ("L" or "RGB") and resize to `size` (w, h) where needed."""
    width, height = size
    shape = (len(paths), height, width) if mode == "L" else (len(paths), height, width, 3)
    out = np.empty(shape, dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if img.size != size:
                    img = img.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(img)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise _unreadable(path, err) from None
    return out


def _unreadable(path: str, err: Exception) -> DatasetError:
    return DatasetError(f"{path}: unreadable or corrupt image ({err}); replace or delete the file")


# ---------------------------------------------------------------------------------------------------
# Decoding the FER2013 csv.

# rows parsed per np.fromstring call: bounds the joined string to ~40 MB
_CSV_ROWS_PER_PARSE = 4096


def _decode_fer_csv(path: Path, channels: int) -> _Decoded:
    emotions, usages, pixel_rows, has_usage = _read_fer_rows(path)
    if not pixel_rows:
        raise DatasetError(f"{path}: csv has a header but no rows; it needs one row per image")
    n_pixels = len(pixel_rows[0].split())
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise DatasetError(f"{path}: row 2: pixels holds {n_pixels} values, not a square image (48x48 = 2304)")
    images = np.empty((len(pixel_rows), side * side), dtype=np.uint8)
    for start in range(0, len(pixel_rows), _CSV_ROWS_PER_PARSE):
        chunk = pixel_rows[start : start + _CSV_ROWS_PER_PARSE]
        images[start : start + len(chunk)] = _parse_pixels(path, chunk, start, n_pixels)
    images = images.reshape(-1, 1, side, side)
    if channels == 3:
        images = np.repeat(images, 3, axis=1)
    labels = np.array(emotions, dtype=np.int64)
    usage = np.array(usages)
    splits = {}
    for split in SPLIT_NAMES:
        rows = np.flatnonzero(usage == split)
        if len(rows):
            splits[split] = (images[rows], labels[rows])
    notes = () if has_usage else (f"{path.name} has no Usage column: every row is train",)
    return _Decoded(list(CANONICAL_CLASSES), splits, notes)


def _read_fer_rows(path: Path) -> tuple[list[int], list[str], list[str], bool]:
    try:
        return _read_fer_rows_unchecked(path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: not a readable csv ({err}); a FER2013 csv is UTF-8 text") from None


def _read_fer_rows_unchecked(path: Path) -> tuple[list[int], list[str], list[str], bool]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in FER_COLUMNS[:2] if c not in header]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; a FER2013 csv has the header "
                f"{','.join(FER_COLUMNS)} (Usage optional), got {','.join(header) or 'an empty file'}"
            )
        i_emotion, i_pixels = header.index("emotion"), header.index("pixels")
        i_usage = header.index("usage") if "usage" in header else None
        emotions, usages, pixel_rows = [], [], []
        for row_no, row in enumerate(reader, start=2):  # row 1 is the header
            if not row:
                continue
            if len(row) < len(header):
                raise DatasetError(f"{path}: row {row_no}: {len(row)} fields, the header has {len(header)}")
            emotion = row[i_emotion].strip()
            if not emotion.isdigit() or int(emotion) >= len(CANONICAL_CLASSES):
                raise DatasetError(
                    f"{path}: row {row_no}: emotion must be 0-6 (0=angry ... 6=neutral), got {emotion!r}"
                )
            usage = "train"
            if i_usage is not None:
                usage = FER_USAGE.get(row[i_usage].strip().lower())
                if usage is None:
                    raise DatasetError(
                        f"{path}: row {row_no}: Usage must be Training, PublicTest or PrivateTest, got {row[i_usage]!r}"
                    )
            emotions.append(int(emotion))
            usages.append(usage)
            pixel_rows.append(row[i_pixels])
    return emotions, usages, pixel_rows, i_usage is not None


def _parse_pixels(path: Path, rows: list[str], first: int, n_pixels: int) -> np.ndarray:
    """Parse space-separated pixel rows at C speed; on any mismatch find the bad row and name it."""
    with warnings.catch_warnings():
        # numpy warns (later: raises) when a token is not a number; treat both as "find the bad row"
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(" ".join(rows), dtype=np.int32, sep=" ")
        except (DeprecationWarning, ValueError):
            values = np.zeros(0, dtype=np.int32)
    if values.size == len(rows) * n_pixels and values.min(initial=0) >= 0 and values.max(initial=0) <= 255:
        return values.reshape(len(rows), n_pixels).astype(np.uint8)
    for i, text in enumerate(rows):
        row_no = first + i + 2  # data rows start at line 2
        tokens = text.split()
        if len(tokens) != n_pixels:
            raise DatasetError(f"{path}: row {row_no}: pixels holds {len(tokens)} values, expected {n_pixels}")
        if not all(t.isdigit() and int(t) <= 255 for t in tokens):
            bad = next(t for t in tokens if not (t.isdigit() and int(t) <= 255))
            raise DatasetError(f"{path}: row {row_no}: pixel value {bad!r} is not an integer 0-255")
    raise DatasetError(f"{path}: rows {first + 2}-{first + len(rows) + 1}: pixels could not be parsed")


# ---------------------------------------------------------------------------------------------------
# The on-disk cache: one .npz per (data, channels), named by a fingerprint of the files.


def _cache_path(source: _FolderSource | _CsvSource, channels: int, cache_dir: Path) -> Path:
    key = json.dumps(
        [CACHE_FORMAT_VERSION, source.layout, channels, source.class_names, source.fingerprint_entries()],
        separators=(",", ":"),
    )
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir / f"{_cache_prefix(source.root)}{fingerprint}.npz"


def _cache_prefix(root: Path) -> str:
    """`<name>-<hash of the full path>-`: entries of one dataset share it, two `fer/` folders do not."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.stem)[:40] or "data"
    return f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}-"


def _read_cache(path: Path) -> _Decoded | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta["version"] != CACHE_FORMAT_VERSION:
                return None
            splits = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in meta["splits"]}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # a truncated or foreign file: decode again and overwrite it
    return _Decoded(meta["class_names"], splits, tuple(meta["notes"]))


def _write_cache(path: Path, decoded: _Decoded) -> None:
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "class_names": decoded.class_names,
        "splits": list(decoded.splits),
        "notes": list(decoded.notes),
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    for split, (images, labels) in decoded.splits.items():
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loading is a copy, not a decompression
        # a reader sees the old file or the whole new one, never a partial write
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"{path}: could not write the dataset cache ({err}); the next load decodes again", stacklevel=3)
        return
    # entries for older versions of the same files can never match again
    prefix = path.name.rpartition("-")[0]  # the fingerprint is hex: the last "-" ends the prefix
    for stale in path.parent.glob(f"{prefix}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Assembling the dataset.


def _assemble(source: _FolderSource | _CsvSource, decoded: _Decoded, val_fraction: float) -> FERDataset:
    if "train" not in decoded.splits:
        raise DatasetError(
            f"{source.root}: no Training rows; the Usage column needs Training rows "
            "(PublicTest = val, PrivateTest = test)"
        )
    splits = {name: Split(*arrays) for name, arrays in decoded.splits.items()}
    carved = "val" not in splits
    if carved:
        train = splits["train"]
        train_idx, val_idx = carve_val(train.labels, val_fraction)
        if len(val_idx) == 0:
            raise DatasetError(
                f"{source.root}: too few train images to carve a val split (every class has < 2); "
                "add a val split or more images"
            )
        splits["train"] = Split(train.images[train_idx], train.labels[train_idx])
        splits["val"] = Split(train.images[val_idx], train.labels[val_idx])
    for split in splits.values():
        # trials read these zero-copy from Ray's object store, where they are read-only anyway;
        # making them read-only here too turns an accidental in-place edit into an error everywhere
        split.images.setflags(write=False)
        split.labels.setflags(write=False)
    ordered = {name: splits[name] for name in SPLIT_NAMES if name in splits}
    return FERDataset(
        class_names=list(decoded.class_names),
        splits=ordered,
        source=str(source.root),
        layout=source.layout,
        val_carved=carved,
        notes=decoded.notes,
    )


# ---------------------------------------------------------------------------------------------------
# `raytrain data check`: what a dataset holds and what looks wrong with it.

# below this many train images a class's F1 swings by whole points between seeds
MIN_TRAIN_PER_CLASS = 10
# max/min train count above which the report suggests class weights or the weighted sampler
IMBALANCE_HINT = 10.0


@dataclass(frozen=True)
class DatasetReport:
    """Classes, per-split counts, image shape and the problems `check_dataset` found."""

    source: str
    layout: str
    class_names: list[str]
    counts: dict[str, list[int]]  # split -> images per class, in class_names order
    image_size: tuple[int, int]  # (height, width)
    channels: int
    val_carved: bool
    imbalance_ratio: float  # max/min train count; inf when a class has no train images
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        splits = list(self.counts)
        carved = " (carved from train, fixed seed)" if self.val_carved else ""
        colour = "grayscale" if self.channels == 1 else "RGB"
        lines = [
            f"data:    {self.source} ({'image folders' if self.layout == 'folders' else 'FER2013 csv'})",
            f"images:  {self.image_size[0]}x{self.image_size[1]}, {self.channels} channel(s) ({colour})",
            f"splits:  {', '.join(splits)}{carved}",
            "",
        ]
        width = max(len("class"), *(len(c) for c in self.class_names))
        lines.append(f"{'class':<{width}}" + "".join(f"{s:>8}" for s in splits))
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}}" + "".join(f"{self.counts[s][i]:>8}" for s in splits))
        lines.append(f"{'total':<{width}}" + "".join(f"{sum(self.counts[s]):>8}" for s in splits))
        lines += ["", f"imbalance (max/min train count): {self.imbalance_ratio:.1f}"]
        lines += [f"note: {note}" for note in self.notes]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem(s):"] + [f"  - {p}" for p in self.problems]
        else:
            lines += ["", "no problems found"]
        return "\n".join(lines)


def check_dataset(
    root: str | Path,
    *,
    channels: int = 1,
    val_fraction: float = 0.1,
    workers: int = 4,
    cache_dir: str | Path | None = None,
) -> DatasetReport:
    """Load `root` as a sweep would (so it also fills the cache) and report on it.

    Errors that make the data unusable raise DatasetError; things that make results less
    trustworthy (a split missing a class, tiny classes, train images repeated in val/test,
    blank images) are listed in `problems`.
    """
    dataset = load_dataset(root, channels=channels, val_fraction=val_fraction, workers=workers, cache_dir=cache_dir)
    k = dataset.num_classes
    counts = {name: class_counts(split.labels, k).tolist() for name, split in dataset.splits.items()}
    train = counts["train"]
    ratio = max(train) / min(train) if min(train) > 0 else math.inf
    problems = []
    for split, per_class in counts.items():
        for name, n in zip(dataset.class_names, per_class):
            if n == 0:
                why = "the model never sees it" if split == "train" else f"its {split} scores are undefined"
                problems.append(f"{split}: no images of class {name!r} ({why}); add some")
    for name, n in zip(dataset.class_names, train):
        if 0 < n < MIN_TRAIN_PER_CLASS:
            problems.append(
                f"train: class {name!r} has only {n} images (< {MIN_TRAIN_PER_CLASS}); "
                "its scores will be noisy, add more"
            )
    problems += _leak_problems(dataset)
    problems += _blank_problems(dataset)
    notes = list(dataset.notes)
    if ratio > IMBALANCE_HINT:
        notes.append(
            f"train is imbalanced ({ratio:.1f}x); keep loss.use_class_weights: true or try data.weighted_sampler: true"
        )
    return DatasetReport(
        source=dataset.source,
        layout=dataset.layout,
        class_names=dataset.class_names,
        counts=counts,
        image_size=dataset.image_size,
        channels=dataset.channels,
        val_carved=dataset.val_carved,
        imbalance_ratio=ratio,
        problems=problems,
        notes=notes,
    )


def _image_hashes(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]


def _leak_problems(dataset: FERDataset) -> list[str]:
    train = set(_image_hashes(dataset.splits["train"].images))
    problems = []
    for split in ("val", "test"):
        if split in dataset.splits:
            copies = sum(h in train for h in _image_hashes(dataset.splits[split].images))
            if copies:
                problems.append(
                    f"{split}: {copies} images are exact copies of train images; {split} scores will be optimistic"
                )
    return problems


def _blank_problems(dataset: FERDataset) -> list[str]:
    problems = []
    for split, data in dataset.splits.items():
        flat = data.images.reshape(len(data), -1)
        blank = int(np.count_nonzero(flat.min(axis=1) == flat.max(axis=1)))
        if blank:
            problems.append(f"{split}: {blank} images are a single flat colour (blank); remove them")
    return problems
