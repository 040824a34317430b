"""Loading datasets: both layouts, class names, the carved val split, the cache, weights and errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from data_fixtures import fer_csv_text, make_folders, write_image

from raytrain.data import (
    CANONICAL_CLASSES,
    DamagedDataWarning,
    DatasetError,
    carve_val,
    check_dataset,
    class_counts,
    class_weights,
    datasets,
    decode,
    default_cache_dir,
    load_dataset,
    sampler_weights,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # never touch ~/.cache from a test: the default cache dir comes from the env var
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def decode_counter(monkeypatch):
    """Counts calls of the two decoders (folders and csv) while still running them."""
    calls = {"folders": 0, "csv": 0}
    real_folders, real_csv = decode._decode_folders, decode._decode_fer_csv

    def folders(*args, **kwargs):
        calls["folders"] += 1
        return real_folders(*args, **kwargs)

    def fer_csv(*args, **kwargs):
        calls["csv"] += 1
        return real_csv(*args, **kwargs)

    monkeypatch.setattr(decode, "_decode_folders", folders)
    monkeypatch.setattr(decode, "_decode_fer_csv", fer_csv)
    return calls


# --- image folders ----------------------------------------------------------------------------------


def test_folders_load_every_split_as_uint8_nchw(tmp_path):
    counts = {"happy": 3, "sad": 2}
    make_folders(tmp_path / "d", counts, splits=("train", "val", "test"), size=8)
    ds = load_dataset(tmp_path / "d")
    assert ds.class_names == ["happy", "sad"]
    assert list(ds.splits) == ["train", "val", "test"]
    assert not ds.val_carved and ds.layout == "folders"
    for split in ds.splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape == (5, 1, 8, 8)
        assert split.labels.dtype == np.int64 and split.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.image_size == (8, 8) and ds.channels == 1 and ds.num_classes == 2


def test_folder_pixels_survive_decoding(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_image(tmp_path / "d/train/happy/a.png", pixels)
    write_image(tmp_path / "d/train/happy/b.png", pixels[::-1])
    write_image(tmp_path / "d/val/happy/c.png", pixels.T)
    ds = load_dataset(tmp_path / "d")
    np.testing.assert_array_equal(ds.splits["train"].images[0, 0], pixels)
    np.testing.assert_array_equal(ds.splits["val"].images[0, 0], pixels.T)


def test_common_folder_names_map_to_canonical_classes_in_canonical_order(tmp_path):
    make_folders(tmp_path / "d", {"Surprise": 2, "fear": 2, "DISGUST": 2, "neutral": 2, "Angry": 2})
    ds = load_dataset(tmp_path / "d")
    assert ds.class_names == ["angry", "disgusted", "fearful", "surprised", "neutral"]
    # labels follow the names: the images of train/fear/ carry the label of "fearful"
    assert class_counts(np.concatenate([s.labels for s in ds.splits.values()]), 5).tolist() == [2] * 5


def test_other_class_sets_are_sorted(tmp_path):
    make_folders(tmp_path / "d", {"dog": 2, "cat": 2, "angry": 2})
    assert load_dataset(tmp_path / "d").class_names == ["angry", "cat", "dog"]


def test_two_folders_for_one_class_is_an_error(tmp_path):
    make_folders(tmp_path / "d", {"fear": 2, "fearful": 2})
    with pytest.raises(DatasetError, match=r"fear/ and fearful/ are both the class 'fearful'; merge them"):
        load_dataset(tmp_path / "d")


def test_rgb_and_grayscale_images_convert_to_the_requested_channels(tmp_path):
    write_image(tmp_path / "d/train/happy/rgb.png", np.full((6, 6, 3), (255, 0, 0), dtype=np.uint8))
    write_image(tmp_path / "d/train/happy/gray.jpg", np.full((6, 6), 77, dtype=np.uint8))
    write_image(tmp_path / "d/train/sad/gray.bmp", np.full((6, 6), 10, dtype=np.uint8))
    write_image(tmp_path / "d/train/sad/gray2.jpeg", np.full((6, 6), 10, dtype=np.uint8))
    gray = load_dataset(tmp_path / "d", channels=1)
    rgb = load_dataset(tmp_path / "d", channels=3)
    assert gray.splits["train"].images.shape[1:] == (1, 6, 6)
    assert rgb.splits["train"].images.shape[1:] == (3, 6, 6)
    everything = np.concatenate([gray.splits["train"].images, gray.splits["val"].images])
    assert 76 in everything  # pure red becomes PIL's luma 76 in "L"
    red = np.concatenate([rgb.splits["train"].images, rgb.splits["val"].images])
    assert any((img[0] == 255).all() and (img[1] == 0).all() for img in red)


def test_mixed_sizes_are_resized_to_the_most_common_one(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"d/train/happy/{i}.png", np.zeros((10, 12), dtype=np.uint8))
    write_image(tmp_path / "d/train/sad/big.png", np.zeros((40, 40), dtype=np.uint8))
    write_image(tmp_path / "d/train/sad/ok.png", np.zeros((10, 12), dtype=np.uint8))
    ds = load_dataset(tmp_path / "d")
    assert ds.image_size == (10, 12)
    assert any("1 of 5 images were resized to 10x12" in note for note in ds.notes)


def test_a_dataset_is_read_only_and_pickles(tmp_path):
    make_folders(tmp_path / "d", {"happy": 3, "sad": 3})
    ds = load_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="read-only"):
        ds.splits["train"].images[0, 0, 0, 0] = 1
    again = pickle.loads(pickle.dumps(ds))
    assert again.class_names == ds.class_names
    np.testing.assert_array_equal(again.splits["val"].images, ds.splits["val"].images)


@pytest.fixture
def pools(monkeypatch):
    """Records the size of every process pool the loader starts."""
    started = []
    real = decode.ProcessPoolExecutor

    def recording(processes, **kwargs):
        started.append(processes)
        return real(processes, **kwargs)

    monkeypatch.setattr(decode, "ProcessPoolExecutor", recording)
    monkeypatch.setattr(decode.os, "cpu_count", lambda: 4)  # a pool even on a 1-cpu runner
    return started


def test_decoding_in_worker_processes_matches_decoding_here(tmp_path, monkeypatch, pools):
    make_folders(tmp_path / "d", {"happy": 12, "sad": 12}, splits=("train", "test"))
    serial = load_dataset(tmp_path / "d", workers=4, cache_dir=tmp_path / "c1")
    assert pools == []  # 48 files do not pay for starting processes
    monkeypatch.setattr(decode, "_FILES_PER_PROCESS", 8)
    pooled = load_dataset(tmp_path / "d", workers=2, cache_dir=tmp_path / "c2")
    assert pools == [2]
    for name in serial.splits:
        np.testing.assert_array_equal(serial.splits[name].images, pooled.splits[name].images)
        np.testing.assert_array_equal(serial.splits[name].labels, pooled.splits[name].labels)


def test_a_corrupt_image_in_a_worker_process_is_named_and_left_out(tmp_path, monkeypatch, pools):
    make_folders(tmp_path / "d", {"happy": 12, "sad": 12})
    bad = tmp_path / "d/train/sad/007.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a valid header, truncated pixel data
    monkeypatch.setattr(decode, "_FILES_PER_PROCESS", 8)
    with pytest.warns(DamagedDataWarning, match=rf"{bad}: unreadable or corrupt image .*replace or delete the file"):
        ds = load_dataset(tmp_path / "d", workers=2)
    assert pools == [2]
    assert len(ds.skipped) == 1 and len(ds.splits["train"]) + len(ds.splits["val"]) == 23


# --- FER2013 csv ------------------------------------------------------------------------------------


def _fer_rows(per_usage: int = 7, side: int = 4) -> list:
    rng = np.random.default_rng(0)
    return [
        (i % 7, rng.integers(0, 256, side * side), usage)
        for usage in ("Training", "PublicTest", "PrivateTest")
        for i in range(per_usage)
    ]


def test_fer_csv_maps_usage_to_splits_and_emotion_to_classes(tmp_path):
    rows = _fer_rows()
    (tmp_path / "fer2013.csv").write_text(fer_csv_text(rows))
    ds = load_dataset(tmp_path / "fer2013.csv")
    assert ds.class_names == list(CANONICAL_CLASSES) and ds.layout == "csv" and not ds.val_carved
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [7, 7, 7]
    assert ds.splits["val"].labels.tolist() == list(range(7))
    np.testing.assert_array_equal(ds.splits["test"].images[2, 0].ravel(), rows[16][1])
    assert ds.image_size == (4, 4)


def test_a_folder_holding_one_csv_is_the_csv(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/anything.csv").write_text(fer_csv_text(_fer_rows()))
    ds = load_dataset(tmp_path / "data", channels=3)
    assert ds.source.endswith("anything.csv")
    images = ds.splits["train"].images
    assert images.shape[1] == 3 and (images[:, 0] == images[:, 2]).all()


def test_a_folder_with_two_csvs_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text(fer_csv_text(_fer_rows()))
    (tmp_path / "b.csv").write_text(fer_csv_text(_fer_rows()))
    with pytest.raises(DatasetError, match=r"holds 2 csv files \(a.csv, b.csv\); pass the FER2013 csv file itself"):
        load_dataset(tmp_path)


def test_csv_without_usage_is_all_train_and_carves_val(tmp_path):
    rows = [(i % 7, np.full(16, i), "") for i in range(28)]
    text = "emotion,pixels\n" + "".join(f"{e},{' '.join(map(str, p))}\n" for e, p, _ in rows)
    (tmp_path / "f.csv").write_text(text)
    ds = load_dataset(tmp_path / "f.csv")
    assert ds.val_carved and "test" not in ds.splits
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 28


# --- the carved val split -----------------------------------------------------------------------------


def test_carved_val_is_stratified_and_keeps_one_train_image_per_class():
    labels = np.repeat([0, 1, 2, 3], [100, 20, 2, 1])
    train, val = carve_val(labels, 0.1)
    assert np.bincount(labels[val], minlength=4).tolist() == [10, 2, 1, 0]
    assert np.bincount(labels[train], minlength=4).tolist() == [90, 18, 1, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))


def test_carved_val_is_the_same_whatever_the_experiment_seed(tmp_path):
    make_folders(tmp_path / "d", {"happy": 30, "sad": 20, "angry": 10})
    np.random.seed(1)
    torch.manual_seed(1)
    first = load_dataset(tmp_path / "d", cache_dir=tmp_path / "c1")
    np.random.seed(2)
    torch.manual_seed(2)
    second = load_dataset(tmp_path / "d", cache_dir=tmp_path / "c2")  # a fresh decode, too
    assert first.val_carved
    np.testing.assert_array_equal(first.splits["val"].images, second.splits["val"].images)
    np.testing.assert_array_equal(first.splits["val"].labels, second.splits["val"].labels)
    assert class_counts(first.splits["val"].labels, 3).tolist() == [1, 3, 2]  # angry, happy, sad


def test_growing_one_class_leaves_the_other_classes_carve_alone():
    before = np.repeat([0, 1], [50, 50])
    after = np.repeat([0, 1], [50, 80])
    assert carve_val(before, 0.2)[1][:10].tolist() == carve_val(after, 0.2)[1][:10].tolist()


def test_too_few_images_to_carve_val_is_an_error(tmp_path):
    make_folders(tmp_path / "d", {"happy": 1, "sad": 1})
    with pytest.raises(DatasetError, match="too few train images to carve a val split"):
        load_dataset(tmp_path / "d")


# --- the cache ----------------------------------------------------------------------------------------


def test_a_second_load_reads_the_cache_without_decoding(tmp_path, decode_counter):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    first = load_dataset(tmp_path / "d")
    second = load_dataset(tmp_path / "d")
    assert decode_counter["folders"] == 1
    np.testing.assert_array_equal(first.splits["train"].images, second.splits["train"].images)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))  # the atomic write left nothing behind


def test_a_changed_added_or_removed_file_invalidates_the_cache(tmp_path, decode_counter):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    load_dataset(tmp_path / "d")
    image = tmp_path / "d/train/happy/000.png"
    write_image(image, np.full((8, 8), 200))
    os.utime(image, ns=(1, 1))  # a different mtime whatever the clock's resolution
    changed = load_dataset(tmp_path / "d")
    assert decode_counter["folders"] == 2
    assert any((img == 200).all() for img in np.concatenate([s.images for s in changed.splits.values()]))
    write_image(tmp_path / "d/train/sad/new.png", np.zeros((8, 8)))
    assert sum(len(s) for s in load_dataset(tmp_path / "d").splits.values()) == 9
    (tmp_path / "d/train/sad/new.png").unlink()
    assert sum(len(s) for s in load_dataset(tmp_path / "d").splits.values()) == 8
    assert decode_counter["folders"] == 4
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # stale entries are removed


def test_channels_are_part_of_the_cache_key(tmp_path, decode_counter):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    assert load_dataset(tmp_path / "d", channels=1).channels == 1
    assert load_dataset(tmp_path / "d", channels=3).channels == 3
    assert decode_counter["folders"] == 2


def test_the_csv_is_cached_too(tmp_path, decode_counter):
    (tmp_path / "f.csv").write_text(fer_csv_text(_fer_rows()))
    load_dataset(tmp_path / "f.csv")
    load_dataset(tmp_path / "f.csv")
    assert decode_counter["csv"] == 1


def test_a_corrupt_cache_file_is_decoded_again(tmp_path, decode_counter):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    load_dataset(tmp_path / "d")
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(b"not a zip")
    assert len(load_dataset(tmp_path / "d").splits["train"]) > 0
    assert decode_counter["folders"] == 2


def test_an_unwritable_cache_warns_and_still_loads(tmp_path):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    (tmp_path / "not_a_dir").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the dataset cache .* the next load decodes again"):
        ds = load_dataset(tmp_path / "d", cache_dir=tmp_path / "not_a_dir")
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 8


def test_cache_dir_comes_from_the_argument_then_the_env_var(tmp_path, monkeypatch):
    make_folders(tmp_path / "d", {"happy": 4, "sad": 4})
    assert default_cache_dir() == tmp_path / "cache"
    load_dataset(tmp_path / "d", cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("*.npz"))) == 1
    monkeypatch.delenv("RAYTRAIN_CACHE_DIR")
    assert default_cache_dir() == datasets.Path.home() / ".cache/raytrain/datasets"


# --- class weights ------------------------------------------------------------------------------------


def test_class_weights_are_inverse_frequency_with_mean_one_and_zero_for_absent_classes():
    labels = np.array([0] * 10 + [1] * 30 + [3] * 20)
    assert class_counts(labels, 4).tolist() == [10, 30, 0, 20]
    weights = class_weights(labels, 4)
    assert weights.dtype == np.float32 and weights[2] == 0
    assert weights.mean() == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(3.0) and weights[0] / weights[3] == pytest.approx(2.0)


def test_sampler_weights_draw_every_present_class_equally_often():
    labels = np.array([0] * 10 + [1] * 30 + [3] * 20)
    weights = sampler_weights(labels, 4)
    assert weights.shape == labels.shape and weights.sum() == pytest.approx(1.0)
    per_class = np.bincount(labels, weights=weights, minlength=4)
    np.testing.assert_allclose(per_class, [1 / 3, 1 / 3, 0, 1 / 3])


# --- errors -----------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    expected = rf"{tmp_path / 'nope'}: data root does not exist; pass a folder holding train/"
    with pytest.raises(DatasetError, match=expected):
        load_dataset(tmp_path / "nope")


def test_no_train_split(tmp_path):
    (tmp_path / "d/val/happy").mkdir(parents=True)
    expected = rf"{tmp_path / 'd'}: no train/ folder and no csv file; expected train/<class>/"
    with pytest.raises(DatasetError, match=expected):
        load_dataset(tmp_path / "d")


def test_train_without_class_folders(tmp_path):
    write_image(tmp_path / "d/train/loose.png", np.zeros((4, 4)))
    with pytest.raises(DatasetError, match=r"train: no class folders; put each class's images in .*train/<class>/"):
        load_dataset(tmp_path / "d")


def test_a_class_folder_with_no_images(tmp_path):
    make_folders(tmp_path / "d", {"happy": 2})
    (tmp_path / "d/train/sad").mkdir()
    (tmp_path / "d/train/sad/notes.txt").write_text("not an image")
    expected = r"train/sad: class folder holds no images \(.png, .jpg, .jpeg, .bmp\); add images or remove the folder"
    with pytest.raises(DatasetError, match=expected):
        load_dataset(tmp_path / "d")


def test_a_corrupt_image_is_named_and_left_out(tmp_path):
    make_folders(tmp_path / "d", {"happy": 2, "sad": 2})
    bad = tmp_path / "d/train/happy/broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.warns(DamagedDataWarning, match=rf"{bad}: unreadable or corrupt image"):
        ds = load_dataset(tmp_path / "d")
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 4


def test_a_split_with_no_decodable_image_is_an_error(tmp_path):
    make_folders(tmp_path / "d", {"happy": 2, "sad": 2}, splits=("train", "test"))
    for path in (tmp_path / "d/test").rglob("*.png"):
        path.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'd/test'}: none of its 4 images could be decoded"):
        load_dataset(tmp_path / "d")


def test_classes_that_differ_between_splits(tmp_path):
    make_folders(tmp_path / "d", {"happy": 2, "sad": 2})
    make_folders(tmp_path / "d", {"happy": 2, "angry": 2}, splits=("val",))
    expected = (
        r"val: classes differ from .*train \(missing \['sad'\]; not in train: \['angry'\]\); "
        "every split needs one folder per class"
    )
    with pytest.raises(DatasetError, match=expected):
        load_dataset(tmp_path / "d")


def test_csv_with_missing_columns(tmp_path):
    (tmp_path / "f.csv").write_text("label,image\n0,1 2 3 4\n")
    expected = r"f.csv: missing column\(s\) emotion, pixels; a FER2013 csv has the header emotion,pixels,Usage"
    with pytest.raises(DatasetError, match=expected):
        load_dataset(tmp_path / "f.csv")


def test_csv_with_a_wrong_pixel_count_names_the_row(tmp_path):
    rows = _fer_rows()
    rows[5] = (1, np.zeros(15, dtype=int), "Training")  # the 6th data row is line 7 of the file
    (tmp_path / "f.csv").write_text(fer_csv_text(rows))
    with pytest.raises(DatasetError, match=r"f.csv: row 7: pixels holds 15 values, expected 16"):
        load_dataset(tmp_path / "f.csv")


def test_csv_with_a_bad_pixel_value_names_the_row(tmp_path):
    rows = _fer_rows()
    rows[3] = (1, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x", "Training")
    (tmp_path / "f.csv").write_text(fer_csv_text(rows))
    with pytest.raises(DatasetError, match=r"row 5: pixel value 'x' is not an integer 0-255"):
        load_dataset(tmp_path / "f.csv")


def test_csv_with_a_bad_emotion_or_usage_names_the_row(tmp_path):
    rows = _fer_rows()
    rows[0] = (9, rows[0][1], "Training")
    (tmp_path / "f.csv").write_text(fer_csv_text(rows))
    with pytest.raises(DatasetError, match=r"row 2: emotion must be 0-6 \(0=angry ... 6=neutral\), got '9'"):
        load_dataset(tmp_path / "f.csv")
    rows = _fer_rows()
    rows[1] = (0, rows[1][1], "Holdout")
    (tmp_path / "f.csv").write_text(fer_csv_text(rows))
    with pytest.raises(DatasetError, match=r"row 3: Usage must be Training, PublicTest or PrivateTest, got 'Holdout'"):
        load_dataset(tmp_path / "f.csv")


def test_csv_with_a_non_square_image(tmp_path):
    (tmp_path / "f.csv").write_text(fer_csv_text([(0, np.zeros(10, dtype=int), "Training")]))
    with pytest.raises(DatasetError, match=r"row 2: pixels holds 10 values, not a square image"):
        load_dataset(tmp_path / "f.csv")


# --- check_dataset ------------------------------------------------------------------------------------


def test_check_reports_counts_imbalance_and_problems(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(0, rng.integers(0, 256, 16), "Training") for _ in range(40)]
    rows += [(1, rng.integers(0, 256, 16), "Training") for _ in range(4)]
    rows += [(0, rng.integers(0, 256, 16), "PublicTest") for _ in range(3)]
    rows += [(0, rows[0][1], "PrivateTest"), (1, np.zeros(16, dtype=int), "PrivateTest")]  # a leak, a blank
    (tmp_path / "f.csv").write_text(fer_csv_text(rows))
    report = check_dataset(tmp_path / "f.csv")
    assert report.counts["train"][:2] == [40, 4] and report.counts["val"][:2] == [3, 0]
    assert report.imbalance_ratio == float("inf")  # classes 2-6 have no images at all
    assert not report.ok
    text = "\n".join(report.problems)
    assert "val: no images of class 'disgusted' (its val scores are undefined)" in text
    assert "train: no images of class 'happy' (the model never sees it)" in text
    assert "train: class 'disgusted' has only 4 images (< 10)" in text
    assert "test: 1 images are exact copies of train images" in text
    assert "test: 1 images are a single flat colour (blank)" in text
    formatted = report.format()
    assert "disgusted" in formatted and "4x4, 1 channel(s) (grayscale)" in formatted and "problem(s):" in formatted


def test_check_of_a_healthy_dataset_says_so(tmp_path):
    make_folders(tmp_path / "d", {"happy": 30, "sad": 20})
    report = check_dataset(tmp_path / "d")
    assert report.ok and report.val_carved
    assert report.imbalance_ratio == pytest.approx(27 / 18)
    assert "no problems found" in report.format() and "carved from train" in report.format()


def test_dataset_errors_are_user_errors_the_cli_reports_in_one_line():
    from raytrain.errors import UserError

    assert issubclass(DatasetError, UserError) and issubclass(DatasetError, ValueError)
