"""Learning happens end to end on real pixels: a Tune trial on scikit-learn's digit scans, then
`raytrain predict` with the best.pt it left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import tune

from raytrain import artifacts
from raytrain.data import load_dataset
from raytrain.naming import EXPERIMENT_KEY, METRIC
from raytrain.sweeps.policy import PatienceStopper, checkpoint_config
from raytrain.training import checkpoints
from raytrain.training.trainable import train_experiment
from tests.conftest import tiny_config
from tests.real_images import write_digits

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits_run(ray_session, tmp_path_factory):
    root = write_digits(tmp_path_factory.mktemp("digits") / "data")
    dataset = load_dataset(root, workers=2, cache_dir=tmp_path_factory.mktemp("cache"))
    experiment = tiny_config(
        **{
            "training.epochs": 5,
            "training.batch_size": 64,
            "training.lr": 3e-3,
            "data.img_size": 32,
            "augmentation.hflip": 0.0,  # a mirrored digit is another symbol
            "augmentation.mixup_alpha": 0.0,
            "resources.cpu": 2,
        }
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_experiment, dataset=dataset), {"cpu": 2}),
        param_space={EXPERIMENT_KEY: experiment},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path_factory.mktemp("tune")),
            name="digits",
            stop=PatienceStopper(),
            checkpoint_config=checkpoint_config(),
            verbose=0,
        ),
    )
    [result] = tuner.fit()
    assert result.error is None
    with checkpoints.trial_artifacts(result.checkpoint) as folder:
        kept = tmp_path_factory.mktemp("artifacts")
        for name in (artifacts.BEST_WEIGHTS, artifacts.BEST_METRICS, artifacts.TEST_METRICS):
            (kept / name).write_bytes((Path(folder) / name).read_bytes())
    return result, kept, root


def test_a_small_config_learns_real_digits_in_a_few_cpu_epochs(digits_run):
    result, kept, _ = digits_run
    history = result.metrics_dataframe
    assert history["val/accuracy"].max() >= 0.9
    assert history["val/accuracy"].iloc[0] < history["val/accuracy"].max(), "no learning across epochs"
    test = json.loads((kept / artifacts.TEST_METRICS).read_text())
    assert test["accuracy"] >= 0.85 and len(test["per_class"]) == 10
    best = json.loads((kept / artifacts.BEST_METRICS).read_text())
    assert best["macro_f1"] == pytest.approx(history[METRIC].max())


def test_predict_classifies_unseen_scans_with_best_pt(digits_run, run_cli):
    _, kept, root = digits_run
    images = sorted((root / "test").glob("*/*.png"))[::9]  # 20 scans from every class
    result = run_cli("predict", kept / artifacts.BEST_WEIGHTS, *images, "--top", "2")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert len(lines) == len(images)
    correct = sum(line.split(": ", 1)[1].startswith(image.parent.name + " ") for line, image in zip(lines, images))
    assert correct / len(images) >= 0.8
    assert all(line.count("%") == 2 for line in lines)


def test_predict_errors_are_one_clear_message(digits_run, run_cli, tmp_path):
    _, kept, _ = digits_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = run_cli("predict", kept / artifacts.BEST_WEIGHTS, broken)
    assert result.code == 2 and f"{broken}: unreadable or corrupt image" in result.err
    result = run_cli("predict", tmp_path / "missing.pt", broken)
    assert result.code == 2 and "missing.pt: not found" in result.err
    result = run_cli("predict", broken, broken)
    assert result.code == 2 and "broken.png: not a raytrain best.pt" in result.err
