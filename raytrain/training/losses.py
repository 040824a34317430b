"""Losses: cross-entropy and focal loss with class weights, label smoothing, hard or soft targets (mixup,
FER+ vote distributions).

One definition serves both keys (`ce` is focal with gamma 0) so they can only differ by the focal term.
Reads only LossConfig from raytrain.config; must not import ray, data or models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raytrain.config import LossConfig

# (1 - p) ** gamma has an infinite gradient at p = 1 when gamma < 1; clamping keeps it finite and
# changes the loss by at most 1e-12 ** gamma on an example the model already gets right.
_MIN_ONE_MINUS_P = 1e-12


class FocalCrossEntropy(nn.Module):
    """Weighted, label-smoothed cross-entropy times the focal factor (1 - p_c) ** gamma.

    Targets are class indices (B,) int64 or probabilities (B, C) summing to 1 (mixup, FER+ votes). With t the
    target probabilities, q = (1 - label_smoothing) * t + label_smoothing / C, w the class weights
    (all 1 when None) and p = softmax(logits):

        loss = sum_i sum_c w_c q_ic (1 - p_ic) ** gamma * -log p_ic   /   sum_i sum_c w_c t_ic

    So each example counts with the weight of its target classes, mixed as its target is mixed
    (w_y for a hard target, lam * w_a + (1 - lam) * w_b for a mixup pair), and the mean is weighted
    by those. For hard targets and gamma = 0 this is exactly F.cross_entropy(logits, y, weight=w,
    label_smoothing=...), whose weighted mean also divides by sum_i w_{y_i}; a one-hot soft target
    gives the same loss as its hard index. (torch's own soft-target CE divides by B instead, so it
    disagrees with its hard-target CE once weights are set.)
    """

    def __init__(self, weight: Tensor | None = None, label_smoothing: float = 0.0, gamma: float = 0.0):
        super().__init__()
        # a buffer so .to(device) moves it with the module; not persistent: rebuilt from the data
        self.register_buffer("weight", None if weight is None else weight.float(), persistent=False)
        self.label_smoothing = label_smoothing
        self.gamma = gamma

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        num_classes = logits.shape[1]
        # fp32 even under autocast: log-probabilities of confident fp16 logits round to 0
        log_p = F.log_softmax(logits.float(), dim=1)
        if targets.ndim == 1:
            target_p = F.one_hot(targets, num_classes).float()
        else:
            target_p = targets.float()
        q = target_p * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        per_class = -log_p
        if self.gamma:
            one_minus_p = (-torch.expm1(log_p)).clamp_min(_MIN_ONE_MINUS_P)  # 1 - p without cancellation
            per_class = per_class * one_minus_p**self.gamma
        if self.weight is None:
            return (q * per_class).sum() / logits.shape[0]
        return (q * self.weight * per_class).sum() / (target_p * self.weight).sum()

    def extra_repr(self) -> str:
        weighted = "class-weighted" if self.weight is not None else "unweighted"
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}, {weighted}"


def build_loss(loss_cfg: LossConfig, class_weights: Tensor | None) -> nn.Module:
    """The loss for a LossConfig: `ce` or `focal`, class weights only when use_class_weights is set.

    class_weights: (C,) per-class weights from the train split (e.g. inverse frequency).
    """
    if loss_cfg.use_class_weights and class_weights is None:
        raise ValueError("loss.use_class_weights is true but no class weights were passed to build_loss")
    weight = class_weights if loss_cfg.use_class_weights else None
    gamma = loss_cfg.focal_gamma if loss_cfg.type == "focal" else 0.0
    return FocalCrossEntropy(weight=weight, label_smoothing=loss_cfg.label_smoothing, gamma=gamma)
