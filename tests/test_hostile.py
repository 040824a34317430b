"""Hostile and unlucky input (issue 21): names that would escape runs/, planted pickles, a Ray that
would listen on every interface, inputs that exhaust memory, odd images, relative paths, encodings
and file modes. Each case reproduces what an adversarial pass found and fails without its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# --- names ----------------------------------------------------------------------------------------------

ESCAPING_NAMES = {
    "..": "must not start with '.' or '_'",
    ".": "must not start with '.' or '_'",
    "../t001": "must not start with '.' or '_'",
    "a/../../t001": "may hold only letters",
    "_tune": "must not start with '.' or '_'",
    "_index": "must not start with '.' or '_'",
    ".hidden": "must not start with '.' or '_'",
    "experiment_log.jsonl": "must not end in '.jsonl'",
    "results.csv": "must not end in '.csv'",
    "x" * 300: "is 300 characters long; the limit is 100",
}


@pytest.mark.parametrize("name", list(ESCAPING_NAMES), ids=lambda n: n[:20])
def test_a_name_that_is_not_one_plain_folder_is_refused_before_anything_is_written(
    name, tmp_path, monkeypatch, run_cli
):
    work = tmp_path / "W"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "bad.yaml").write_text(f"extends: {CONFIGS / 'demo/baseline_small.yaml'}\nname: {name!r}\n")
    (work / "good.yaml").write_text(f"extends: {CONFIGS / 'demo/baseline_small.yaml'}\nname: fine\n")
    before = sorted(tmp_path.rglob("*"))
    for command in (["validate", "bad.yaml", "good.yaml"], ["run", "bad.yaml", "--data-root", "data"]):
        result = run_cli(*command)
        assert result.code == 2, result.out + result.err
        assert "Traceback" not in result.err
        [line] = [line for line in result.err.splitlines() if "bad.yaml" in line]
        assert line.startswith("error: bad.yaml: name: ") and ESCAPING_NAMES[name] in line
        assert "good.yaml" not in result.err, "one message per config, for the bad one"
    assert sorted(tmp_path.rglob("*")) == before, "something was written"


@pytest.mark.parametrize("name", ["../../escape", "..", "_tune", "x" * 101])
def test_a_sweep_name_or_resume_argument_that_escapes_is_refused(name, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text(f"extends: {CONFIGS / 'demo/baseline_small.yaml'}\nname: ok\n")
    sweep = run_cli("sweep", "ok.yaml", "--name", name, "--data-root", "data", "--runs-dir", "W/runs", "--yes")
    assert sweep.code == 2 and sweep.err.startswith("error: --name: "), sweep.err
    resume = run_cli("resume", name, "--runs-dir", "W/runs")
    assert resume.code == 2 and resume.err.startswith("error: SWEEP: "), resume.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.yaml"], "something was written"


def test_every_path_made_from_a_name_stays_inside_its_folder():
    from raytrain import artifacts
    from raytrain.sweeps.locks import lock_file
    from raytrain.sweeps.settings import sweep_file

    assert artifacts.experiment_dir(Path("runs"), "baseline/seed-2") == Path("runs/baseline/seed-2")
    assert artifacts.within(Path("."), "alpha") == Path("alpha")
    for escaping in ("..", ".", "../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(artifacts.OutsideRuns):
            artifacts.experiment_dir(Path("runs"), escaping)
    for make in (sweep_file, lock_file):
        with pytest.raises(artifacts.OutsideRuns):
            make(Path("runs"), "../../escape")


# --- pickles and trust ----------------------------------------------------------------------------------


class Planted:
    """A pickle that runs a shell command when loaded, as an attacker with write access to the
    storage would plant in place of a checkpoint's state.pt."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_resuming_never_runs_a_planted_pickle_and_a_torn_tuner_pkl_is_one_line(subprocesses, synthetic_root, tmp_path):
    import pickle

    from tests.test_faults import kill_once, raytrain_here, slow_config
    from tests.test_resume import slow_has_checkpointed_twice, start

    slow_config(tmp_path / "configs", epochs=10)
    runs = tmp_path / "runs"
    driver = start(["sweep", "configs", "--data-root", str(synthetic_root), "--runs-dir", "runs", "--yes"], tmp_path)
    # a resumable sweep: a checkpoint, and Tune's experiment snapshot synced beside it (a kill before
    # the first snapshot reaches the storage leaves a sweep that says "cannot be read" for that reason)
    kill_once(
        driver,
        lambda: slow_has_checkpointed_twice(runs) and any(runs.glob("_tune/*/experiment_state-*.json")),
        "slow to checkpoint and Tune to snapshot",
    )

    [tuner_pkl] = runs.glob("_tune/*/tuner.pkl")
    whole = tuner_pkl.read_bytes()
    tuner_pkl.write_bytes(whole[: len(whole) // 2])
    torn = raytrain_here(subprocesses, tmp_path, "resume", "--runs-dir", "runs")
    assert torn.returncode == 2, torn.stdout[-2000:] + torn.stderr[-2000:]
    assert torn.stderr.startswith(f"error: {tuner_pkl.resolve()}: sweep ") and "cannot be resumed" in torn.stderr
    assert "Traceback" not in torn.stdout + torn.stderr and len(torn.stderr.strip().splitlines()) == 1
    tuner_pkl.write_bytes(whole)

    witness = tmp_path / "PWNED"
    states = list(runs.glob("_tune/*/slow_*/checkpoint_*/state.pt"))
    assert states, "no checkpoint to plant in"
    for state in states:
        state.write_bytes(pickle.dumps(Planted(f"touch {witness}")))
    resumed = raytrain_here(subprocesses, tmp_path, "resume", "--runs-dir", "runs")
    said = resumed.stdout + resumed.stderr
    assert not witness.exists(), "resume ran the planted pickle"
    assert resumed.returncode == 1, said[-3000:]
    assert "[slow] FAILED: DamagedCheckpoint: no checkpoint of this trial can be restored" in said
    assert "holds more than the tensors and numbers raytrain writes; refused, not run" in said
    assert "Traceback" not in said


# --- the private local Ray ------------------------------------------------------------------------------


def listening_addresses(root_pid: int, subprocesses) -> list[tuple[str, str]]:
    """(local address, process name) of every TCP listener of `root_pid` and its descendants."""
    import re

    parents = {}
    for line in subprocesses.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        pid, parent = map(int, line.split())
        parents[pid] = parent
    tree, grew = {root_pid}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    found = []
    for line in subprocesses.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines():
        if {int(p) for p in re.findall(r"pid=(\d+)", line)} & tree:
            found.append((line.split()[3], re.findall(r'\("([^"]+)"', line)[0]))
    return found


def test_the_private_local_ray_listens_on_loopback_only(subprocesses, synthetic_root, tmp_path):
    import shutil

    from tests.test_faults import kill_once, slow_config
    from tests.test_resume import start

    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to list listening sockets")
    slow_config(tmp_path / "configs", epochs=20)
    driver = start(["sweep", "configs", "--data-root", str(synthetic_root), "--runs-dir", "runs", "--yes"], tmp_path)
    seen = []

    def training_and_listed() -> bool:
        if "epoch 1/20" not in (tmp_path / "driver.log").read_text():
            return False
        seen[:] = listening_addresses(driver.pid, subprocesses)
        return True

    kill_once(driver, training_and_listed, "the trial's first epoch")
    names = {name for _, name in seen}
    assert {"gcs_server", "raylet"} <= names, f"not Ray's processes: {seen}"
    loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")
    exposed = [(address, name) for address, name in seen if not address.startswith(loopback)]
    assert not exposed, f"reachable from other machines: {exposed}"


# --- YAML -----------------------------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """Anchors that each hold the previous one nine times: 9**levels values once expanded."""
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"training: {{lr: *a{levels}}}"]) + "\n"


@pytest.mark.timeout(60)  # a guard against a hang, not a timing: the bomb is refused before it expands
@pytest.mark.parametrize("levels", [7, 10])
def test_a_yaml_alias_bomb_is_one_short_error(levels, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bomb.yaml").write_text(alias_bomb(levels))
    result = run_cli("validate", "bomb.yaml")
    assert result.code == 2
    assert result.err == (
        "error: bomb.yaml: expands to more than 100,000 values through its aliases (*name); a config needs a few "
        "hundred: is this an alias bomb?\n"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ntraining: &a {lr: 0.1, again: *a}\n", "a value holds itself through an alias"),
        ("name: x\ntraining: {lr: " + "[" * 5000 + "]" * 5000 + "}\n", "nested too deeply to be a config"),
    ],
    ids=["self-reference", "deep nesting"],
)
def test_a_config_that_holds_itself_or_nests_without_end_is_one_error(text, expected, tmp_path, run_cli):
    (tmp_path / "odd.yaml").write_text(text)
    result = run_cli("validate", tmp_path / "odd.yaml")
    assert result.code == 2 and expected in result.err and "Traceback" not in result.err, result.err[-500:]


def test_a_huge_yaml_is_refused_by_its_size_and_a_long_wrong_value_is_quoted_short(tmp_path, run_cli):
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\ndescription: '" + "z" * 1_200_000 + "'\n")
    result = run_cli("validate", huge)
    assert result.code == 2 and "1,200,027 bytes; a config is a few KB (the limit is 1,000,000)" in result.err

    long_value = tmp_path / "long.yaml"
    long_value.write_text("name: x\ntraining: {lr: '" + "z" * 5000 + "'}\n")
    result = run_cli("validate", long_value)
    assert result.code == 2 and "training.lr: must be a number, got 'zzz" in result.err
    assert "(5002 characters)" in result.err and len(result.err) < 300


# --- file modes -----------------------------------------------------------------------------------------


def test_files_written_atomically_get_the_umasks_usual_mode_like_the_log(tmp_path):
    import os
    import stat

    import pandas as pd

    from raytrain import artifacts, results

    artifacts.write_json(tmp_path / "runs" / "alpha" / artifacts.BEST_METRICS, {"macro_f1": 0.5})
    results.write_table(pd.DataFrame({"a": [1]}), tmp_path / "runs" / results.RESULTS_CSV)
    artifacts.append_log(tmp_path / "runs", {"experiment": "alpha", "status": "completed"})
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "runs").rglob("*") if path.is_file()}
    assert modes == dict.fromkeys(modes, artifacts.USUAL_MODE), modes
    umask = os.umask(0o022)
    os.umask(umask)
    assert artifacts.USUAL_MODE == 0o666 & ~umask, "not what open() gives a new file (0644 under umask 022)"


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
