"""The layouts beyond class folders and the FER2013 csv, each built here from synthesized images: FER+
(majority and vote distributions), RAF-DB basic, numbered class folders, a manifest csv. Detection,
class order, split assignment, votes, the cache, and one bad file per layout through the CLI."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from data_fixtures import make_ferplus, make_folders, make_manifest, make_rafdb, votes_for, write_image
from PIL import Image

from raytrain.data import DatasetError, check_dataset, decode, load_dataset
from raytrain.data.sources import AFFECTNET_CLASSES, CANONICAL_CLASSES, EMOTION_CLASSES, LAYOUT_NAMES, class_order

EIGHT = [*CANONICAL_CLASSES, "contempt"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))


def test_class_order_puts_contempt_after_the_seven_and_sorts_other_sets():
    assert class_order({"contempt", "neutral", "angry", "happy"}) == ["angry", "happy", "neutral", "contempt"]
    assert class_order(set(EMOTION_CLASSES)) == EIGHT
    assert class_order({"contempt", "cat"}) == ["cat", "contempt"]  # not all emotions: sorted


# --- FER+ ---------------------------------------------------------------------------------------------

# one image per FER+ emotion column in train, then val and test rows, and the images without a majority
FERPLUS_ROWS = [
    *(("train", votes_for(column, 7, unknown=1)) for column in ("neutral", "happiness", "surprise", "sadness")),
    *(("train", votes_for(column, 9)) for column in ("anger", "disgust", "fear", "contempt")),
    ("train", votes_for("neutral", 6, happiness=3, unknown=1)),  # row 9: a distribution
    ("val", votes_for("contempt", 5, anger=5)),  # row 10: a tie: left out
    ("val", votes_for("happiness", 8)),
    ("val", votes_for("unknown", 6, fear=4)),  # row 12: unknown wins: left out
    ("test", votes_for("NF", 10)),  # row 13: not a face: left out
    ("test", votes_for("surprise", 10), ""),  # row 14: FER+ left it out (no Image name)
    ("test", votes_for("sadness", 10)),
]


def test_ferplus_beside_fer2013_is_detected_with_eight_classes_and_majority_labels(tmp_path):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    ds = load_dataset(tmp_path / "fer")
    assert ds.layout == "ferplus" and ds.class_names == EIGHT and ds.num_classes == 8
    assert not ds.val_carved and list(ds.splits) == ["train", "val", "test"]
    names = lambda split: [ds.class_names[i] for i in ds.splits[split].labels]  # noqa: E731
    assert names("train") == [
        "neutral",
        "happy",
        "surprised",
        "sad",
        "angry",
        "disgusted",
        "fearful",
        "contempt",
        "neutral",
    ]
    assert names("val") == ["happy"] and names("test") == ["sad"]
    assert ds.splits["train"].targets is None and not ds.soft_targets  # majority is the default
    assert ds.label_source == "fer2013new.csv votes (data.labels: majority)"
    [note] = ds.notes
    assert note == (
        "FER+: 4 of 15 images have no single top-voted emotion and are left out (1 no Image name (FER+ left it "
        "out), 1 a tie for the most votes, 1 unknown has the most votes, 1 not a face (NF has the most votes))"
    )


def test_ferplus_votes_are_soft_targets_over_the_same_images_as_majority(tmp_path):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    majority = load_dataset(tmp_path / "fer")
    votes = load_dataset(tmp_path / "fer", labels="votes")
    assert votes.soft_targets and votes.label_source == "fer2013new.csv votes (data.labels: votes)"
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(votes.splits[split].labels, majority.splits[split].labels)
        np.testing.assert_array_equal(votes.splits[split].images, majority.splits[split].images)
        targets = votes.splits[split].targets
        assert targets.dtype == np.float32 and targets.shape == (len(votes.splits[split]), 8)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        assert (targets.argmax(axis=1) == votes.splits[split].labels).all()  # the majority is the top share
    # row 9: neutral 6, happiness 3, unknown 1 -> unknown's vote is no emotion: 6/9 and 3/9
    expected = np.zeros(8, dtype=np.float32)
    expected[EIGHT.index("neutral")], expected[EIGHT.index("happy")] = 6 / 9, 3 / 9
    np.testing.assert_allclose(votes.splits["train"].targets[8], expected, rtol=1e-6)
    # the first row gives neutral all 7 emotion votes (the unknown vote is not an emotion)
    assert votes.splits["train"].targets[0, EIGHT.index("neutral")] == 1.0
    again = pickle.loads(pickle.dumps(votes))  # as through Ray's object store: plain numpy
    np.testing.assert_array_equal(again.splits["val"].targets, votes.splits["val"].targets)
    assert not votes.splits["train"].targets.flags.writeable


def test_ferplus_labels_leave_out_ties_unknown_and_not_a_face():
    votes = np.array([votes_for("fear", 4, sadness=3), votes_for("fear", 4, sadness=4), votes_for("unknown", 4)])
    labels, left_out = decode.ferplus_labels(votes, np.ones(3, dtype=bool))
    assert labels.tolist() == [6, -1, -1]  # fear is FER+'s 7th column
    assert left_out[decode.TIED].tolist() == [False, True, False]
    assert left_out[decode.UNKNOWN].tolist() == [False, False, True]


def test_a_carved_val_keeps_the_votes_with_their_images(tmp_path):
    rows = [("train", votes_for(c, 7, anger=3)) for c in ("neutral", "happiness") for _ in range(10)]
    make_ferplus(tmp_path / "fer", rows)
    ds = load_dataset(tmp_path / "fer", labels="votes")
    assert ds.val_carved
    for split in ds.splits.values():
        assert (split.targets.argmax(axis=1) == split.labels).all()
        np.testing.assert_allclose(split.targets[:, EIGHT.index("angry")], 0.3, rtol=1e-6)


def test_which_csv_is_named_picks_the_labels(tmp_path):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    assert load_dataset(tmp_path / "fer" / "fer2013.csv").layout == "csv"  # the FER2013 labels, 7 classes
    assert load_dataset(tmp_path / "fer" / "fer2013new.csv").layout == "ferplus"
    (tmp_path / "fer" / "fer2013.csv").unlink()
    with pytest.raises(DatasetError, match=r"fer2013new.csv: FER\+ vote counts, but no FER2013 csv .* put fer2013.csv"):
        load_dataset(tmp_path / "fer")


def test_ferplus_takes_its_pixels_from_fer2013_csv_among_other_csvs(tmp_path):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    (tmp_path / "fer/notes.csv").write_text("who,when\nme,today\n")
    assert load_dataset(tmp_path / "fer").layout == "ferplus"
    (tmp_path / "fer/fer2013.csv").rename(tmp_path / "fer/pixels.csv")
    with pytest.raises(DatasetError, match=r"2 csv files that could hold the pixels \(notes.csv, pixels.csv\); name"):
        load_dataset(tmp_path / "fer")
    (tmp_path / "fer/notes.csv").unlink()
    assert load_dataset(tmp_path / "fer").layout == "ferplus"  # the one candidate
    make_manifest(tmp_path / "fer", [("a.png", "happy"), ("b.png", "happy")], header="path,label")
    with pytest.raises(DatasetError, match=r"both FER\+ votes \(fer2013new.csv\) and a manifest csv \(manifest.csv\)"):
        load_dataset(tmp_path / "fer")


def test_votes_on_a_layout_without_votes_is_an_error(tmp_path):
    make_folders(tmp_path / "d", {"happy": 3, "sad": 3})
    with pytest.raises(
        DatasetError, match=r"data.labels votes .* only FER\+ has .*image folders: set data.labels: majority"
    ):
        load_dataset(tmp_path / "d", labels="votes")


def test_the_cache_holds_both_label_modes_in_one_entry(tmp_path, monkeypatch):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    calls = []
    real = decode._decode_ferplus
    monkeypatch.setattr(decode, "_decode_ferplus", lambda *a: calls.append(1) or real(*a))
    first = load_dataset(tmp_path / "fer", labels="votes")
    cached_majority = load_dataset(tmp_path / "fer")
    cached_votes = load_dataset(tmp_path / "fer", labels="votes")
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert cached_majority.splits["train"].targets is None
    np.testing.assert_array_equal(cached_votes.splits["train"].targets, first.splits["train"].targets)
    assert cached_votes.notes == first.notes


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda lines: lines.__setitem__(3, lines[3].replace(",7,", ",seven,", 1)),
            r"fer2013new.csv: row 4: surprise must be a whole number of votes \(0 or more\), got 'seven'",
        ),
        (
            lambda lines: lines.pop(),
            r"fer2013new.csv: 14 rows, but fer2013.csv has 15; FER\+ relabels FER2013 row by row",
        ),
        (
            lambda lines: lines.__setitem__(2, lines[2].replace("Training", "PublicTest")),
            r"fer2013new.csv: data row 2 is in the val split, but in fer2013.csv it is in train",
        ),
    ],
    ids=["not-a-number", "fewer-rows", "other-order"],
)
def test_a_bad_fer2013new_csv_names_the_file_and_row(tmp_path, run_cli, edit, message):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    votes = tmp_path / "fer" / "fer2013new.csv"
    lines = votes.read_text().splitlines()
    edit(lines)
    votes.write_text("\n".join(lines) + "\n")
    result = run_cli("data", "check", tmp_path / "fer")
    assert result.code == 2 and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert re.search(message, result.err), result.err


# --- RAF-DB basic -------------------------------------------------------------------------------------

RAFDB_LABELS = {f"train_{i:05d}.jpg": i % 7 + 1 for i in range(1, 29)} | {
    f"test_{i:04d}.jpg": i % 7 + 1 for i in range(1, 8)
}


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "original"])
def test_rafdb_is_detected_with_its_split_from_the_file_name(tmp_path, aligned):
    make_rafdb(tmp_path / "raf", RAFDB_LABELS, aligned=aligned)
    ds = load_dataset(tmp_path / "raf", channels=3)
    assert ds.layout == "rafdb" and ds.class_names == list(CANONICAL_CLASSES)
    assert ds.val_carved and len(ds.splits["train"]) + len(ds.splits["val"]) == 28 and len(ds.splits["test"]) == 7
    # test_0001.jpg has label 2 (fear); test_0007.jpg label 1 (surprise)
    assert ds.class_names[ds.splits["test"].labels[0]] == "fearful"
    assert ds.class_names[ds.splits["test"].labels[6]] == "surprised"
    assert ds.label_source == "EmoLabel/list_patition_label.txt"
    assert ds.notes == (f"RAF-DB images from Image/{'aligned' if aligned else 'original'}/",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00003.jpg 9", r"list_patition_label.txt: line 3: label must be 1-7 \(1 surprise, .*\), got '9'"),
        ("valid_00003.jpg 1", r"line 3: 'valid_00003.jpg' starts with neither train_ nor test_"),
        ("train_00003.jpg", r"line 3: expected '<image> <label>' such as 'train_00001.jpg 5', got 'train_00003.jpg'"),
        (
            "train_00099.jpg 1",
            r"line 3: no image .*Image/aligned/train_00099_aligned.jpg; restore it or remove the line",
        ),
    ],
    ids=["label", "split", "fields", "missing-image"],
)
def test_a_bad_rafdb_label_line_names_the_file_and_line(tmp_path, run_cli, line, message):
    make_rafdb(tmp_path / "raf", RAFDB_LABELS)
    labels = tmp_path / "raf/EmoLabel/list_patition_label.txt"
    lines = labels.read_text().splitlines()
    lines[2] = line
    labels.write_text("\n".join(lines) + "\n")
    result = run_cli("data", "check", tmp_path / "raf")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert re.search(message, result.err), result.err


# --- numbered class folders ---------------------------------------------------------------------------


def test_numbered_folders_take_affectnets_names_by_default(tmp_path):
    make_folders(tmp_path / "affect", {str(n): 2 for n in range(8)}, splits=("train", "val"))
    ds = load_dataset(tmp_path / "affect")
    assert ds.layout == "numbered_folders" and ds.class_names == EIGHT
    # folder 0 is neutral, 7 contempt: each image keeps its folder's class, whatever the class index
    per_folder = ds.splits["val"].labels.reshape(8, 2)[:, 0]  # listed in class order
    assert [ds.class_names[i] for i in per_folder] == EIGHT
    assert sorted(AFFECTNET_CLASSES) == sorted(EIGHT)
    assert "numbered class folders named in AffectNet's order (0 neutral, 1 happy" in ds.notes[0]
    first_neutral = np.flatnonzero(ds.splits["val"].labels == EIGHT.index("neutral"))[0]
    expected = np.asarray(Image.open(tmp_path / "affect/val/0/000.png"))
    np.testing.assert_array_equal(ds.splits["val"].images[first_neutral, 0], expected)


def test_class_names_name_numbered_folders_otherwise(tmp_path):
    make_folders(tmp_path / "d", {"0": 3, "1": 3, "2": 3})
    ds = load_dataset(tmp_path / "d", class_names=["Dog", "cat", "Fear"])
    assert ds.class_names == ["cat", "dog", "fearful"]  # canonical names, sorted: not all emotions
    assert "class folders named by data.class_names (0 dog, 1 cat, 2 fearful)" in ds.notes[0]
    counts = {ds.class_names[label]: n for label, n in zip(*np.unique(ds.splits["train"].labels, return_counts=True))}
    assert set(counts) == {"cat", "dog", "fearful"}
    again = load_dataset(tmp_path / "d", class_names=["a", "b", "c"])  # other names: another cache entry
    assert again.class_names == ["a", "b", "c"]


def test_numbered_folder_errors(tmp_path, run_cli):
    make_folders(tmp_path / "d", {"0": 2, "1": 2, "8": 2})
    with pytest.raises(
        DatasetError, match=r"train/8: numbered class folder 8 has no name in AffectNet's order \(0-7\)"
    ):
        load_dataset(tmp_path / "d")
    with pytest.raises(DatasetError, match=r"data.class_names has 2 names for 3 numbered class folders \(0, 1, 8\)"):
        load_dataset(tmp_path / "d", class_names=["a", "b"])
    result = run_cli("data", "check", tmp_path / "d", "--class-names", "a,b")
    assert result.code == 2 and "data.class_names has 2 names for 3 numbered class folders" in result.err
    make_folders(tmp_path / "named", {"happy": 2, "sad": 2})
    with pytest.raises(DatasetError, match=r"data.class_names names numbered class folders .* this is image folders"):
        load_dataset(tmp_path / "named", class_names=["a", "b"])


# --- a manifest csv -----------------------------------------------------------------------------------


def _manifest_rows() -> list[tuple[str, str, str]]:
    rows = [(f"img/a{i}.png", "Happy", "train") for i in range(4)]
    rows += [(f"img/b{i}.png", "fear", "") for i in range(4)]  # empty split: train
    rows += [(f"img/c{i}.png", "contempt", "train") for i in range(4)]
    rows += [("img/v1.png", "happy", "val"), ("img/v2.png", "contempt", "val"), ("img/v3.png", "fearful", "val")]
    rows += [("t/1.png", "happy", "test")]
    return rows


def test_a_manifest_is_recognised_by_its_header_with_names_and_splits(tmp_path, run_cli):
    manifest = make_manifest(tmp_path / "m", _manifest_rows())
    for root in (tmp_path / "m", manifest):  # the folder holding it, or the file
        ds = load_dataset(root)
        assert ds.layout == "manifest" and ds.class_names == ["fearful", "happy", "contempt"]
        assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [12, 3, 1] and not ds.val_carved
        assert [ds.class_names[i] for i in ds.splits["val"].labels] == ["happy", "contempt", "fearful"]
        assert ds.label_source == "manifest.csv label column"
    result = run_cli("data", "check", tmp_path / "m")
    assert result.code == 1  # usable; tiny classes are problems
    assert f"data:    {tmp_path / 'm'} (manifest csv)" in result.out and "contempt" in result.out


def test_a_manifest_without_split_is_all_train_and_carves_val(tmp_path):
    rows = [(f"x/{i}.png", "cat" if i % 2 else "dog") for i in range(10)]
    ds = load_dataset(make_manifest(tmp_path / "m", rows, header="path,label"))
    assert ds.val_carved and ds.class_names == ["cat", "dog"] and "test" not in ds.splits


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("img/absent.png,happy,train", r"manifest.csv: line 4: no image .*img/absent.png; fix the path"),
        (
            "img/a0.png,happy,holdout",
            r"manifest.csv: line 4: split must be train, val or test \(empty: train\), got 'holdout'",
        ),
        ("img/a0.png,a/b,train", r"manifest.csv: line 4: label 'a/b' holds a '/'"),
        ("img/a0.png,happy", r"manifest.csv: line 4: 2 fields, the header \(path,label,split\) has 3"),
    ],
    ids=["missing-image", "split", "label", "fields"],
)
def test_a_bad_manifest_line_names_the_file_and_line(tmp_path, run_cli, row, message):
    manifest = make_manifest(tmp_path / "m", _manifest_rows())
    lines = manifest.read_text().splitlines()
    lines[3] = row
    manifest.write_text("\n".join(lines) + "\n")
    result = run_cli("data", "check", tmp_path / "m")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert re.search(message, result.err), result.err


def test_a_manifest_beside_train_folders_is_ambiguous(tmp_path):
    make_folders(tmp_path / "d", {"happy": 2})
    make_manifest(
        tmp_path / "d", [("train/happy/000.png", "happy"), ("train/happy/001.png", "happy")], header="path,label"
    )
    with pytest.raises(
        DatasetError, match=r"both train/ folders and a manifest csv \(manifest.csv\); pass the manifest"
    ):
        load_dataset(tmp_path / "d")
    assert load_dataset(tmp_path / "d" / "manifest.csv").layout == "manifest"


# --- data check names each layout, and the config keys --------------------------------------------------


def test_data_check_names_each_layout_and_where_the_labels_come_from(tmp_path, run_cli):
    make_ferplus(tmp_path / "fer", FERPLUS_ROWS)
    make_rafdb(tmp_path / "raf", RAFDB_LABELS)
    make_folders(tmp_path / "affect", {str(n): 2 for n in range(8)}, splits=("train", "val"))
    expected = {
        "fer": ("FER+: fer2013.csv pixels, fer2013new.csv votes", "fer2013new.csv votes (data.labels: majority)"),
        "raf": ("RAF-DB basic", "EmoLabel/list_patition_label.txt"),
        "affect": ("numbered class folders", "class folder numbers"),
    }
    for name, (layout, labels) in expected.items():
        result = run_cli("data", "check", tmp_path / name)
        assert f"data:    {tmp_path / name} ({layout})" in result.out, result.out
        assert f"labels:  {labels}" in result.out
    assert "contempt" in run_cli("data", "check", tmp_path / "fer").out
    report = check_dataset(tmp_path / "fer")
    assert report.class_names == EIGHT and "4 of 15 images have no single top-voted emotion" in report.format()


def test_a_manifest_may_list_images_outside_its_folder_each_once(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"shared/{i}.png", np.full((4, 4), 50 * i))
    (tmp_path / "m").mkdir()
    lines = "path,label\n../shared/0.png,a\n../shared/1.png,a\n../shared/2.png,b\n../shared/3.png,b\n"
    (tmp_path / "m/list.csv").write_text(lines)
    ds = load_dataset(tmp_path / "m")
    assert sorted(np.concatenate([s.images[:, 0, 0, 0] for s in ds.splits.values()]).tolist()) == [0, 50, 100, 150]
    (tmp_path / "m/list.csv").write_text(lines.replace("3.png,b", "0.png,b"))
    with pytest.raises(DatasetError, match=r"list.csv: line 5: .*0.png is listed again \(first on line 2\)"):
        load_dataset(tmp_path / "m")


# --- end to end: `raytrain run` on each new layout, and an 8-class votes run through the readers ----------


def test_run_trains_on_each_new_layout_and_eight_classes_reach_compare_report_and_predict(
    ray_session, tmp_path, run_cli
):
    from conftest import write_config

    from raytrain import artifacts

    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    rows = [  # every FER+ emotion in every split, with a second emotion's votes: distributions, not one-hot
        (split, votes_for(column, 7, **{columns[(i + 1) % 8]: 3}))
        for split, n in (("train", 3), ("val", 1), ("test", 1))
        for i, column in enumerate(columns)
        for _ in range(n)
    ]
    data = {
        "ferplus": make_ferplus(tmp_path / "ferplus", rows, size=24),
        "rafdb": make_rafdb(
            tmp_path / "rafdb",
            {f"train_{i:05d}.jpg": i % 7 + 1 for i in range(21)} | {f"test_{i:04d}.jpg": i % 7 + 1 for i in range(7)},
            size=24,
        ),
        "numbered": make_folders(
            tmp_path / "affectnet", {str(n): 3 for n in range(8)}, splits=("train", "val"), size=24
        ),
        "manifest": make_manifest(
            tmp_path / "manifest",
            [(f"i/{i}.png", ("cat", "dog", "owl")[i % 3], "val" if i >= 12 else "") for i in range(15)],
            size=24,
        ).parent,
    }
    layouts = {"ferplus": "ferplus", "rafdb": "rafdb", "numbered": "numbered_folders", "manifest": "manifest"}
    configs, runs = tmp_path / "configs", tmp_path / "runs"
    for name, root in data.items():
        labels = ", labels: votes" if name == "ferplus" else ""
        config = write_config(configs, name, data=f"img_size: 24{labels}")
        result = run_cli("run", config, "--data-root", root, "--runs-dir", runs)
        assert result.code == 0, result.err
        assert f"({LAYOUT_NAMES[layouts[name]]})" in run_cli("data", "check", root).out
    metrics = {name: artifacts.read_json(runs / name / artifacts.BEST_METRICS) for name in data}
    assert metrics["ferplus"]["class_names"] == EIGHT and metrics["numbered"]["class_names"] == EIGHT
    assert metrics["rafdb"]["class_names"] == list(CANONICAL_CLASSES)
    assert metrics["manifest"]["class_names"] == ["cat", "dog", "owl"]
    assert artifacts.read_json(runs / "ferplus" / artifacts.TEST_METRICS)["per_class"]["contempt"]["support"] == 1

    result = run_cli("compare", "--runs-dir", runs, "--per-class")
    assert result.code == 0 and "contempt" in result.out and "owl" in result.out, result.out + result.err
    page = tmp_path / "report.html"
    assert run_cli("report", "--runs-dir", runs, "--out", page).code == 0
    assert "contempt" in page.read_text()
    image = tmp_path / "face.png"
    write_image(image, np.random.default_rng(0).integers(0, 256, (24, 24)))
    result = run_cli("predict", runs / "ferplus" / artifacts.BEST_WEIGHTS, image, "--top", "8")
    assert result.code == 0 and "contempt" in result.out and result.out.count("%") == 8, result.out
