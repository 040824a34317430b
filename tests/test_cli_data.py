"""`raytrain data synth` and `raytrain data check` from the command line: output, exit codes."""

from __future__ import annotations

from raytrain.data import load_dataset


def test_synth_then_check_folders(tmp_path, run_cli):
    out = tmp_path / "fer"
    result = run_cli("data", "synth", out, "--per-class", "20", "--size", "24", "--seed", "3")
    assert result.code == 0 and str(out) in result.out
    assert len(list((out / "train" / "happy").glob("*.png"))) == 16
    result = run_cli("data", "check", out)
    assert result.code == 0
    assert "happy" in result.out and "imbalance (max/min train count): 1.0" in result.out


def test_synth_then_check_with_relative_paths_as_people_type_them(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", "cache")
    assert run_cli("data", "synth", "data", "--per-class", "20", "--size", "16").code == 0
    first, again = run_cli("data", "check", "data"), run_cli("data", "check", "data")  # decoded, then cached
    assert first.code == 0 and "Traceback" not in first.err, first.err
    assert again.code == 0 and again.out == first.out
    assert list((tmp_path / "cache").glob("data-*.npz")), "the decoded dataset was not cached"


def test_synth_csv_layout_loads_as_fer2013(tmp_path, run_cli):
    result = run_cli("data", "synth", tmp_path / "csv", "--layout", "csv", "--per-class", "10", "--size", "16")
    assert result.code == 0
    dataset = load_dataset(tmp_path / "csv" / "fer2013.csv", workers=1, cache_dir=tmp_path / "cache")
    assert dataset.layout == "csv" and dataset.image_size == (16, 16) and len(dataset.splits["train"]) == 56


def test_synth_refuses_to_overwrite_and_check_reports_missing_data(tmp_path, run_cli):
    out = tmp_path / "fer"
    assert run_cli("data", "synth", out, "--per-class", "2", "--size", "16").code == 0
    before = sorted(p.name for p in out.rglob("*"))
    result = run_cli("data", "synth", out, "--per-class", "2", "--size", "16")
    assert result.code == 2 and "already exists and is not an empty folder" in result.err
    assert sorted(p.name for p in out.rglob("*")) == before, "nothing on disk may change"
    result = run_cli("data", "check", tmp_path / "absent")
    assert result.code == 2 and f"{tmp_path / 'absent'}: data root does not exist" in result.err
    assert "Traceback" not in result.err


def test_synth_rejects_a_tiny_size(tmp_path, run_cli):
    result = run_cli("data", "synth", tmp_path / "x", "--size", "8")
    assert result.code == 2 and "--size must be >= 16" in result.err


def test_check_a_corrupt_image_names_the_file_and_checks_the_rest(tmp_path, run_cli):
    out = tmp_path / "fer"
    run_cli("data", "synth", out, "--per-class", "2", "--size", "16")
    corrupt = next((out / "train" / "sad").glob("*.png"))
    corrupt.write_bytes(b"\x89PNG broken")
    result = run_cli("data", "check", out)
    assert result.code == 1 and f"{corrupt}: unreadable or corrupt image" in result.out  # a problem, left out


def test_check_a_split_missing_a_class_is_an_error_naming_both_folders(tmp_path, run_cli):
    out = tmp_path / "fer"
    run_cli("data", "synth", out, "--per-class", "10", "--size", "16")
    for image in (out / "test" / "angry").glob("*.png"):
        image.unlink()
    (out / "test" / "angry").rmdir()
    result = run_cli("data", "check", out)
    assert result.code == 2
    assert f"{out / 'test'}: classes differ from {out / 'train'} (missing ['angry'])" in result.err


def test_check_flags_small_classes_with_exit_code_1(tmp_path, run_cli):
    run_cli("data", "synth", tmp_path / "fer", "--per-class", "10", "--size", "16")
    result = run_cli("data", "check", tmp_path / "fer")
    assert result.code == 1 and "class 'angry' has only 8 images (< 10)" in result.out
