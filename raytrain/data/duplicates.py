"""Exact and near-duplicate images within and across a dataset's splits: a perceptual hash per image
and a Hamming-distance search, for `raytrain data check` and `data.drop_cross_split_duplicates`.
numpy only (PIL draws the contact sheet), like all of raytrain.data: no torch, no ray.

The hash: a DCT pHash made tolerant of shifts. FER images are small (48 px), so a copy shifted by
2 px has moved 4% of its side, which flips a third of a plain 64-bit pHash; and distinct faces of one
pose look alike at pHash's 8x8 frequencies. So each image is hashed in 25 windows: its interior,
MARGIN px in from every edge, at every offset of up to MARGIN px across and down. A window is
area-resampled to 44x44, and the signs of its 24x24 lowest DCT frequencies but the DC term are its
575 bits: brightness (DC) and contrast (a positive scale) change no sign, and JPEG moves low
frequencies little. Two images are near-duplicates when the centre window of one is within 10% of
the bits (NEAR_FRACTION: 57 of 575) of some window of the other: a copy shifted by up to MARGIN px
lines up exactly with one of them. Measured on synthetic faces (tests/bench/bench_duplicates.py):
shifted copies are all found, and so are 99-100% of JPEG q75 and +30-brightness copies (78% at JPEG
q50); 22 of the 644 million pairs of 35,887 distinct faces fall within the threshold. Images under
48 px keep fewer frequencies (a 24 px image's 20 px windows: 20x20, 399 bits), and images under
MIN_SIDE px are left to the exact check: too few pixels to tell a near copy from a look-alike.

The search: locality-sensitive hashing. TABLES tables are each keyed by KEY_BITS of the bits (drawn
once, fixed seed); two images are compared in full when a window of one shares a table's key with
the centre of the other. A pair right at the threshold shares a key with odds of at least 95% (24
draws of 20 of 575 bits; the search looks both ways round, which adds to them), one at half of it
with odds of 99.998%. The cost grows with the images, not with their pairs: about 4 s for FER2013's
35,887 images on 2 CPUs, where comparing every pair in numpy takes about half an hour.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from raytrain.artifacts import atomic_path
from raytrain.data.datasets import FERDataset
from raytrain.data.sources import DatasetError

MARGIN = 2  # px: copies shifted by up to this much either way, across and down, are found
HASH_GRID = 44  # each window is area-resampled to at most 44x44 (a 48 px FER image's window as it is)
HASH_FREQS = 24  # ... and its 24x24 lowest DCT frequencies kept, less DC: 575 bits
NEAR_FRACTION = 0.10  # at most this share of the bits differ: a near-duplicate (57 of 575)
MIN_SIDE = 16  # px: smaller images hold too little to tell near copies from look-alikes: exact only
TABLES = 24  # LSH tables ...
KEY_BITS = 20  # ... each keyed by this many bits
_LSH_SEED = 20_250_101  # which bits key each table: fixed, so the same images always give the same pairs
WINDOWS = (2 * MARGIN + 1) ** 2
CENTRE = WINDOWS // 2  # the unshifted window
_HASH_CHUNK = 512  # images hashed per pass: ~40 MB of float32 coefficients at 48 px
_CANDIDATES_PER_PASS = 2_000_000  # bounds the arrays of one search pass


@dataclass(frozen=True)
class ImageHashes:
    """Per image, the hash of each window, uint64 (N, WINDOWS, words), and its LSH key in each table,
    uint32 (N, WINDOWS, TABLES); `bits` per hash."""

    windows: np.ndarray
    keys: np.ndarray
    bits: int

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def near_distance(self) -> int:
        """The most bits two near-duplicates differ in (57 of 575 at 48 px)."""
        return int(NEAR_FRACTION * self.bits)


def hash_size(height: int, width: int) -> tuple[int, int]:
    """(grid, frequencies) for images of this size: HASH_GRID and HASH_FREQS, less for windows
    smaller than the grid (a 24 px image's 20 px window keeps 20x20 frequencies: 399 bits)."""
    grid = min(HASH_GRID, height - 2 * MARGIN, width - 2 * MARGIN)
    return grid, min(HASH_FREQS, grid)


def perceptual_hashes(images: np.ndarray) -> ImageHashes:
    """The windowed hash of uint8 images (N, C, H, W) or (N, H, W), at least MIN_SIDE px a side;
    colour is averaged to grey."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    n, _, height, width = images.shape
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"images of {height}x{width} px are too small to hash; at least {MIN_SIDE} px a side")
    grid, k = hash_size(height, width)
    bits_per_hash = k * k - 1
    words = -(-bits_per_hash // 64)  # the last one zero-padded
    rows, cols = _window_transforms(height, grid, k), _window_transforms(width, grid, k)
    offsets = 2 * MARGIN + 1
    positions = _key_positions(bits_per_hash)
    windows = np.zeros((n, WINDOWS, words), dtype=np.uint64)
    keys = np.zeros((n, WINDOWS, TABLES), dtype=np.uint32)
    for start in range(0, n, _HASH_CHUNK):
        grey = images[start : start + _HASH_CHUNK].mean(axis=1, dtype=np.float32)
        m = len(grey)
        # separable: every window's coefficients are rows @ image @ cols.T, all offsets in two products
        coeffs = rows.reshape(-1, height) @ (grey @ cols.reshape(-1, width).T)  # (m, offsets*k, offsets*k)
        # the signs are taken before the windows are gathered: moving bools costs a quarter of floats
        signs = (coeffs > 0).reshape(m, offsets, k, offsets, k).transpose(0, 1, 3, 2, 4)
        bits = signs.reshape(m, WINDOWS, k * k)[..., 1:]  # the DC term (brightness) left out
        keys[start : start + m] = _keys(bits, positions)
        padding = np.zeros(bits.shape[:-1] + (words * 64 - bits_per_hash,), dtype=bool)
        packed = np.packbits(np.concatenate([bits, padding], axis=-1), axis=-1)
        windows[start : start + m] = packed.view(">u8").astype(np.uint64)
    return ImageHashes(windows, keys, bits_per_hash)


def near_pairs(hashes: ImageHashes, max_distance: int | None = None) -> np.ndarray:
    """The pairs of images (i < j) within `max_distance` bits (default: hashes.near_distance) at
    their best window offset, as int64 rows (i, j, distance), sorted. Found through the LSH tables: a
    pair that shares no table key is missed (the odds are in the module docstring)."""
    max_distance = hashes.near_distance if max_distance is None else max_distance
    n = len(hashes)
    found = []
    per_pass = max(1, _CANDIDATES_PER_PASS // WINDOWS)
    for table in range(TABLES):
        index = hashes.keys[:, CENTRE, table]
        order = np.argsort(index, kind="stable")
        bucket_size = np.bincount(index, minlength=1 << KEY_BITS)
        bucket_start = np.cumsum(bucket_size) - bucket_size
        for start in range(0, n, per_pass):
            queries = hashes.keys[start : start + per_pass, :, table].ravel()
            counts = bucket_size[queries]
            total = int(counts.sum())
            query = np.repeat(np.arange(len(queries)), counts)
            rank = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            j = order[np.repeat(bucket_start[queries], counts) + rank]
            i, window = start + query // WINDOWS, query % WINDOWS
            other = i != j
            i, j, window = i[other], j[other], window[other]
            distance = np.bitwise_count(hashes.windows[i, window] ^ hashes.windows[j, CENTRE]).sum(axis=-1)
            close = distance <= max_distance
            found.append(np.stack([np.minimum(i, j)[close], np.maximum(i, j)[close], distance[close]], axis=1))
    pairs = np.concatenate(found).astype(np.int64) if found else np.zeros((0, 3), dtype=np.int64)
    # one pair comes from several tables and from both ways round: keep its smallest distance
    pairs = pairs[np.lexsort((pairs[:, 2], pairs[:, 1], pairs[:, 0]))]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    return pairs[first]


def exact_groups(images: np.ndarray) -> np.ndarray:
    """Per image, the number of its group of byte-identical images (int64), numbered in order of
    first appearance: images with the same number are exact copies."""
    digests = np.array([hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images])
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    renumber = np.empty(len(first), dtype=np.int64)
    renumber[np.argsort(first)] = np.arange(len(first))
    return renumber[inverse.ravel()]


# ---------------------------------------------------------------------------------------------------
# A dataset's duplicates, split by split.

# what a person asks first: does val or test repeat train? Then: does test repeat val? Then each split alone.
SPLIT_PAIRS = (
    ("train", "val"),
    ("train", "test"),
    ("val", "test"),
    ("train", "train"),
    ("val", "val"),
    ("test", "test"),
)
MAX_EXAMPLES = 8  # example pairs listed (and drawn), at most two per pair of splits


@dataclass(frozen=True)
class DuplicateCount:
    """One pair of splits (or one split with itself). Images: for two splits, images of the second
    with a copy in the first; for one split, its images with a copy elsewhere in it. An image with an
    exact copy counts as exact, not near."""

    exact_images: int
    near_images: int
    exact_pairs: int
    near_pairs: int


@dataclass(frozen=True)
class DuplicatePair:
    """Two images by (split, index in that split); `distance` in bits (0 for exact copies)."""

    first: tuple[str, int]
    second: tuple[str, int]
    distance: int
    exact: bool


@dataclass(frozen=True)
class Duplicates:
    """What find_duplicates found: counts per pair of splits (SPLIT_PAIRS order, the dataset's splits
    only), a few example pairs, and for val and test which of their images copy a train image."""

    counts: dict[tuple[str, str], DuplicateCount]
    examples: list[DuplicatePair]
    copies_of_train: dict[str, np.ndarray]  # split -> bool per image: an exact or near copy of a train image
    bits: int | None  # per hash; None: the images are too small to search for near copies

    @property
    def rule(self) -> str:
        """What exact and near mean here: the hash and its threshold, as the report and notes say it."""
        if self.bits is None:
            return f"exact = identical pixels; near copies not searched (images under {MIN_SIDE} px a side)"
        return (
            f"exact = identical pixels; near = within {int(NEAR_FRACTION * self.bits)} of the {self.bits} bits of a "
            f"pHash taken at shifts of up to {MARGIN} px"
        )

    def format(self, origins: dict[str, list[str]] | None = None) -> list[str]:
        """The report's lines: the hash and threshold, the counts, and the examples (named by
        `origins[split][index]`, a file or csv line, where known)."""
        lines = [f"duplicates: {self.rule}", f"  {'splits':<12}{'exact':>7}{'near':>7}   {'pairs':<12}images counted"]
        for (a, b), count in self.counts.items():
            name, pairs = (a if a == b else f"{a}-{b}"), f"{count.exact_pairs} + {count.near_pairs}"
            what = f"{a} images with a copy elsewhere in {a}" if a == b else f"{b} images with a copy in {a}"
            lines.append(f"  {name:<12}{count.exact_images:>7}{count.near_images:>7}   {pairs:<12}{what}")
        if self.examples:
            lines.append("  examples:")
        for pair in self.examples:
            how = "exact copies" if pair.exact else f"near, {pair.distance} of {self.bits} bits differ"
            lines.append(f"    {_name(pair.first, origins)} ~ {_name(pair.second, origins)}: {how}")
        return lines


def find_duplicates(dataset: FERDataset) -> Duplicates:
    """Exact and near-duplicate images within and across the dataset's splits. Byte-identical images
    are grouped first (blake2b), so a thousand copies of one image cost one hash and no pairs."""
    names = list(dataset.splits)
    sizes = [len(dataset.splits[name]) for name in names]
    images = np.concatenate([dataset.splits[name].images for name in names])
    split_of = np.repeat(np.arange(len(names)), sizes)
    group = exact_groups(images)
    n_groups = int(group.max()) + 1 if len(group) else 0
    members = np.zeros((n_groups, len(names)), dtype=np.int64)  # images of each group per split
    np.add.at(members, (group, split_of), 1)
    first = np.full((n_groups, len(names)), len(images), dtype=np.int64)  # its first image per split
    np.minimum.at(first, (group, split_of), np.arange(len(images)))
    representative = first.min(axis=1)
    bits, near = None, np.zeros((0, 3), dtype=np.int64)  # rows (group, group, distance)
    if min(dataset.image_size) >= MIN_SIDE:
        hashes = perceptual_hashes(images[representative])
        bits, near = hashes.bits, near_pairs(hashes)
    # per group and split: has a near copy in that split (in another group: identical ones are exact)
    near_in = np.zeros_like(members, dtype=bool)
    for g, h in ((near[:, 0], near[:, 1]), (near[:, 1], near[:, 0])):
        np.logical_or.at(near_in, g, members[h] > 0)
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    def where(index: int) -> tuple[str, int]:  # an index into `images` -> (split, index in the split)
        return names[split_of[index]], int(index - offsets[split_of[index]])

    counts, examples = {}, []
    for a, b in SPLIT_PAIRS:
        if a not in names or b not in names:
            continue
        i, j = names.index(a), names.index(b)
        counts[(a, b)] = _count(members, near_in, near, i, j)
        examples += _examples(members, first, group, split_of, near, i, j, where)
    train = names.index("train")
    copies = {}
    for name in names:
        if name != "train":
            g = group[offsets[names.index(name)] : offsets[names.index(name) + 1]]
            copies[name] = (members[g, train] > 0) | near_in[g, train]
    return Duplicates(counts, examples[:MAX_EXAMPLES], copies, bits)


def drop_cross_split_duplicates(dataset: FERDataset, found: Duplicates | None = None) -> tuple[FERDataset, dict]:
    """The dataset without the val and test images that are exact or near copies of a train image
    (data.drop_cross_split_duplicates), a note saying how many, and {split: images left out}.
    Every array a split holds (images, labels, and any other per-image array) loses the same rows."""
    found = found or find_duplicates(dataset)
    splits, dropped = dict(dataset.splits), {}
    for name, copies in found.copies_of_train.items():
        dropped[name] = int(copies.sum())
        if dropped[name] == len(copies):
            raise DatasetError(
                f"{dataset.source}: every {name} image is an exact or near copy of a train image, so "
                f"data.drop_cross_split_duplicates would leave {name} empty; fix the splits or set it to false"
            )
        if dropped[name]:
            splits[name] = splits[name].take(~copies)
    said = ", ".join(f"{n} {name}" for name, n in dropped.items())
    note = (
        f"data.drop_cross_split_duplicates: left out {said} image(s) that are exact or near copies of train "
        f"images ({found.rule}; `raytrain data check` shows examples)"
    )
    return dataclasses.replace(dataset, splits=splits, notes=(*dataset.notes, note)), dropped


def write_contact_sheet(dataset: FERDataset, pairs: list[DuplicatePair], path: Path) -> Path:
    """A PNG of `pairs`, one row each, side by side, captioned by split, index and distance (atomic)."""
    if not pairs:
        raise ValueError("no pairs to draw")
    scale = max(1, 96 // max(dataset.image_size))  # 48 px FER images drawn at 96 px
    height, width = (side * scale for side in dataset.image_size)
    caption, gap = 14, 8
    sheet_width = max(2 * width + gap, 260)
    sheet = Image.new("L", (sheet_width, len(pairs) * (height + caption + gap)), color=255)
    draw = ImageDraw.Draw(sheet)
    for row, pair in enumerate(pairs):
        top = row * (height + caption + gap)
        how = "exact" if pair.exact else f"{pair.distance} bits"
        draw.text((0, top), f"{_name(pair.first)} ~ {_name(pair.second)}: {how}", fill=0)
        for column, (split, index) in enumerate((pair.first, pair.second)):
            pixels = dataset.splits[split].images[index].mean(axis=0).astype(np.uint8)
            image = Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST)
            sheet.paste(image, (column * (width + gap), top + caption))
    with atomic_path(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
    return Path(path)


def _count(members, near_in, near, i: int, j: int) -> DuplicateCount:
    if i == j:
        exact = members[:, i] >= 2
        exact_images = int(members[exact, i].sum())
        near_images = int(members[~exact & near_in[:, i], i].sum())
        exact_pairs = int((members[:, i] * (members[:, i] - 1) // 2).sum())
        near_pairs = int((members[near[:, 0], i] * members[near[:, 1], i]).sum())
    else:
        exact = members[:, i] > 0
        exact_images = int(members[exact, j].sum())
        near_images = int(members[~exact & near_in[:, i], j].sum())
        exact_pairs = int((members[:, i] * members[:, j]).sum())
        g, h = near[:, 0], near[:, 1]
        near_pairs = int((members[g, i] * members[h, j] + members[h, i] * members[g, j]).sum())
    return DuplicateCount(exact_images, near_images, exact_pairs, near_pairs)


def _examples(members, first, group, split_of, near, i: int, j: int, where) -> list[DuplicatePair]:
    """Up to two pairs between splits i and j (or within split i): an exact one, and the near one
    that differs most, which shows what the threshold lets through."""
    pairs = []
    exact = np.flatnonzero(members[:, i] >= 2) if i == j else np.flatnonzero((members[:, i] > 0) & (members[:, j] > 0))
    if len(exact):
        copies = np.flatnonzero(group == exact[0])
        one = copies[split_of[copies] == i][0]
        other = copies[(split_of[copies] == j) & (copies != one)][0]
        pairs.append(DuplicatePair(where(one), where(other), 0, True))
    g, h = near[:, 0], near[:, 1]
    between = near[((members[g, i] > 0) & (members[h, j] > 0)) | ((members[h, i] > 0) & (members[g, j] > 0))]
    if len(between):
        g, h, distance = between[np.argmax(between[:, 2])]
        if members[g, i] == 0 or members[h, j] == 0:
            g, h = h, g
        pairs.append(DuplicatePair(where(first[g, i]), where(first[h, j]), int(distance), False))
    return pairs


def _name(image: tuple[str, int], origins: dict[str, list[str]] | None = None) -> str:
    split, index = image
    where = f" ({origins[split][index]})" if origins and split in origins else ""
    return f"{split} #{index}{where}"


# ---------------------------------------------------------------------------------------------------
# The hash's linear algebra.


def _window_transforms(length: int, grid: int, k: int) -> np.ndarray:
    """float32 (offsets, k, length): per window offset along one axis, the matrix that area-resamples
    the window (length - 2 * MARGIN px from the offset) to `grid` samples and takes their `k` lowest
    DCT-II frequencies."""
    inner = length - 2 * MARGIN
    base = _dct(grid, k) @ _area(inner, grid)
    transforms = np.zeros((2 * MARGIN + 1, k, length), dtype=np.float32)
    for offset in range(2 * MARGIN + 1):
        transforms[offset, :, offset : offset + inner] = base
    return transforms


def _area(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): each output sample the mean of the input span it covers (edge pixels in part)."""
    edges = np.arange(n_out + 1) * n_in / n_out
    pixel = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _dct(n: int, k: int) -> np.ndarray:
    """(k, n): the k lowest orthonormal DCT-II basis vectors of length n."""
    u, x = np.arange(k)[:, None], np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * x + 1) * u / (2 * n)) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis


def _key_positions(bits: int) -> np.ndarray:
    """(TABLES, KEY_BITS): which of the hash's `bits` key each LSH table."""
    rng = np.random.default_rng(_LSH_SEED)
    return np.stack([rng.choice(bits, KEY_BITS, replace=False) for _ in range(TABLES)])


def _keys(bits: np.ndarray, positions: np.ndarray) -> np.ndarray:
    weights = (1 << np.arange(KEY_BITS)).astype(np.uint32)
    return (bits[..., positions] * weights).sum(axis=-1, dtype=np.uint32)
