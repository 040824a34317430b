"""The train function as real Ray Tune trials on tiny synthetic data, and its pieces on the CPU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ray import tune

from raytrain import artifacts
from raytrain.config import validate_config
from raytrain.data import Split, sampler_weights
from raytrain.naming import EXPERIMENT_KEY, METRIC
from raytrain.sweeps.policy import PatienceStopper, checkpoint_config
from raytrain.training import best_weights, checkpoints
from raytrain.training.augment import BatchAugmenter
from raytrain.training.loop import train_one_epoch
from raytrain.training.trainable import TrainingRun, TrainState, train_experiment
from tests.conftest import tiny_config

EPOCH_METRICS = {
    "epoch",
    "train/loss",
    "train/accuracy",
    "val/loss",
    "val/accuracy",
    "val/macro_f1",
    "lr",
    "epoch_time_s",
    "train/images_per_s",
    "epochs_since_best",
}


def run_trials(tmp_path, dataset, experiment: dict, *, num_samples=1, trainable=train_experiment, max_failures=0):
    tuner = tune.Tuner(
        tune.with_parameters(trainable, dataset=dataset),
        param_space={EXPERIMENT_KEY: experiment},
        tune_config=tune.TuneConfig(num_samples=num_samples),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "tune"),
            name="t",
            stop=PatienceStopper(),
            checkpoint_config=checkpoint_config(),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
        ),
    )
    return tuner.fit()


def history_of(result) -> list[dict]:
    return result.metrics_dataframe.to_dict("records")


def val_curve(result) -> list[tuple]:
    return [(r["epoch"], r["val/loss"], r["val/macro_f1"], r["train/loss"]) for r in history_of(result)]


# --- through Tune ------------------------------------------------------------------------------------


def test_a_trial_reports_every_metric_and_leaves_the_seed_artifacts(ray_session, tiny_dataset, tmp_path):
    [result] = run_trials(tmp_path, tiny_dataset, tiny_config(**{"training.epochs": 2}))
    assert result.error is None
    history = history_of(result)
    assert [r["epoch"] for r in history] == [1, 2]
    for name in tiny_dataset.class_names:
        assert {f"val/precision/{name}", f"val/recall/{name}", f"val/f1/{name}"} <= set(history[0])
    assert EPOCH_METRICS <= set(history[0])
    # per-class F1 and macro F1 come from the same counts
    f1s = [history[-1][f"val/f1/{c}"] for c in tiny_dataset.class_names]
    assert history[-1]["val/macro_f1"] == pytest.approx(np.mean(f1s))

    # the files the trial hands to runs/: its last checkpoint's, and the best.pt it refers to
    with checkpoints.trial_artifacts(result.checkpoint) as folder:
        names = {p.name for p in folder.iterdir()}
        assert set(artifacts.TRIAL_ARTIFACTS) - {artifacts.CONFIG} <= names
        best = json.loads((folder / artifacts.BEST_METRICS).read_text())
        best_row = max(history, key=lambda r: r[METRIC])
        assert best["epoch"] == best_row["epoch"] and best["split"] == "val"
        assert best["macro_f1"] == pytest.approx(best_row[METRIC])
        assert set(best["per_class"]) == set(tiny_dataset.class_names)
        test = json.loads((folder / artifacts.TEST_METRICS).read_text())
        assert test["split"] == "test" and sum(c["support"] for c in test["per_class"].values()) == 7
        weights = best_weights.load_best_weights(folder / artifacts.BEST_WEIGHTS)
        assert weights["arch"] == "resnet18" and weights["class_names"] == list(tiny_dataset.class_names)
        assert weights["img_size"] == 24 and weights["in_channels"] == 1 and weights["epoch"] == best["epoch"]
        assert json.loads((folder / artifacts.HISTORY).read_text())[-1]["epoch"] == 2
        # provenance.json's machine part, which only the trial knows; the driver adds data and code
        machine = json.loads((folder / artifacts.PROVENANCE).read_text())["machine"]
        assert machine["precision"] == "fp32" and machine["device"] == "cpu" and machine["ray"]
    assert not any(k.startswith("test/") for k in history[-1]), "test must never reach Tune's metrics"


FOUR_EPOCHS = {"training.epochs": 4}


@pytest.fixture(scope="module")
def two_uninterrupted_runs(ray_session, tiny_dataset, tmp_path_factory):
    """The same config twice in one Tuner: the reference that seeds and restores are held to."""
    return run_trials(tmp_path_factory.mktemp("uninterrupted"), tiny_dataset, tiny_config(**FOUR_EPOCHS), num_samples=2)


def test_same_seed_gives_the_same_metrics(two_uninterrupted_runs):
    first, second = two_uninterrupted_runs
    assert len(history_of(first)) == 4
    assert val_curve(first) == val_curve(second)


def _crash_once_after_epoch_2(config, dataset):
    """train_experiment, killed once right after epoch 2's checkpoint, as a lost worker would be."""
    import raytrain.training.trainable as train_module

    marker = Path(config[EXPERIMENT_KEY]["description"])  # a file path smuggled in a free-text field
    real_report = train_module.tune.report

    def report_then_crash(metrics, checkpoint=None):
        real_report(metrics, checkpoint=checkpoint)
        if metrics["epoch"] == 2 and not marker.exists():
            marker.touch()
            raise RuntimeError("simulated worker loss")

    train_module.tune.report = report_then_crash
    try:
        train_experiment(config, dataset)
    finally:
        train_module.tune.report = real_report


def test_a_retried_trial_continues_from_its_checkpoint_and_matches_the_uninterrupted_run(
    two_uninterrupted_runs, tiny_dataset, tmp_path
):
    uninterrupted = two_uninterrupted_runs[0]
    experiment = tiny_config(**FOUR_EPOCHS, description=str(tmp_path / "crashed"))
    [retried] = run_trials(tmp_path, tiny_dataset, experiment, trainable=_crash_once_after_epoch_2, max_failures=1)
    assert (tmp_path / "crashed").exists(), "the crash never happened: the test proves nothing"
    assert retried.error is None
    epochs = [r["epoch"] for r in history_of(retried)]
    assert epochs == [1, 2, 3, 4], "epochs 1-2 must not be repeated after the retry"
    assert val_curve(retried) == val_curve(uninterrupted)


def test_the_stopper_ends_a_trial_at_best_epoch_plus_patience(ray_session, tiny_dataset, tmp_path):
    # a learning rate this small cannot move val macro F1 after epoch 1, so epoch 1 stays the best
    experiment = tiny_config(**{"training.epochs": 10, "training.lr": 1e-9, "other.patience": 2, "model.dropout": 0.0})
    [result] = run_trials(tmp_path, tiny_dataset, experiment)
    history = history_of(result)
    best_epoch = max(history, key=lambda r: r[METRIC])["epoch"]
    assert len(history) < 10, "nothing stopped the trial"
    assert history[-1]["epoch"] == best_epoch + 2
    assert [r["epochs_since_best"] for r in history][-1] == 2
    with result.checkpoint.as_directory() as folder:
        assert (Path(folder) / artifacts.TEST_METRICS).exists(), "a stopped trial is still evaluated on test"


def test_stopper_reads_each_trials_own_patience():
    stopper = PatienceStopper()

    def result(since, patience):
        return {
            "epochs_since_best": since,
            "config": {EXPERIMENT_KEY: {"other": {"patience": patience}}},
        }

    assert not stopper("t", result(2, 3)) and stopper("t", result(3, 3)) and stopper("t", result(1, 1))


def _nan_loss_trainable(config, dataset):
    import raytrain.training.trainable as train_module

    class NanLoss(torch.nn.Module):
        def forward(self, logits, targets):
            return logits.sum() * float("nan")

    train_module.build_loss = lambda *args: NanLoss()
    train_experiment(config, dataset)


def test_a_nan_loss_fails_the_trial_naming_the_epoch_and_lr(ray_session, tiny_dataset, tmp_path):
    [result] = run_trials(tmp_path, tiny_dataset, tiny_config(), trainable=_nan_loss_trainable)
    assert result.error is not None
    message = str(result.error)
    assert "epoch 1: train loss is nan at lr" in message and "lower training.lr" in message


# --- each knob changes training as it should (the TrainingRun, without Tune) ----------------------------------


@pytest.fixture(scope="module")
def imbalanced_dataset(tiny_dataset):
    """tiny_dataset with 'disgusted' cut to 2 train images and 'happy' tripled: FER's imbalance, small."""
    train = tiny_dataset.splits["train"]
    keep = np.concatenate(
        [
            np.flatnonzero(train.labels != 1),
            np.flatnonzero(train.labels == 1)[:2],
            np.tile(np.flatnonzero(train.labels == 3), 2),
        ]
    )
    splits = dict(tiny_dataset.splits, train=Split(train.images[keep], train.labels[keep]))
    return dataclasses.replace(tiny_dataset, splits=splits)


def trial_for(dataset, **overrides) -> TrainingRun:
    return TrainingRun(validate_config(tiny_config(**overrides)), dataset)


def weights_after_one_epoch(dataset, **overrides) -> tuple[dict, dict]:
    trial = trial_for(dataset, **overrides)
    before = {k: v.clone() for k, v in trial.model.state_dict().items()}
    trial.run_epoch(1, TrainState())
    return before, trial.model.state_dict()


def test_freeze_epochs_trains_only_the_head(tiny_dataset):
    before, after = weights_after_one_epoch(tiny_dataset, **{"training.epochs": 3, "training.freeze_epochs": 1})
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert torch.equal(before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"])
    assert not torch.equal(before["fc.1.weight"], after["fc.1.weight"])
    before, after = weights_after_one_epoch(tiny_dataset, **{"training.epochs": 3, "training.freeze_epochs": 0})
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])


@pytest.mark.parametrize(
    "knob, value",
    [
        ("training.optimizer", "sgd"),
        ("training.optimizer", "adam"),
        ("loss.type", "focal"),
        ("loss.use_class_weights", False),
        ("augmentation.mixup_alpha", 0.0),
        ("training.lr", 1e-4),
        ("data.weighted_sampler", True),
        ("training.weight_decay", 0.5),
        ("loss.label_smoothing", 0.0),
        ("augmentation.hflip", 0.0),
        ("model.dropout", 0.0),
        ("other.seed", 7),
        ("training.precision", "bf16"),
    ],
)
def test_each_knob_changes_what_is_trained(imbalanced_dataset, reference_weights, knob, value):
    _, changed = weights_after_one_epoch(imbalanced_dataset, **{knob: value})
    assert not torch.equal(reference_weights["fc.1.weight"], changed["fc.1.weight"]), f"{knob}={value} changed nothing"


@pytest.fixture(scope="module")
def reference_weights(imbalanced_dataset):
    """One epoch of the unchanged tiny config (imbalanced, so class weights and the weighted sampler
    have something to correct); computed twice to show a difference can only come from the knob."""
    _, reference = weights_after_one_epoch(imbalanced_dataset)
    _, again = weights_after_one_epoch(imbalanced_dataset)
    assert all(torch.equal(reference[k], again[k]) for k in reference), "training is not deterministic"
    return reference


def test_class_weights_reach_the_loss_only_when_asked(imbalanced_dataset):
    weights = trial_for(imbalanced_dataset).loss_fn.weight
    assert weights[1] == weights.max() and weights[3] == weights.min(), "the rare class must weigh most"
    assert trial_for(imbalanced_dataset, **{"loss.use_class_weights": False}).loss_fn.weight is None


class RecordingAugmenter(BatchAugmenter):
    def __init__(self, *args):
        super().__init__(*args)
        self.labels: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def train(self, x, y, generator, soft=None):
        inputs, targets = super().train(x, y, generator, soft)
        self.labels.append(y.clone())
        self.targets.append(targets)
        return inputs, targets


def test_weighted_sampler_draws_class_balanced_batches(imbalanced_dataset):
    labels = imbalanced_dataset.splits["train"].labels  # disgusted 2, happy 24 of 68
    cfg = validate_config(tiny_config(**{"augmentation.mixup_alpha": 0.0}))
    trial = TrainingRun(cfg, imbalanced_dataset)

    def drawn_counts(weights, epochs=10) -> np.ndarray:
        augmenter = RecordingAugmenter(cfg.augmentation, 24, 1, 7, "cpu")
        generator = torch.Generator().manual_seed(0)
        for _ in range(epochs):  # enough draws that chance cannot pass for balance
            train_one_epoch(
                trial.model,
                trial.splits["train"],
                augmenter=augmenter,
                loss_fn=trial.loss_fn,
                optimizer=trial.optimizer,
                scheduler=trial.scheduler,
                batch_size=17,
                generator=generator,
                sample_weights=weights,
            )
        return np.bincount(torch.cat(augmenter.labels).numpy(), minlength=7)

    trial.scheduler.total_steps = 10**6  # many epochs over one schedule; only the draws matter here
    plain = drawn_counts(None)
    balanced = drawn_counts(torch.as_tensor(sampler_weights(labels, 7)))
    assert plain[3] / plain[1] > 8  # 24 happy vs 2 disgusted on disk, less the dropped last batches
    assert balanced.max() / balanced.min() < 2


def train_recorded_epoch(trial: TrainingRun, augmenter) -> dict:
    """One epoch of `trial` in batches of 16, its targets seen through `augmenter` (a RecordingAugmenter)."""
    return train_one_epoch(
        trial.model,
        trial.splits["train"],
        augmenter=augmenter,
        loss_fn=trial.loss_fn,
        optimizer=trial.optimizer,
        scheduler=trial.scheduler,
        batch_size=16,
        generator=torch.Generator().manual_seed(0),
    )


def test_mixup_trains_on_soft_targets(tiny_dataset):
    cfg = validate_config(tiny_config(**{"augmentation.mixup_alpha": 0.4}))
    trial = TrainingRun(cfg, tiny_dataset)
    augmenter = RecordingAugmenter(cfg.augmentation, 24, 1, 7, "cpu")
    train_recorded_epoch(trial, augmenter)
    targets = torch.cat(augmenter.targets)
    assert targets.shape == (48, 7) and torch.allclose(targets.sum(1), torch.ones(48))
    assert (targets.max(1).values < 1).any(), "no example was mixed"


def test_vote_distributions_are_the_targets_and_the_majority_is_scored(tiny_dataset):
    # as FER+ votes give them: 70% for the majority class, 30% for the next one
    def with_votes(split: Split) -> Split:
        eye = np.eye(7, dtype=np.float32)
        return Split(split.images, split.labels, 0.7 * eye[split.labels] + 0.3 * eye[(split.labels + 1) % 7])

    voted = dataclasses.replace(tiny_dataset, splits={k: with_votes(v) for k, v in tiny_dataset.splits.items()})
    cfg = validate_config(tiny_config(**{"augmentation.mixup_alpha": 0.0}))
    trial = TrainingRun(cfg, voted)
    augmenter = RecordingAugmenter(cfg.augmentation, 24, 1, 7, "cpu")
    result = train_recorded_epoch(trial, augmenter)
    targets, labels = torch.cat(augmenter.targets), torch.cat(augmenter.labels)
    assert targets.shape == (48, 7) and torch.allclose(targets.max(1).values, torch.full((48,), 0.7))
    assert torch.equal(targets.argmax(1), labels) and 0 <= result["accuracy"] <= 1  # accuracy: against the majority
    metrics = trial.run_epoch(1, TrainState())  # evaluation reads the labels only
    assert np.isfinite(metrics["train/loss"]) and 0 <= metrics["val/macro_f1"] <= 1


def test_lr_follows_onecycle_per_batch(tiny_dataset):
    trial = trial_for(tiny_dataset, **{"training.epochs": 2, "training.lr": 1e-2})
    state = TrainState()
    lrs = [trial.run_epoch(epoch, state)["lr"] for epoch in (1, 2)]
    # 3 steps per epoch, 6 in all: after epoch 1 the schedule is past its peak (pct_start 0.3)
    assert trial.steps == 3 and lrs[0] < 1e-2 and lrs[1] < lrs[0]
    assert trial.scheduler.last_epoch == 6
