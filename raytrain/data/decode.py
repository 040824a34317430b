"""Decoding a source into uint8 arrays per split: image files (class folders, RAF-DB, a manifest; in a
process pool when large enough to pay for one; an image that cannot be decoded is left out and
listed), the FER2013 csv (parsed at C speed, a bad row named by its line number) and FER+ (the
FER2013 csv's pixels, labelled by fer2013new.csv's votes: the majority and the vote distribution).
`decode_image` is the one way an image file becomes 8-bit pixels, for `predict` too: 16-bit pixels
are scaled, never clipped, and oversized images refused.

numpy and PIL only: it must not import torch or ray, so the spawned decoding workers start fast.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from raytrain.data.sources import (
    CANONICAL_CLASSES,
    FERPLUS_COLUMNS,
    FERPLUS_EMOTION_COLUMNS,
    SPLIT_NAMES,
    CsvSource,
    DatasetError,
    FerPlusSource,
    FolderSource,
    Source,
    canonical_class_name,
)

# FER2013's `Usage` column -> split; its `emotion` column indexes CANONICAL_CLASSES
FER_USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
FER_COLUMNS = ("emotion", "pixels", "Usage")

# A worker process costs ~0.3 s to start (spawn + numpy/PIL import); one is worth it per ~2000 files.
_FILES_PER_PROCESS = 2000

# rows parsed per np.fromstring call: bounds the joined string to ~40 MB
_CSV_ROWS_PER_PARSE = 4096


@dataclass(frozen=True)
class Decoded:
    """What decoding yields and the cache holds: per split (images, labels) before any val carve, and
    for FER+ the vote distribution of each image (its soft target when data.labels is votes)."""

    class_names: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    notes: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # "<path>: <why>" for each image file that could not be decoded, left out
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # split -> float32 (N, classes), rows sum to 1


def decode_source(source: Source, channels: int, workers: int) -> Decoded:
    """Decode every image of `source` to `channels` channels (1 = "L", 3 = RGB), uint8 (N, C, H, W)."""
    if isinstance(source, CsvSource):
        return _decode_fer_csv(source.root, channels)
    if isinstance(source, FerPlusSource):
        return _decode_ferplus(source, channels)
    return _decode_folders(source, channels, workers)


# ---------------------------------------------------------------------------------------------------
# Decoding image folders.


def _decode_folders(source: FolderSource, channels: int, workers: int) -> Decoded:
    paths = [str(path) for items in source.files.values() for path, _ in items]
    mode = "L" if channels == 1 else "RGB"
    with _chunk_mapper(len(paths), workers) as map_chunks:
        sizes = [size for chunk in map_chunks(_read_sizes, paths) for size in chunk]
        # a file that cannot be decoded is left out and listed (`data check`), not fatal: one torn
        # download among 30,000 images should not stop a sweep
        failures = {i: size for i, size in enumerate(sizes) if isinstance(size, str)}
        readable = [i for i in range(len(paths)) if i not in failures]
        if not readable:
            raise DatasetError(
                f"{source.root}: none of its {len(paths)} images could be decoded; the first: {sizes[0]}"
            )
        (width, height), _ = Counter(sizes[i] for i in readable).most_common(1)[0]
        chunks = map_chunks(_decode_images, [paths[i] for i in readable], mode, (width, height))
    images = np.concatenate([images for images, _, _ in chunks])
    errors = [error for _, chunk_errors, _ in chunks for error in chunk_errors]
    failures |= {i: error for i, error in zip(readable, errors) if error}
    kept = np.array([i for i in readable if i not in failures], dtype=np.int64)
    if len(kept) < len(readable):
        images = images[[i not in failures for i in readable]]
    # (N, H, W) or (N, H, W, 3) -> (N, C, H, W)
    images = images[:, None] if channels == 1 else np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    splits = _split_kept(source, paths, images, kept, failures)
    notes = []
    resized = sum(sizes[i] != (width, height) for i in kept)
    if resized:
        notes.append(f"{resized} of {len(kept)} images were resized to {height}x{width}, the most common size")
    scaled = sum(n for _, _, n in chunks)
    if scaled:
        notes.append(f"{scaled} of {len(kept)} images had 16-bit pixels; scaled to 8 bits (>> 8), not clipped")
    skipped = tuple(failures[i] for i in sorted(failures))
    return Decoded(source.class_names, splits, tuple(notes), skipped)


def _split_kept(
    source: FolderSource, paths: list[str], images: np.ndarray, kept: np.ndarray, failures: dict[int, str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split, (images, labels) of the files in `kept` (indices into `paths`, sorted)."""
    labels = np.array([label for items in source.files.values() for _, label in items], dtype=np.int64)
    split_of = np.repeat(np.arange(len(source.files)), [len(items) for items in source.files.values()])
    # files are listed split by split, so each split's kept images are one slice (a view, not a copy)
    bounds = np.searchsorted(split_of[kept], np.arange(len(source.files) + 1))
    splits = {}
    for s, (split, items) in enumerate(source.files.items()):
        start, stop = bounds[s], bounds[s + 1]
        if start == stop:
            first = int(np.flatnonzero(split_of == s)[0])
            raise DatasetError(
                f"{Path(paths[first]).parent.parent}: none of its {len(items)} images could be decoded; "
                f"the first: {failures[first]}"
            )
        splits[split] = (images[start:stop], labels[kept[start:stop]])
    return splits


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


def _read_sizes(paths: list[str]) -> list[tuple[int, int] | str]:
    """(width, height) of each image from its header, without decoding the pixels; for a file that
    cannot be opened, the message that says why."""
    sizes: list[tuple[int, int] | str] = []
    for path in paths:
        try:
            with _open_image(path) as img:
                sizes.append(img.size)
        except DatasetError as err:
            sizes.append(str(err))
    return sizes


def _decode_images(paths: list[str], mode: str, size: tuple[int, int]) -> tuple[np.ndarray, list[str | None], int]:
    """Decode, convert to `mode` ("L" or "RGB") and resize to `size` (w, h) where needed. Returns the
    pixels, per image None or why it could not be decoded (its row is left zero), and how many images
    had 16-bit pixels."""
    width, height = size
    shape = (len(paths), height, width) if mode == "L" else (len(paths), height, width, 3)
    out = np.zeros(shape, dtype=np.uint8)
    errors: list[str | None] = []
    scaled = 0
    for i, path in enumerate(paths):
        try:
            with _open_image(path) as img:
                converted, was_16_bit = _to_8_bit(img, mode, path)
                if converted.size != size:
                    converted = converted.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(converted)
        except DatasetError as err:
            errors.append(str(err))
            continue
        errors.append(None)
        scaled += was_16_bit
    return out, errors, scaled


def decode_image(path: str | Path, mode: str) -> np.ndarray:
    """One image file as uint8 pixels in `mode` ("L": (H, W), "RGB": (H, W, 3)), writable.
    Raises DatasetError naming the file when it cannot be opened, is too large or has no 8-bit scale."""
    with _open_image(str(path)) as img:
        converted, _ = _to_8_bit(img, mode, str(path))
        return np.array(converted)


@contextmanager
def _open_image(path: str) -> Iterator[Image.Image]:
    """Image.open; a file that fails to open or to decode inside the block, or has more pixels than
    PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS), raises a DatasetError naming it."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit, then decodes it anyway (GBs for a crafted file)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DatasetError(_too_large_message(path, err)) from None
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt image ({err}); replace or delete the file") from None
    try:
        with img:
            yield img
    except DatasetError:
        raise  # a ValueError too, already naming the file
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable or corrupt image ({err}); replace or delete the file") from None


def _too_large_message(path: str, err: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    found = re.search(r"\((\d+) pixels\)", str(err))  # PIL's message is the only place it says the size
    size = f"{int(found[1]) / 1e6:.0f} megapixels" if found else "too many pixels"
    return (
        f"{path}: {size}, over the {limit / 1e6:.0f}-megapixel limit on one image (a guard against "
        "decompression bombs); downscale it or remove it"
    )


# modes whose pixels are wider than 8 bits: PIL's convert("L") clips them at 255, which turns a
# 16-bit scan almost all white. "I" is a 32-bit container, but PIL opens 16-bit PGMs into it.
def _wide_mode(mode: str) -> bool:
    return mode == "I" or mode.startswith("I;16")


def _to_8_bit(img: Image.Image, mode: str, path: str) -> tuple[Image.Image, bool]:
    """`img` in `mode` ("L" or "RGB"), and whether it had 16-bit pixels, which are scaled by their bit
    depth (>> 8), not clipped. Floating-point or wider integer pixels have no known scale: refused."""
    if _wide_mode(img.mode):
        pixels = np.asarray(img)
        low, high = int(pixels.min(initial=0)), int(pixels.max(initial=0))
        if low < 0 or high > 0xFFFF:
            raise DatasetError(
                f"{path}: integer pixels from {low} to {high} do not fit 16 bits, so they have no known 8-bit "
                "scale; save the image with 8- or 16-bit pixels"
            )
        return Image.fromarray((pixels >> 8).astype(np.uint8), "L").convert(mode), True
    if img.mode == "F":
        raise DatasetError(
            f"{path}: floating-point pixels have no known 8-bit scale; save the image with 8- or 16-bit pixels"
        )
    return img.convert(mode), False


# ---------------------------------------------------------------------------------------------------
# Decoding the FER2013 csv.


def _decode_fer_csv(path: Path, channels: int) -> Decoded:
    emotions, usages, pixel_rows, has_usage = _read_fer_rows(path)
    images = _fer_images(path, pixel_rows, channels)
    labels = np.array(emotions, dtype=np.int64)
    splits = {split: (images[rows], labels[rows]) for split, rows in _rows_by_split(usages).items()}
    notes = () if has_usage else (f"{path.name} has no Usage column: every row is train",)
    return Decoded(list(CANONICAL_CLASSES), splits, notes)


def _fer_images(path: Path, pixel_rows: list[str], channels: int) -> np.ndarray:
    """The FER2013 csv's pixel rows as uint8 (N, channels, side, side)."""
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
    return np.repeat(images, 3, axis=1) if channels == 3 else images


def _rows_by_split(usages: list[str]) -> dict[str, np.ndarray]:
    """split -> the indices of its rows, for the splits that have rows, in SPLIT_NAMES order."""
    usage = np.array(usages)
    rows = {split: np.flatnonzero(usage == split) for split in SPLIT_NAMES}
    return {split: indices for split, indices in rows.items() if len(indices)}


def _read_fer_rows(path: Path) -> tuple[list[int], list[str], list[str], bool]:
    try:
        return _read_fer_rows_unchecked(path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: not a readable csv ({err}); a FER2013 csv is UTF-8 text") from None


def _read_fer_rows_unchecked(path: Path) -> tuple[list[int], list[str], list[str], bool]:
    # utf-8-sig: a csv saved by Excel or Windows tools starts with a BOM, which would stick to "emotion"
    with open(path, newline="", encoding="utf-8-sig") as f:
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
# Decoding FER+: the FER2013 csv's pixels, labelled by the votes in fer2013new.csv.

# Why an image has no majority label and is left out (in both data.labels modes, so that majority and
# votes runs are scored on the same images), checked in this order.
NO_IMAGE_NAME = "no Image name (FER+ left it out)"
NO_VOTES = "no votes"
TIED = "a tie for the most votes"
UNKNOWN = "unknown has the most votes"
NOT_A_FACE = "not a face (NF has the most votes)"
_UNKNOWN_COLUMN, _NF_COLUMN = len(FERPLUS_EMOTION_COLUMNS), len(FERPLUS_EMOTION_COLUMNS) + 1


def ferplus_labels(votes: np.ndarray, named: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each image's majority label and why the others have none.

    `votes`: int (N, 10) in fer2013new.csv's column order (8 emotions, unknown, NF); `named`: bool (N,),
    whether the row names an image. Returns (labels, left_out): the index (into the 8 emotion columns)
    of the single column with the most votes, -1 where there is none, and {reason: bool mask} of the
    images left out. A tie for the most votes is left out, not broken by column order: that would give
    the tie to neutral, the first column, and FER+'s own majority mode drops unclear images too.
    """
    top = votes.max(axis=1)
    best = votes.argmax(axis=1)
    tied = (votes == top[:, None]).sum(axis=1) > 1
    left_out: dict[str, np.ndarray] = {}
    remaining = np.ones(len(votes), dtype=bool)
    for reason, mask in (
        (NO_IMAGE_NAME, ~named),
        (NO_VOTES, top == 0),
        (TIED, tied),
        (UNKNOWN, best == _UNKNOWN_COLUMN),
        (NOT_A_FACE, best == _NF_COLUMN),
    ):
        left_out[reason] = remaining & mask
        remaining &= ~mask
    return np.where(remaining, best, -1), left_out


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """float32 (N, 8): each image's emotion votes as shares of its emotion votes (unknown and NF left
    out); a row without emotion votes is all zero (such images have no majority and are left out)."""
    emotion_votes = votes[:, : len(FERPLUS_EMOTION_COLUMNS)].astype(np.float64)
    total = emotion_votes.sum(axis=1, keepdims=True)
    return np.divide(emotion_votes, total, out=np.zeros_like(emotion_votes), where=total > 0).astype(np.float32)


def _decode_ferplus(source: FerPlusSource, channels: int) -> Decoded:
    _, pixel_usages, pixel_rows, has_usage = _read_fer_rows(source.pixels)
    usages, named, votes = _read_ferplus_votes(source.votes)
    if len(usages) != len(pixel_rows):
        raise DatasetError(
            f"{source.votes}: {len(usages)} rows, but {source.pixels.name} has {len(pixel_rows)}; FER+ relabels "
            "FER2013 row by row, so both files must list the same images in the same order"
        )
    if has_usage and usages != pixel_usages:
        row = next(i for i, (new, old) in enumerate(zip(usages, pixel_usages)) if new != old)
        raise DatasetError(
            f"{source.votes}: data row {row + 1} is in the {usages[row]} split, but in {source.pixels.name} it is in "
            f"{pixel_usages[row]}; the two files must list the same images in the same order"
        )
    images = _fer_images(source.pixels, pixel_rows, channels)
    labels, left_out = ferplus_labels(votes, named)
    # FER+'s column order -> the dataset's class order (the seven as FER2013 orders them, then contempt)
    column_of = [canonical_class_name(c) for c in FERPLUS_EMOTION_COLUMNS]
    order = [column_of.index(name) for name in source.class_names]
    relabel = np.argsort(order)  # column index -> class index
    targets = vote_distribution(votes)[:, order]
    kept = labels >= 0
    splits, split_targets = {}, {}
    for split, rows in _rows_by_split(usages).items():
        rows = rows[kept[rows]]
        if len(rows):
            splits[split] = (images[rows], relabel[labels[rows]].astype(np.int64))
            split_targets[split] = targets[rows]
    notes = ()
    if not kept.all():
        reasons = ", ".join(f"{int(mask.sum())} {reason}" for reason, mask in left_out.items() if mask.any())
        notes = (
            f"FER+: {int((~kept).sum())} of {len(kept)} images have no single top-voted emotion and are left out "
            f"({reasons})",
        )
    return Decoded(list(source.class_names), splits, notes, targets=split_targets)


def _read_ferplus_votes(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """fer2013new.csv: per row its split, whether it names an image, and its votes, int (N, 10) in
    FERPLUS_COLUMNS order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            given = next(reader, [])
            header = [h.strip().lower() for h in given]
            where = [header.index(c) for c in FERPLUS_COLUMNS]  # all there: that is how it was recognised
            i_usage, i_name, vote_columns = where[0], where[1], where[2:]
            usages, named, votes = [], [], []
            for row_no, row in enumerate(reader, start=2):  # row 1 is the header; blank rows skipped as FER2013's
                if not row:
                    continue
                if len(row) < len(header):
                    raise DatasetError(f"{path}: row {row_no}: {len(row)} fields, the header has {len(header)}")
                usage = FER_USAGE.get(row[i_usage].strip().lower())
                if usage is None:
                    raise DatasetError(
                        f"{path}: row {row_no}: Usage must be Training, PublicTest or PrivateTest, got {row[i_usage]!r}"
                    )
                counts = [row[i].strip() for i in vote_columns]
                bad = next((i for i, n in zip(vote_columns, counts) if not (n.isascii() and n.isdigit())), None)
                if bad is not None:
                    raise DatasetError(
                        f"{path}: row {row_no}: {given[bad].strip()} must be a whole number of votes (0 or more), "
                        f"got {row[bad]!r}"
                    )
                usages.append(usage)
                named.append(bool(row[i_name].strip()))
                votes.append([int(count) for count in counts])
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: not a readable csv ({err}); fer2013new.csv is UTF-8 text") from None
    return usages, np.array(named, dtype=bool), np.array(votes, dtype=np.int64).reshape(-1, len(FERPLUS_COLUMNS) - 2)
