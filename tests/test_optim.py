"""Optimisers and schedule: no decay on norms and biases, the right optimiser per key, OneCycle peaking at
training.lr per batch, and model + loss + optimiser together overfitting one batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW

from raytrain.config import LossConfig, TrainingConfig
from raytrain.training.losses import build_loss
from raytrain.training.models import build_model
from raytrain.training.optim import build_optimizer, build_scheduler


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("name, cls", [("adamw", AdamW), ("adam", Adam), ("sgd", SGD)])
def test_optimizer_key_picks_the_class(name, cls):
    opt = build_optimizer(_tiny_net(), TrainingConfig(optimizer=name))
    assert type(opt) is cls  # exact: AdamW subclasses Adam
    if name == "sgd":
        assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"]


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_weight_decay_spares_biases_and_norms(name):
    torch.manual_seed(0)
    net = _tiny_net()
    opt = build_optimizer(net, TrainingConfig(optimizer=name, lr=0.1, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # so any change is weight decay's
    opt.step()
    for n, p in net.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (p.ndim > 1), f"{n}: ndim {p.ndim}, changed={changed}"


def test_onecycle_peaks_at_lr_after_pct_start_stepping_per_batch():
    cfg = TrainingConfig(epochs=5, lr=0.01, onecycle_pct_start=0.3)
    steps_per_epoch = 20
    opt = build_optimizer(_tiny_net(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):  # the lr each batch trains with
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert peak == 0.3 * 100 - 1  # warm-up covers the first 30% of the 100 batches
    assert lrs[peak] == pytest.approx(0.01, rel=1e-12)
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert lrs[-1] < 1e-5
    assert len(set(lrs[:steps_per_epoch])) == steps_per_epoch  # changes every batch, not every epoch
    assert all(g["lr"] == opt.param_groups[0]["lr"] for g in opt.param_groups)  # both decay groups
    with pytest.raises(ValueError):
        sched.step()  # epochs * steps_per_epoch steps exactly; one more is a bug in the loop


@pytest.mark.parametrize("epochs, pct_start", [(10, 0.1), (2, 0.5), (1, 0.3)])
def test_short_schedules_build(epochs, pct_start):
    # 10 steps at pct_start 0.1 divides by zero inside torch's OneCycleLR unless guarded
    cfg = TrainingConfig(epochs=epochs, lr=0.01, onecycle_pct_start=pct_start)
    opt = build_optimizer(_tiny_net(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=1)
    for _ in range(epochs - 1):
        opt.step()
        sched.step()
    assert all(0 <= lr <= 0.01 for lr in sched.get_last_lr())


def test_resnet18_overfits_one_batch():
    torch.manual_seed(0)
    images, labels = torch.rand(14, 1, 32, 32), torch.arange(14) % 7
    # dropout 0: with dropout the train-mode prediction of a fitted batch still flips now and then
    model = build_model("resnet18", 7, in_channels=1, dropout=0.0)
    training = TrainingConfig(epochs=1, lr=3e-3, weight_decay=0.05)
    loss_fn = build_loss(LossConfig(type="focal", label_smoothing=0.1), torch.ones(7))
    opt = build_optimizer(model, training)
    sched = build_scheduler(opt, training, steps_per_epoch=40)
    for _ in range(40):
        logits = model(images)
        loss = loss_fn(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    # train mode, as train/accuracy sees it: 40 steps are too few for batch-norm's running statistics
    # (momentum 0.1) to settle, so eval mode would test those rather than the fit
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy == 1.0, f"train accuracy {accuracy:.2f} after 40 steps, loss {loss.item():.3f}"
