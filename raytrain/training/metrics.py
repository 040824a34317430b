"""Epoch metrics: a confusion matrix accumulated on the device, and the flat metric dict derived from it.

Every number (accuracy, macro F1, per-class precision/recall/F1/support) comes from the same counts,
so they cannot disagree. Must not import ray, data, models or the train loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

CONFUSION_MATRIX = "confusion_matrix"  # key of the (C, C) int array in compute()'s dict; pop it before reporting


class EpochMetrics:
    """Classification metrics over one epoch: update() per batch on the device, compute() once.

    Conventions (sklearn's, with labels = every class and zero_division=0):
      precision_c = tp / predicted_c, recall_c = tp / support_c, f1_c = 2 tp / (support_c + predicted_c),
      each 0 when its denominator is 0; macro_f1 = the unweighted mean of f1_c over ALL classes, so
      mean(f1/<c>) == macro_f1 exactly. A class with no support and no predictions counts as f1 0
      (torchmetrics' macro average would leave it out); every experiment is scored on the same split,
      so this lowers all of them alike and does not change a comparison.

    A plain class, not a torchmetrics.Metric: importing torchmetrics pulls in torchvision's ops,
    scipy and more, seconds of every trial's start-up, for one confusion matrix.
    """

    def __init__(self, class_names: Sequence[str], device: torch.device | str | None = None):
        self.class_names = list(class_names)
        n = len(self.class_names)
        # rows: true class, columns: predicted class (sklearn's and torchmetrics' layout)
        self.confmat = torch.zeros(n, n, dtype=torch.long, device=device)

    def reset(self) -> None:
        self.confmat.zero_()

    def to(self, device: torch.device | str) -> EpochMetrics:
        self.confmat = self.confmat.to(device)
        return self

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: logits (B, C) or class indices (B,); target: indices (B,) or probabilities (B, C).

        A soft (mixup) target counts as its most probable class. index_add_ into a fixed-size
        matrix rather than torchmetrics' bincount, which reads the largest index back to the host
        on CUDA: a sync on every batch.
        """
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        if target.ndim == 2:
            target = target.argmax(dim=1)
        n = len(self.class_names)
        cells = target.long() * n + preds.long()
        self.confmat.view(-1).index_add_(0, cells, torch.ones_like(cells))

    def compute(self) -> dict[str, float | int | np.ndarray]:
        """{accuracy, macro_f1, precision/<c>, recall/<c>, f1/<c>, support/<c>, confusion_matrix}.
        A new dict each call, so a caller popping CONFUSION_MATRIX alters nothing kept."""
        counts = self.confmat.cpu().numpy()  # the epoch's one host sync
        total = int(counts.sum())
        if total == 0:
            raise ValueError("EpochMetrics.compute: no samples were passed to update() this epoch")
        tp = np.diag(counts).astype(np.float64)
        support = counts.sum(axis=1)
        predicted = counts.sum(axis=0)
        precision = _divide_or_zero(tp, predicted)
        recall = _divide_or_zero(tp, support)
        f1 = _divide_or_zero(2 * tp, support + predicted)  # = 2PR/(P+R), and 0 where tp is 0
        out: dict[str, float | int | np.ndarray] = {
            "accuracy": float(tp.sum() / total),
            # fsum / n is what statistics.fmean computes, so the mean of the per-class values matches
            "macro_f1": math.fsum(f1.tolist()) / len(f1),
        }
        for i, name in enumerate(self.class_names):
            out[f"precision/{name}"] = float(precision[i])
            out[f"recall/{name}"] = float(recall[i])
            out[f"f1/{name}"] = float(f1[i])
            out[f"support/{name}"] = int(support[i])
        out[CONFUSION_MATRIX] = counts.astype(np.int64)
        return out


def metrics_artifact(metrics: dict, class_names: Sequence[str], *, epoch: int, split: str, loss: float) -> dict:
    """compute()'s dict as best_metrics.json / test_metrics.json: {epoch, split, accuracy, macro_f1,
    loss, class_names, per_class: {<class>: {precision, recall, f1, support}}}."""
    return {
        "epoch": int(epoch),
        "split": split,
        "accuracy": float(metrics["accuracy"]),
        "macro_f1": float(metrics["macro_f1"]),
        "loss": float(loss),
        "class_names": list(class_names),
        "per_class": {
            name: {
                "precision": float(metrics[f"precision/{name}"]),
                "recall": float(metrics[f"recall/{name}"]),
                "f1": float(metrics[f"f1/{name}"]),
                "support": int(metrics[f"support/{name}"]),
            }
            for name in class_names
        },
    }


def _divide_or_zero(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
