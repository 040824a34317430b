"""Hostile and unlucky input (issue 21): names that would escape runs/, planted pickles, a Ray that
would listen on every interface, inputs that exhaust memory, odd images, relative paths, encodings
and file modes. Each case reproduces what an adversarial pass found and fails without its fix."""

from __future__ import annotations

# --- names ----------------------------------------------------------------------------------------------

# --- pickles and trust ----------------------------------------------------------------------------------

# --- the private local Ray ------------------------------------------------------------------------------

# --- YAML -----------------------------------------------------------------------------------------------

# --- file modes -----------------------------------------------------------------------------------------

# --- images, csv encodings and relative paths (data/, predict) ------------------------------------------


def test_a_fer_csv_whose_header_starts_with_a_utf8_bom_loads(tmp_path, run_cli, monkeypatch):
    import numpy as np
    from data_fixtures import fer_csv_text

    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = [(i % 7, rng.integers(0, 256, 16), usage) for usage in ("Training", "PublicTest") for i in range(70)]
    csv = tmp_path / "fer2013.csv"
    csv.write_text(fer_csv_text(rows), encoding="utf-8-sig")  # as Excel saves "CSV UTF-8"
    assert csv.read_bytes().startswith(b"\xef\xbb\xbfemotion,")
    result = run_cli("data", "check", csv)
    assert result.code == 0, result.err
    assert "FER2013 csv" in result.out and "images:  4x4" in result.out


def _png_declaring(path, width: int, height: int):
    """An 8-bit grayscale PNG whose header declares width x height, followed by one row of pixels: all
    a decompression bomb shows before it is decoded, in a few hundred bytes instead of 400 MB of RAM."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, grey, no interlace
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _sixteen_bit_png(path):
    """A 16-bit grayscale PNG (PIL mode I;16) of a ramp over the whole 16-bit range; returns its pixels."""
    import numpy as np
    from PIL import Image

    pixels = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)  # 0 .. 63000
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode == "I;16"
    return pixels


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped_and_data_check_says_so(tmp_path, run_cli, monkeypatch):
    import numpy as np
    from data_fixtures import make_folders

    from raytrain.data import load_dataset
    from raytrain.training.predict import read_image

    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folders(tmp_path / "d", {"happy": 12, "sad": 12}, splits=("train", "test"), size=8)
    wide = _sixteen_bit_png(root / "test" / "happy" / "000.png")
    expected = (wide >> 8).astype(np.uint8)  # PIL's own convert("L") clips: 99% white
    dataset = load_dataset(root, workers=1)
    np.testing.assert_array_equal(dataset.splits["test"].images[0, 0], expected)
    np.testing.assert_array_equal(read_image(root / "test" / "happy" / "000.png", channels=1)[0, 0], expected)
    result = run_cli("data", "check", root)
    assert result.code == 0, result.out + result.err
    assert "note: 1 of 48 images had 16-bit pixels; scaled to 8 bits (>> 8), not clipped" in result.out


def test_data_check_lists_every_undecodable_file_bounded_with_a_count_and_loads_the_rest(tmp_path, run_cli):
    import pytest
    from data_fixtures import make_folders

    from raytrain.data import DamagedDataWarning, load_dataset

    root = make_folders(tmp_path / "d", {"happy": 30, "sad": 30}, size=8)
    torn = sorted((root / "train" / "happy").glob("*.png"))[:24]
    for path in torn:
        path.write_bytes(path.read_bytes()[:60])  # a valid header, torn pixel data
    huge = _png_declaring(root / "train" / "sad" / "huge.png", 20_000, 20_000)
    result = run_cli("data", "check", root, "--channels", "1")
    assert result.code == 1 and "Traceback" not in result.err, result.err
    assert "25 image file(s) could not be decoded and were left out:" in result.out
    listed = [line.strip() for line in result.out.splitlines() if line.startswith("      ")]
    assert len(listed) == 21 and listed[-1] == "... and 5 more"
    assert listed[0] == f"{torn[0]}: unreadable or corrupt image (image file is truncated); replace or delete the file"
    with pytest.warns(DamagedDataWarning, match=r"d: 25 image file\(s\) could not be decoded and were left out"):
        dataset = load_dataset(root, workers=1, cache_dir=tmp_path / "cache")
    assert len(dataset.skipped) == 25 and dataset.skipped[-1].startswith(f"{huge}: 400 megapixels")
    assert sum(len(split) for split in dataset.splits.values()) == 60 - 24  # the rest loads, the bomb left out


def _tiny_best_pt(path):
    """A best.pt as a trial saves it, with untrained weights: what predict reads, without training."""
    from raytrain.data import CANONICAL_CLASSES
    from raytrain.training.best_weights import save_best_weights
    from raytrain.training.models import build_model

    model = build_model("mobilenet_v3_small", len(CANONICAL_CLASSES), in_channels=1, dropout=0.0)
    save_best_weights(
        path,
        model.state_dict(),
        arch="mobilenet_v3_small",
        class_names=list(CANONICAL_CLASSES),
        in_channels=1,
        img_size=24,
        mean=(0.5,),
        std=(0.25,),
        config={"model": {"dropout": 0.0}},
        epoch=1,
    )
    return path


def test_predict_names_a_decompression_bomb_in_one_line_and_still_classifies_the_rest(tmp_path, run_cli):
    from data_fixtures import write_image

    weights = _tiny_best_pt(tmp_path / "best.pt")
    ok = write_image(tmp_path / "ok.png", [[0, 128], [255, 64]])
    huge = _png_declaring(tmp_path / "huge.png", 20_000, 20_000)
    result = run_cli("predict", weights, ok, huge, ok)
    assert result.code == 1, "one image failed: the exit code says so"
    assert result.out.count(f"{ok}: ") == 2, result.out  # the image after the bomb is classified too
    assert result.err.splitlines() == [
        f"error: {huge}: 400 megapixels, over the 89-megapixel limit on one image (a guard against "
        "decompression bombs); downscale it or remove it"
    ]
    result = run_cli("predict", weights, huge)
    assert result.code == 2 and result.out == "", "nothing classified: bad input"


def test_data_and_predict_commands_take_relative_paths_from_the_working_directory(tmp_path, run_cli, monkeypatch):
    from raytrain.data import CANONICAL_CLASSES
    from tests.conftest import write_config
    from tests.test_compare_export import publish

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", "cache")
    assert run_cli("data", "synth", "data", "--per-class", "12", "--size", "16").code == 0
    assert run_cli("data", "synth", "csv", "--layout", "csv", "--per-class", "12", "--size", "16").code == 0
    for root in ("data", "csv", "csv/fer2013.csv", "./data/../data"):
        result = run_cli("data", "check", root)
        assert result.code == 0 and "error" not in result.err, f"{root}: {result.err}"
    _tiny_best_pt(tmp_path / "best.pt")
    images = [f"data/test/{name}/{next((tmp_path / 'data/test' / name).iterdir()).name}" for name in CANONICAL_CLASSES]
    result = run_cli("predict", "best.pt", *images)
    assert result.code == 0 and [line.split(": ")[0] for line in result.out.splitlines()] == images, result.err
    write_config(tmp_path / "configs", "alpha")
    assert run_cli("validate", "configs/alpha.yaml").code == 0
    publish(tmp_path / "runs", "alpha", {}, 0.6, seed=1)  # a finished run as a trial leaves it
    assert run_cli("compare", "--runs-dir", "runs", "--export", "out/table.csv").code == 0
    assert (tmp_path / "out" / "table.csv").is_file()
