"""Optimisers and the learning-rate schedule: AdamW/Adam/SGD without decay on norms and biases, OneCycle.

Reads only TrainingConfig from raytrain.config; must not import ray, data, models or losses.
"""

from __future__ import annotations

from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import OneCycleLR

from raytrain.config import TrainingConfig

SGD_MOMENTUM = 0.9  # the usual ImageNet value; OneCycle cycles it between 0.85 and 0.95 anyway


def build_optimizer(model: nn.Module, training_cfg: TrainingConfig) -> Optimizer:
    """training.optimizer over all of the model's parameters, in two groups.

    Weight decay applies to weight matrices and conv kernels only: parameters with ndim <= 1 are
    biases and norm scales/shifts, and decaying those shrinks normalisation towards zero without
    regularising anything. Frozen parameters are included (their .grad stays None, so the optimiser
    skips them) so unfreezing after training.freeze_epochs needs no new optimiser.
    """
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": training_cfg.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    lr = training_cfg.lr  # replaced on the first step by the schedule's start value
    if training_cfg.optimizer == "adamw":
        return AdamW(groups, lr=lr)
    if training_cfg.optimizer == "adam":
        # Adam's weight_decay is an L2 term in the gradient (coupled), AdamW's is decoupled
        return Adam(groups, lr=lr)
    if training_cfg.optimizer == "sgd":
        return SGD(groups, lr=lr, momentum=SGD_MOMENTUM, nesterov=True)
    raise ValueError(f"training.optimizer: unknown optimizer {training_cfg.optimizer!r}; use adamw, adam or sgd")


def build_scheduler(optimizer: Optimizer, training_cfg: TrainingConfig, steps_per_epoch: int) -> OneCycleLR:
    """OneCycle over the whole run, stepped once per batch (after optimizer.step()).

    Starts at lr/25, peaks at training.lr after training.onecycle_pct_start of the
    epochs * steps_per_epoch steps, then anneals (cosine) to lr/25/1e4. It also cycles momentum
    (Adam's beta1) 0.95 -> 0.85 -> 0.95, torch's default and the one-cycle recipe.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    total_steps = training_cfg.epochs * steps_per_epoch
    pct_start = training_cfg.onecycle_pct_start
    if pct_start * total_steps == 1.0:
        # torch divides by zero when the warm-up ends exactly on step 0 (e.g. 10 steps at 0.1;
        # pytorch/pytorch#180187). A hair less warm-up gives the schedule meant: the peak at step 0.
        pct_start *= 1.0 - 1e-6
    return OneCycleLR(optimizer, max_lr=training_cfg.lr, total_steps=total_steps, pct_start=pct_start)
