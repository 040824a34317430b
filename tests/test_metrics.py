"""Metrics: per-class and summary numbers match hand-counted values (sklearn conventions) on a fixed set
with a class never predicted and a class never present; the artifact has the seed's shape."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score

from raytrain.training.metrics import CONFUSION_MATRIX, EpochMetrics, metrics_artifact

CLASSES = ["angry", "happy", "sad", "fearful", "neutral"]
# fearful (3) is present twice and never predicted; neutral (4) is neither present nor predicted
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
PREDS = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
# rows = true class, columns = predicted class
EXPECTED_CONFUSION = np.array(
    [
        [2, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [1, 0, 2, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
# class: (tp, predicted, support) counted from the table -> precision, recall, f1 = 2tp/(support+predicted)
EXPECTED = {
    "angry": (2 / 3, 2 / 3, 4 / 6, 3),  # tp 2, predicted 3, support 3
    "happy": (1 / 3, 1 / 2, 2 / 5, 2),  # tp 1, predicted 3, support 2
    "sad": (2 / 4, 2 / 3, 4 / 7, 3),  # tp 2, predicted 4, support 3
    "fearful": (0.0, 0.0, 0.0, 2),  # never predicted: precision 0 by zero_division=0
    "neutral": (0.0, 0.0, 0.0, 0),  # absent: still one of the five classes in the macro mean
}


@pytest.fixture
def computed():
    metrics = EpochMetrics(CLASSES, device="cpu")
    # first half as logits, second as indices: both forms the train loop passes
    metrics.update(F.one_hot(PREDS[:5], len(CLASSES)).float() * 4.0, TARGETS[:5])
    metrics.update(PREDS[5:], TARGETS[5:])
    return metrics.compute()


def test_per_class_values_match_hand_counts(computed):
    for name, (precision, recall, f1, support) in EXPECTED.items():
        assert computed[f"precision/{name}"] == pytest.approx(precision, abs=1e-12), name
        assert computed[f"recall/{name}"] == pytest.approx(recall, abs=1e-12), name
        assert computed[f"f1/{name}"] == pytest.approx(f1, abs=1e-12), name
        assert computed[f"support/{name}"] == support, name


def test_summary_values_match_hand_counts(computed):
    assert computed["accuracy"] == pytest.approx(5 / 10)
    assert computed["macro_f1"] == pytest.approx((4 / 6 + 2 / 5 + 4 / 7 + 0 + 0) / 5)
    # exact, not approximately: the report's macro F1 is the mean of the per-class column it shows
    assert statistics.fmean(computed[f"f1/{c}"] for c in CLASSES) == computed["macro_f1"]


def test_confusion_matrix_matches(computed):
    matrix = computed[CONFUSION_MATRIX]
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, EXPECTED_CONFUSION)
    reference = multiclass_confusion_matrix(PREDS, TARGETS, num_classes=len(CLASSES))
    np.testing.assert_array_equal(matrix, reference.numpy())


def test_per_class_f1_agrees_with_torchmetrics(computed):
    reference = multiclass_f1_score(PREDS, TARGETS, num_classes=len(CLASSES), average=None)
    ours = [computed[f"f1/{c}"] for c in CLASSES]
    np.testing.assert_allclose(ours, reference.double().numpy(), atol=1e-6)


def test_soft_targets_count_as_their_most_probable_class():
    metrics = EpochMetrics(CLASSES)
    soft = 0.7 * F.one_hot(TARGETS, 5) + 0.3 * F.one_hot(TARGETS.roll(1), 5)
    metrics.update(PREDS, soft)
    np.testing.assert_array_equal(metrics.compute()[CONFUSION_MATRIX], EXPECTED_CONFUSION)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric EpochMetrics was called before")
def test_reset_starts_a_new_epoch_and_compute_is_repeatable():
    metrics = EpochMetrics(CLASSES)
    metrics.update(PREDS, TARGETS)
    first = metrics.compute()
    first.pop(CONFUSION_MATRIX)
    assert CONFUSION_MATRIX in metrics.compute()  # popping from one result leaves the next intact
    metrics.reset()
    with pytest.raises(ValueError, match="no samples"):
        metrics.compute()
    metrics.update(PREDS[:2], TARGETS[:2])
    assert metrics.compute()["accuracy"] == 1.0


def test_artifact_has_the_seed_shape(computed):
    artifact = metrics_artifact(computed, CLASSES, epoch=3, split="val", loss=0.75)
    assert set(artifact) == {"epoch", "split", "accuracy", "macro_f1", "loss", "class_names", "per_class"}
    assert artifact["epoch"] == 3 and artifact["split"] == "val" and artifact["loss"] == 0.75
    assert artifact["class_names"] == CLASSES
    assert artifact["per_class"]["happy"] == {"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2}
    json.dumps(artifact)  # plain Python types only
