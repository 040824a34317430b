"""Benchmark: the near-duplicate search (raytrain/data/duplicates.py) at FER2013 scale, and what it
finds. Run on demand (pytest runs only --smoke, in tests/test_benchmarks.py):

    .venv/bin/python tests/bench/bench_duplicates.py [--n 35887] [--copies 200]
    .venv/bin/python tests/bench/bench_duplicates.py --smoke        # 1,500 faces, 20 copies each

It draws N distinct synthetic 48 px faces (synthetic.render_faces, FER2013's class mix), plants
copies of some of them (shifted, brightened, JPEG re-encoded), and times the hash, the LSH search and
the exact grouping over all of them, against comparing every pair (timed on a slice, extrapolated).
Then: the false positives (pairs of distinct faces within the threshold), the share of each kind of
copy found, and the data fingerprint's time on the same array.

Measured on an AMD EPYC (lscpu), 2 CPUs shared with other work (load average 3-4), 35,887 faces +
1,800 copies:

    hash 2.7 s, search 1.2 s, exact groups 0.13 s; every pair compared: ~1,640 s (extrapolated)
    false positives: 22 pairs of the 643,920,441 among distinct faces (3.4e-08), 42 faces
    found: shifted 1 px 100%, shifted 2 px both ways 100%, brightened +30 100%, brightened x1.2
    (clipped) 99.5%, darkened x0.8 100%, JPEG q90 100%, JPEG q75 100%, JPEG q50 78.5%, shifted 1 px
    + x1.15 + JPEG q70 99.0%
    data fingerprint (blake2b of the arrays, 83 MB): 0.09 s

The false positives are faces the generator drew with nearly the same pose, size and layout, which
differ mainly in brightness, the one thing the hash is built to ignore; real faces differ more.
"""

from __future__ import annotations

import argparse
import io
import platform
import subprocess
import time

import numpy as np
from PIL import Image

from raytrain.data.datasets import FERDataset, Split
from raytrain.data.duplicates import CENTRE, exact_groups, near_pairs, perceptual_hashes
from raytrain.data.fingerprint import dataset_fingerprint
from raytrain.data.sources import CANONICAL_CLASSES
from raytrain.data.synthetic import FER2013_TRAIN_COUNTS, render_faces


def shifted(x, dx, dy):
    return np.roll(np.pad(x, 2, mode="edge"), (dy, dx), axis=(0, 1))[2:-2, 2:-2]


def scaled(x, factor, add=0):
    return np.clip(x.astype(np.float32) * factor + add, 0, 255).astype(np.uint8)


def jpeg(x, quality):
    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


COPIES = {
    "shifted 1 px": lambda x: shifted(x, 1, 0),
    "shifted 2 px both ways": lambda x: shifted(x, 2, -2),
    "brightened +30": lambda x: scaled(x, 1.0, 30),
    "brightened x1.2 (clipped)": lambda x: scaled(x, 1.2),
    "darkened x0.8": lambda x: scaled(x, 0.8),
    "JPEG q90": lambda x: jpeg(x, 90),
    "JPEG q75": lambda x: jpeg(x, 75),
    "JPEG q50": lambda x: jpeg(x, 50),
    "shifted 1 px + x1.15 + JPEG q70": lambda x: jpeg(scaled(shifted(x, 1, 1), 1.15), 70),
}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.TimeoutExpired):
        return platform.processor() or platform.machine()


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=35_887, help="distinct faces (FER2013 has 35,887 images)")
    parser.add_argument("--copies", type=int, default=200, help="faces copied in each way")
    parser.add_argument("--smoke", action="store_true", help="1,500 faces, 20 copies each: seconds")
    args = parser.parse_args(argv)
    n, per_kind = (1500, 20) if args.smoke else (args.n, args.copies)

    share = np.array(FER2013_TRAIN_COUNTS) / sum(FER2013_TRAIN_COUNTS)
    labels = np.random.default_rng(0).choice(len(CANONICAL_CLASSES), size=n, p=share)
    faces, drawn = timed(render_faces, labels, 48, np.random.default_rng(1))
    originals = np.random.default_rng(2).choice(n, size=per_kind, replace=False)
    copies = [np.stack([change(faces[i]) for i in originals]) for change in COPIES.values()]
    images = np.concatenate([faces, *copies])
    print(f"{n:,} distinct 48 px faces (drawn in {drawn:.0f} s) + {len(images) - n:,} copies; {cpu_name()}")

    hashes, hashing = timed(perceptual_hashes, images)
    pairs, searching = timed(near_pairs, hashes)
    _, grouping = timed(exact_groups, images)
    # every pair compared instead: a few images' windows against every image's centre, scaled up
    rows, centres = 16, hashes.windows[:, CENTRE]
    _, sliced = timed(
        lambda: [np.bitwise_count(hashes.windows[r][:, None] ^ centres).sum(-1).min(0) for r in range(rows)]
    )
    print(
        f"hash {hashing:.1f} s, search {searching:.1f} s, exact groups {grouping:.2f} s; "
        f"every pair compared: ~{sliced * len(images) / rows:.0f} s (extrapolated)"
    )

    distinct = pairs[(pairs[:, 0] < n) & (pairs[:, 1] < n)]
    total = n * (n - 1) // 2
    print(
        f"false positives: {len(distinct):,} pairs of the {total:,} among distinct faces "
        f"({len(distinct) / total:.1e}), {len(np.unique(distinct[:, :2])):,} faces"
    )
    found = {(int(i), int(j)) for i, j, _ in pairs}
    shares = []
    for kind, name in enumerate(COPIES):
        first = n + kind * per_kind
        hits = sum((int(original), first + k) in found for k, original in enumerate(originals))
        shares.append(f"{name} {hits / per_kind:.1%}")
    print("found: " + ", ".join(shares))

    dataset = FERDataset(list(CANONICAL_CLASSES), {"train": Split(faces[:, None], labels)}, "bench", "csv", False)
    _, fingerprinting = timed(dataset_fingerprint, dataset)
    print(f"data fingerprint (blake2b of the arrays, {faces.nbytes / 1e6:.0f} MB): {fingerprinting:.2f} s")


if __name__ == "__main__":
    main()
