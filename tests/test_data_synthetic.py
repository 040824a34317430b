"""The synthetic FER-like dataset: layouts, class sizes, determinism, and faces that are not trivial."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from raytrain.data import CANONICAL_CLASSES, DatasetError, generate_synthetic, load_dataset
from raytrain.data.synthetic import FER2013_TRAIN_COUNTS, default_class_counts, render_faces


def digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_folders_layout_splits_each_class_80_10_10(tmp_path):
    root = generate_synthetic(tmp_path / "s", per_class=10, size=24)
    for name in CANONICAL_CLASSES:
        assert [len(list((root / split / name).glob("*.png"))) for split in ("train", "val", "test")] == [8, 1, 1]
    with Image.open(next((root / "train/happy").glob("*.png"))) as img:
        assert img.mode == "L" and img.size == (24, 24)
    ds = load_dataset(root, cache_dir=tmp_path / "cache")
    assert ds.class_names == list(CANONICAL_CLASSES) and not ds.val_carved and ds.image_size == (24, 24)


def test_csv_layout_holds_the_same_images_as_the_folders(tmp_path):
    folders_root = generate_synthetic(tmp_path / "f", per_class=5, size=16, seed=3)
    folders = load_dataset(folders_root, cache_dir=tmp_path / "cache")
    csv_root = generate_synthetic(tmp_path / "c", layout="csv", per_class=5, size=16, seed=3)
    assert [p.name for p in csv_root.iterdir()] == ["fer2013.csv"]
    header = (csv_root / "fer2013.csv").read_text().splitlines()[0]
    assert header == "emotion,pixels,Usage"
    from_csv = load_dataset(csv_root, cache_dir=tmp_path / "cache")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(from_csv.splits[split].images, folders.splits[split].images)
        np.testing.assert_array_equal(from_csv.splits[split].labels, folders.splits[split].labels)


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    a = generate_synthetic(tmp_path / "a", per_class=4, size=16, seed=7)
    b = generate_synthetic(tmp_path / "b", per_class=4, size=16, seed=7)
    c = generate_synthetic(tmp_path / "c", per_class=4, size=16, seed=8)
    assert digest(a) == digest(b) != digest(c)


def test_default_class_sizes_keep_fer2013s_imbalance():
    counts = default_class_counts()
    assert list(counts) == list(CANONICAL_CLASSES)
    assert min(counts, key=counts.get) == "disgusted" and max(counts, key=counts.get) == "happy"
    assert 2000 <= sum(counts.values()) <= 4000
    fer_ratio = max(FER2013_TRAIN_COUNTS) / min(FER2013_TRAIN_COUNTS)
    assert counts["happy"] / counts["disgusted"] == pytest.approx(fer_ratio, rel=0.05)


def test_an_existing_non_empty_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s/keep.txt").write_text("mine")
    expected = r"s: already exists and is not an empty folder; choose a new folder or delete it"
    with pytest.raises(DatasetError, match=expected):
        generate_synthetic(tmp_path / "s", per_class=2)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert (generate_synthetic(tmp_path / "empty", per_class=3, size=16) / "train").is_dir()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="layout must be 'folders' or 'csv'"):
        generate_synthetic(tmp_path / "s", layout="parquet")
    with pytest.raises(ValueError, match="size must be >= 16 pixels"):
        generate_synthetic(tmp_path / "s", size=8)
    assert not (tmp_path / "s").exists()


def test_faces_vary_and_no_class_template_solves_them():
    rng = np.random.default_rng(0)
    train_labels, test_labels = np.repeat(np.arange(7), 60), np.repeat(np.arange(7), 20)
    train = render_faces(train_labels, 32, rng).reshape(len(train_labels), -1) / 255.0
    test = render_faces(test_labels, 32, rng).reshape(len(test_labels), -1) / 255.0
    assert train.std(axis=0).mean() > 0.1  # pose, lighting and noise vary from face to face
    # nearest class-mean image: what a model would learn if pose and lighting did not vary
    means = np.stack([train[train_labels == c].mean(0) for c in range(7)])
    predicted = ((test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == test_labels).mean() < 0.4


def test_expressions_show_in_the_mouth():
    # the same scene (pose, lighting, noise) rendered as happy and as sad: the mouth corners differ
    happy = render_faces(np.full(50, CANONICAL_CLASSES.index("happy")), 48, np.random.default_rng(0)).astype(float)
    sad = render_faces(np.full(50, CANONICAL_CLASSES.index("sad")), 48, np.random.default_rng(0)).astype(float)
    difference = np.abs(happy - sad).mean(0)
    mouth, forehead = difference[30:40, 14:34].mean(), difference[2:8, 14:34].mean()
    assert mouth > 3 * forehead


def test_images_do_not_depend_on_how_rendering_is_batched(monkeypatch):
    from raytrain.data import synthetic

    labels = np.arange(300) % 7
    whole = render_faces(labels, 32, np.random.default_rng(5))
    monkeypatch.setattr(synthetic, "_RENDER_PIXELS", 37 * 32 * 32)  # 37 images per pass
    np.testing.assert_array_equal(render_faces(labels, 32, np.random.default_rng(5)), whole)
