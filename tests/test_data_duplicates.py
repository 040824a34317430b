"""Near-duplicate images (data/duplicates.py): copies planted across splits as files on disk (shifted,
brightened, re-encoded as JPEG) are found by `raytrain data check` and left out by
data.drop_cross_split_duplicates; distinct synthetic faces of one class are not flagged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raytrain.data import DamagedDataWarning, check_dataset, generate_synthetic, load_dataset
from raytrain.data.duplicates import (
    drop_cross_split_duplicates,
    find_duplicates,
    near_pairs,
    perceptual_hashes,
)
from raytrain.data.sources import CANONICAL_CLASSES
from raytrain.data.synthetic import render_faces


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved dx px right and dy px down, the edge repeated into the gap (a re-crop)."""
    return np.roll(np.pad(image, 2, mode="edge"), (dy, dx), axis=(0, 1))[2:-2, 2:-2]


def brightened(image: np.ndarray, add: int) -> np.ndarray:
    return np.clip(image.astype(np.int16) + add, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


# the copies a dataset picks up on its way round the web: (split, how it was changed, file suffix)
PLANTED = [
    ("val", lambda x: shifted(x, 1, 0), ".png"),
    ("val", lambda x: shifted(x, -2, 1), ".png"),
    ("val", lambda x: brightened(x, 25), ".png"),
    ("val", lambda x: x, ".jpg"),  # re-encoded: JPEG at PIL's default quality 75
    ("test", lambda x: shifted(x, 2, -2), ".png"),
    ("test", lambda x: brightened(shifted(x, 0, 1), -20), ".png"),
    ("test", lambda x: x, ".jpg"),
    ("test", lambda x: x, ".png"),  # an exact copy
]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, list[tuple[str, str, str]]]:
    """A synthetic 48 px dataset (20 faces per class) with PLANTED copies of train images written as
    files into val/ and test/: (root, [(split, planted file, the train file it copies)])."""
    root = generate_synthetic(tmp_path_factory.mktemp("planted") / "data", per_class=20, seed=4)
    sources = sorted((root / "train").glob("*/*.png"))
    rng = np.random.default_rng(0)
    copies = []
    for (split, change, suffix), source in zip(PLANTED, rng.choice(sources, len(PLANTED), replace=False)):
        pixels = change(np.asarray(Image.open(source)))
        target = root / split / source.parent.name / f"copy_of_{source.stem}{suffix}"
        Image.fromarray(pixels).save(target)
        copies.append((split, target.relative_to(root).as_posix(), source.relative_to(root).as_posix()))
    return root, copies


def test_planted_copies_are_found_and_nothing_else(planted, tmp_path):
    root, copies = planted
    dataset = load_dataset(root, workers=1, cache_dir=tmp_path)
    found = find_duplicates(dataset)
    planted_in = {split: sum(1 for s, _, _ in copies if s == split) for split in ("val", "test")}
    for split in ("val", "test"):
        count = found.counts[("train", split)]
        # exact: the one byte-identical PNG; JPEG's losses make the .jpg copies near ones
        assert (count.exact_images, count.near_images) == ((0, 4) if split == "val" else (1, 3))
        assert int(found.copies_of_train[split].sum()) == planted_in[split]
    # the distinct faces (140 of them, 20 per class, all drawn alike) are not flagged: no other pairs
    assert all(c.exact_images + c.near_images == 0 for pair, c in found.counts.items() if pair[0] != "train")
    assert found.counts[("train", "train")].near_pairs == 0


def test_data_check_reports_them_by_file_with_a_contact_sheet(planted, run_cli, tmp_path, monkeypatch):
    root, copies = planted
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    sheet = tmp_path / "pairs.png"
    result = run_cli("data", "check", root, "--duplicates-sheet", sheet)
    assert result.code == 1, result.err  # leaks are problems: usable data, but a script should notice
    assert "val: 0 images are exact copies of train images and 4 near copies; val scores will be optimistic" in (
        result.out
    )
    assert "test: 1 images are exact copies of train images and 3 near copies" in result.out
    assert "near = within 57 of the 575 bits of a pHash taken at shifts of up to 2 px" in result.out
    # the examples name both files: the train image and its copy
    listed = [line for line in result.out.splitlines() if " ~ " in line]
    assert listed and all(line.count("(train/") == 1 for line in listed)
    assert any(copy in line and source in line for _, copy, source in copies for line in listed)
    drawn = Image.open(sheet)
    assert drawn.format == "PNG" and drawn.height >= len(listed) * 96
    again = run_cli("data", "check", root, "--duplicates-sheet", sheet)
    assert again.code == 2 and "already exists; choose another --duplicates-sheet or pass --force" in again.err
    assert run_cli("data", "check", root, "--duplicates-sheet", sheet, "--force").code == 1


def test_drop_cross_split_duplicates_leaves_out_exactly_the_planted_copies(planted, tmp_path):
    root, copies = planted
    dataset = load_dataset(root, workers=1, cache_dir=tmp_path)
    kept, dropped = drop_cross_split_duplicates(dataset)
    assert dropped == {"val": 4, "test": 4}
    assert {name: len(split) for name, split in kept.splits.items()} == {
        name: len(split) - dropped.get(name, 0) for name, split in dataset.splits.items()
    }
    assert "left out 4 val, 4 test image(s) that are exact or near copies of train images" in kept.notes[-1]
    # what is left holds no copy of train; the labels went with their images; arrays stay read-only
    again = find_duplicates(kept)
    assert not any(again.copies_of_train[split].any() for split in ("val", "test"))
    for split in kept.splits.values():
        assert len(split.images) == len(split.labels) and not split.images.flags.writeable
    assert kept.splits["train"] is dataset.splits["train"]


def test_distinct_synthetic_faces_of_one_class_are_not_near_duplicates():
    """The false-positive side at a larger scale: 700 faces of one expression (244,650 pairs),
    drawn from the same face model, differing in pose, lighting and jitter as synthetic.py draws them."""
    faces = render_faces(np.full(700, CANONICAL_CLASSES.index("happy")), 48, np.random.default_rng(7))
    pairs = near_pairs(perceptual_hashes(faces))
    assert len(pairs) <= 1, pairs  # measured: 0 here; 21 in 644 million pairs at FER2013 scale (bench)


def test_exact_copies_within_a_split_and_a_csv_layout_named_by_row(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    root = generate_synthetic(tmp_path / "csv", layout="csv", per_class=6, size=24, seed=1)
    csv = root / "fer2013.csv"
    lines = csv.read_text().splitlines()
    train_row = lines[3]  # the csv's row 4, a Training image
    lines += [train_row, train_row.replace(",Training", ",PrivateTest")]  # rows 44 and 45
    csv.write_text("\n".join(lines) + "\n")
    report = check_dataset(csv, cache_dir=tmp_path / "cache", workers=1)
    text = report.format()
    rows = [" ".join(line.split()) for line in text.splitlines()]  # columns as words
    assert "train 2 0 1 + 0 train images with a copy elsewhere in train" in rows
    assert "train-test 1 0 2 + 0 test images with a copy in train" in rows  # both train copies pair with it
    assert "train #2 (row 4) ~ train #28 (row 44): exact copies" in text
    assert "train #2 (row 4) ~ test #7 (row 45): exact copies" in text
    # 24 px: the hash keeps the 20x20 frequencies its 20 px windows hold
    assert "near = within 39 of the 399 bits" in text


def test_images_too_small_to_hash_are_checked_for_exact_copies_only(tmp_path):
    from tests.data_fixtures import make_folders

    make_folders(tmp_path / "d", {"happy": 12, "sad": 12}, splits=("train", "test"), size=8)
    for name in ("000.png", "001.png"):  # test's first two images: copies of train's
        (tmp_path / "d" / "test" / "happy" / name).write_bytes((tmp_path / "d" / "train" / "happy" / name).read_bytes())
    found = find_duplicates(load_dataset(tmp_path / "d", workers=1, cache_dir=tmp_path / "cache"))
    assert found.bits is None and "near copies not searched (images under 16 px a side)" in found.rule
    assert found.counts[("train", "test")].exact_images == 2


def test_origins_name_the_file_each_image_came_from_after_the_val_carve(tmp_path):
    from raytrain.data.origins import image_origins
    from tests.data_fixtures import make_folders

    root = make_folders(tmp_path / "d", {"happy": 20, "sad": 20}, size=16)
    (root / "train" / "sad" / "005.png").write_bytes(b"not an image")  # left out: the rest shift up
    with pytest.warns(DamagedDataWarning, match="005.png"):
        dataset = load_dataset(root, workers=1, cache_dir=tmp_path / "cache")
    assert dataset.val_carved and dataset.skipped
    origins = image_origins(root, dataset, 0.1)
    for split, data in dataset.splits.items():
        assert len(origins[split]) == len(data)
        for index in range(len(data)):
            assert np.array_equal(np.asarray(Image.open(root / origins[split][index])), data.images[index, 0])


def test_origins_name_the_files_of_a_manifest_and_numbered_folders(tmp_path):
    """Every layout that lists image files names them, relative to the data root (a manifest's may
    lie outside it), so duplicate examples point at files there too."""
    from raytrain.data.origins import image_origins
    from tests.data_fixtures import make_folders, make_manifest

    rows = [(f"img/{i}.png", "happy" if i % 2 else "sad", "train" if i < 12 else "test") for i in range(16)]
    rows.append(("../outside/extra.png", "sad", "train"))
    manifest = make_manifest(tmp_path / "m", rows, size=16)
    numbered = make_folders(tmp_path / "n", {"0": 6, "1": 6}, size=16)
    for root in (manifest, numbered):
        dataset = load_dataset(root, workers=1, cache_dir=tmp_path / "cache")
        origins = image_origins(root, dataset, 0.1)
        folder = root.parent if root.is_file() else root
        for split, data in dataset.splits.items():
            assert len(origins[split]) == len(data), (root, split)
            for index in range(len(data)):
                pixels = np.asarray(Image.open(folder / origins[split][index]))
                assert np.array_equal(pixels, data.images[index, 0]), (root, origins[split][index])
        named = {origin for found in origins.values() for origin in found}
        assert root != manifest or "../outside/extra.png" in named
