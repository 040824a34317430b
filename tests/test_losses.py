"""Losses: CE matches torch for hard targets, soft one-hot targets match hard ones, focal with gamma 0 is CE,
focal down-weights easy examples, and class weights weight the mean as documented."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from raytrain.config import LossConfig
from raytrain.training.losses import build_loss

C = 7
WEIGHTS = torch.tensor([1.0, 5.0, 0.5, 2.0, 1.0, 3.0, 0.8])


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, C, generator=gen) * 3, torch.randint(0, C, (16,), generator=gen)


def _loss(loss_type="ce", smoothing=0.0, weights=None, gamma=2.0):
    cfg = LossConfig(
        type=loss_type, label_smoothing=smoothing, focal_gamma=gamma, use_class_weights=weights is not None
    )
    return build_loss(cfg, weights)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_ce_equals_torch_cross_entropy_for_hard_targets(batch, smoothing, weights):
    logits, targets = batch
    expected = F.cross_entropy(logits, targets, weight=weights, label_smoothing=smoothing)
    torch.testing.assert_close(_loss("ce", smoothing, weights)(logits, targets), expected)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_focal_with_gamma_zero_equals_torch_cross_entropy(batch, smoothing, weights):
    logits, targets = batch
    expected = F.cross_entropy(logits, targets, weight=weights, label_smoothing=smoothing)
    torch.testing.assert_close(_loss("focal", smoothing, weights, gamma=0.0)(logits, targets), expected)


@pytest.mark.parametrize("loss_type", ["ce", "focal"])
@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_one_hot_soft_targets_equal_hard_targets(batch, loss_type, weights):
    logits, targets = batch
    loss = _loss(loss_type, 0.1, weights)
    torch.testing.assert_close(loss(logits, F.one_hot(targets, C).float()), loss(logits, targets))


def test_unweighted_soft_targets_equal_torch_probability_targets(batch):
    logits, targets = batch
    lam = torch.rand(16, 1, generator=torch.Generator().manual_seed(1))
    soft = lam * F.one_hot(targets, C) + (1 - lam) * F.one_hot(targets.roll(1), C)
    expected = F.cross_entropy(logits, soft, label_smoothing=0.1)
    torch.testing.assert_close(_loss("ce", 0.1)(logits, soft), expected)


def test_weighted_mixup_target_uses_the_mixed_class_weight():
    # the documented rule: a lam:(1-lam) mix of classes a and b counts with weight lam*w_a + (1-lam)*w_b
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0]])
    a, b, lam = 1, 2, 0.7
    soft = torch.zeros(1, C)
    soft[0, a], soft[0, b] = lam, 1 - lam
    nll = -F.log_softmax(logits, dim=1)[0]
    mixed_weight = lam * WEIGHTS[a] + (1 - lam) * WEIGHTS[b]
    expected = (lam * WEIGHTS[a] * nll[a] + (1 - lam) * WEIGHTS[b] * nll[b]) / mixed_weight
    torch.testing.assert_close(_loss("ce", 0.0, WEIGHTS)(logits, soft), expected)


def test_class_weights_weight_the_mean_over_examples():
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1])  # example 0 is easy, example 1 is wrong
    per_example = F.cross_entropy(logits, targets, reduction="none")
    w = torch.tensor([1.0, 4.0, 1, 1, 1, 1, 1])
    weighted = _loss("ce", 0.0, w)(logits, targets)
    torch.testing.assert_close(weighted, (1 * per_example[0] + 4 * per_example[1]) / 5)
    assert weighted > _loss("ce")(logits, targets)  # up-weighting the misclassified class raises the loss
    torch.testing.assert_close(_loss("ce", 0.0, w * 10)(logits, targets), weighted)  # only ratios matter


def test_weights_are_ignored_unless_use_class_weights():
    logits, targets = torch.randn(4, C), torch.tensor([0, 1, 2, 3])
    cfg = LossConfig(type="ce", label_smoothing=0.0, use_class_weights=False)
    torch.testing.assert_close(build_loss(cfg, WEIGHTS)(logits, targets), F.cross_entropy(logits, targets))
    with pytest.raises(ValueError, match="use_class_weights"):
        build_loss(LossConfig(use_class_weights=True), None)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[6.0, 0, 0, 0, 0, 0, 0]])  # p(correct) ~ 0.985
    hard = torch.tensor([[0.0, 6.0, 0, 0, 0, 0, 0]])  # confidently wrong
    target = torch.tensor([0])
    ce, focal = _loss("ce"), _loss("focal", gamma=2.0)
    assert focal(easy, target) < 1e-3 * ce(easy, target)
    assert focal(hard, target) > 0.9 * ce(hard, target)


def test_focal_gradient_is_finite_on_a_certain_example():
    # p rounds to exactly 1 here; (1 - p) ** 0.5 has an infinite derivative at 0
    logits = torch.tensor([[200.0, 0, 0, 0, 0, 0, 0], [0.0, 1, 0, 0, 0, 0, 0]], requires_grad=True)
    _loss("focal", 0.1, WEIGHTS, gamma=0.5)(logits, torch.tensor([0, 3])).backward()
    assert torch.isfinite(logits.grad).all()


def test_a_vote_distribution_target_gives_the_loss_worked_out_by_hand():
    # one image, 3 classes, votes 6:3:1 -> t = (0.6, 0.3, 0.1); smoothing 0.1 -> q = 0.9 t + 0.1 / 3
    import math

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    t = [0.6, 0.3, 0.1]
    q = [0.9 * ti + 0.1 / 3 for ti in t]
    z = sum(math.exp(v) for v in (2.0, 0.0, -1.0))
    p = [math.exp(v) / z for v in (2.0, 0.0, -1.0)]
    nll = [-math.log(pi) for pi in p]
    w = [1.0, 2.0, 4.0]
    soft = torch.tensor([t])
    ce = sum(qi * li for qi, li in zip(q, nll))
    torch.testing.assert_close(_loss("ce", 0.1)(logits, soft), torch.tensor(ce))
    # class weights: the numerator weights each class's term, the mean divides by the target's weight
    weighted = sum(wi * qi * li for wi, qi, li in zip(w, q, nll)) / sum(wi * ti for wi, ti in zip(w, t))
    torch.testing.assert_close(_loss("ce", 0.1, torch.tensor(w))(logits, soft), torch.tensor(weighted))
    # focal: each class's term times (1 - p_c) ** gamma
    focal = sum(qi * (1 - pi) ** 2 * li for qi, pi, li in zip(q, p, nll))
    torch.testing.assert_close(_loss("focal", 0.1, gamma=2.0)(logits, soft), torch.tensor(focal))
