"""The plain training loop: one epoch of training and one evaluation pass, in torch alone.

Both functions keep their running sums on the device and read them back once, at the end: one host
sync per epoch, not per batch. Must not import ray: the Tune trainable (trainable.py) drives these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raytrain.training.metrics import CONFUSION_MATRIX, EpochMetrics
from raytrain.training.numerics import autocast


@dataclass
class TensorSplit:
    """One split as tensors on the trial's device: uint8 images (N, C, H, W), int64 labels (N,) and,
    when training on FER+ votes, float32 soft targets (N, classes)."""

    images: Tensor
    labels: Tensor
    targets: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches only (a last batch of 1 breaks BatchNorm); one short batch if the split is tiny."""
    return max(1, num_images // batch_size)


def train_one_epoch(
    model: nn.Module,
    split: TensorSplit,
    *,
    augmenter,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    generator: torch.Generator,
    sample_weights: Tensor | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """One pass over the train split. Returns {loss, accuracy, images, seconds}.

    The loss is against the split's soft targets when it has them, else its labels; accuracy is
    against the labels either way (for FER+ votes, the majority vote).

    `generator` (on the split's device) drives the batch order and every augmentation draw, so an
    epoch is a pure function of the model state and the generator's seed. With `sample_weights`,
    batches are drawn with replacement in proportion to them (the weighted sampler). `precision` is
    a resolved one ("bf16" or "fp32", see numerics.resolve_precision).
    """
    model.train()
    device = split.images.device
    start = time.perf_counter()
    n = len(split)
    if sample_weights is not None:
        order = torch.multinomial(sample_weights, n, replacement=True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator, device=device)
    steps = steps_per_epoch(n, batch_size)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for step in range(steps):
        idx = order[step * batch_size : (step + 1) * batch_size]
        labels = split.labels[idx]
        soft = split.targets[idx] if split.targets is not None else None
        inputs, targets = augmenter.train(split.images[idx], labels, generator, soft)
        with autocast(device, precision):
            logits = model(inputs)
            loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(idx)
    loss_total, correct_total = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # the sync
    return {
        "loss": loss_total / seen,
        "accuracy": correct_total / seen,
        "images": seen,
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: TensorSplit,
    *,
    augmenter,
    class_names: list[str],
    batch_size: int,
    precision: str = "fp32",
    fixed_batch: bool = False,
) -> tuple[dict, np.ndarray, Tensor]:
    """Metrics of the model on a split: (metrics, confusion matrix, softmax probabilities on the CPU).

    `loss` is plain cross-entropy whatever the training loss is, so val losses compare across
    experiments that train with focal loss, smoothing or class weights. With `fixed_batch` every
    batch the model sees has `batch_size` images, the last one padded with blank images whose
    outputs are dropped: a compiled model then meets one input shape, in every split, instead of
    compiling again for each shorter last batch. The model must be in eval mode per image (as
    batch norm in eval mode is), so the padding cannot change the other outputs.
    """
    model.eval()
    device = split.images.device
    metrics = EpochMetrics(class_names, device=device)
    loss_sum = torch.zeros((), device=device)
    probabilities = []
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size]
        labels = split.labels[start : start + batch_size]
        if fixed_batch and len(labels) < batch_size:
            images = torch.cat([images, images.new_zeros((batch_size - len(labels), *images.shape[1:]))])
        with autocast(device, precision):
            logits = model(augmenter.eval(images)).float()[: len(labels)]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        metrics.update(logits, labels)
        probabilities.append(logits.softmax(dim=1))
    result = metrics.compute()  # the sync
    confusion = result.pop(CONFUSION_MATRIX)
    result["loss"] = loss_sum.item() / len(split)
    return result, confusion, torch.cat(probabilities).cpu()
