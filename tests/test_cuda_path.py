"""The CUDA path, checked on the CPU where a CPU can tell: the defects a read of it found before any
GPU ran it (issue 25). tests/test_cuda.py keeps the checks only a GPU can make; the CPU stands in
here where the behaviour does not depend on the device (a device tensor is a "meta" one, CUDA's
presence is patched in)."""

from __future__ import annotations

import torch
from data_fixtures import aug_config, shipped_augmentation
from ray.tune.schedulers import AsyncHyperBandScheduler
from torch.utils._python_dispatch import TorchDispatchMode

from raytrain.config import OtherConfig, validate_config
from raytrain.sweeps.plan import SMALL_IMAGE_PX, plan_sweep, whole_gpu_note
from raytrain.sweeps.policy import scheduler_decision_epochs
from raytrain.training.augment import BatchAugmenter
from raytrain.training.checkpoints import CheckpointCadence
from raytrain.training.loop import evaluate
from raytrain.training.numerics import compile_model, pick_device
from raytrain.training.trainable import TrainingRun
from tests.conftest import CONFIGS_DIR, tiny_config


class _Ops(TorchDispatchMode):
    """The aten ops run inside it, by name."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_train_batchs_augmentation_builds_no_tensor_from_host_values():
    """torch.tensor(value, device=cuda) copies from the host and waits for the copy: once per train
    step it would be a host sync in every batch (mixup's Beta draw had one). Such a build is an
    aten.lift_fresh on any device; filling on the device (torch.full) is not."""
    images = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    labels = torch.arange(16) % 7
    for aug in (shipped_augmentation("aug_heavy"), aug_config(mixup_alpha=0.2)):
        augmenter = BatchAugmenter(aug, 24, 3, 7)
        with _Ops() as ops:
            augmenter.train(images, labels, torch.Generator().manual_seed(0))
        assert "aten.lift_fresh.default" not in ops.names, ops.names


def test_a_trial_given_no_gpu_trains_on_the_cpu_where_cuda_is_available(tiny_dataset, monkeypatch):
    """Ray sets CUDA_VISIBLE_DEVICES only for a task that asks for a GPU (docs/ray-notes.md): a trial
    given 0 GPUs sees every GPU of its node, and must leave them to the trials Ray gave them to."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    trial = TrainingRun(validate_config(tiny_config(**{"resources.gpu": 0})), tiny_dataset)
    assert trial.device.type == "cpu" and trial.splits["train"].images.device.type == "cpu"
    assert pick_device(0.25).type == "cuda" and pick_device(1).type == "cuda"
    assert pick_device(None).type == "cuda", "outside a sweep (a benchmark, a notebook): whatever is there"


def test_the_default_cadence_saves_by_the_clock_and_at_each_epoch_asha_may_stop_a_trial():
    other = OtherConfig()
    assert other.checkpoint_epochs is None and other.checkpoint_minutes == 2.0
    now = [0.0]
    cadence = CheckpointCadence(other.checkpoint_epochs, other.checkpoint_minutes, also_at=(3, 9), clock=lambda: now[0])
    due = []
    for epoch in range(1, 15):
        now[0] += 25.0  # 25 s epochs: a 2-minute clock saves about every fifth
        if cadence.due(epoch):
            due.append(epoch)
            cadence.saved(epoch)
    assert due == [3, 8, 9, 14]
    # ASHA's rungs as Tune's own scheduler lays them out (grace * factor ** k below max_t)
    for grace, factor, max_t in ((1, 2, 3), (3, 3.0, 30), (2, 3, 50), (5, 2.5, 7)):
        [bracket] = AsyncHyperBandScheduler(grace_period=grace, reduction_factor=factor, max_t=max_t)._brackets
        rungs = sorted({-int(-milestone // 1) for milestone, _ in bracket._rungs})
        asha = {"type": "asha", "grace_period": grace, "reduction_factor": factor}
        assert list(scheduler_decision_epochs(asha, max_t)) == rungs, (grace, factor, max_t)
    assert scheduler_decision_epochs({"type": "asha", "grace_period": 3, "reduction_factor": 3.0}, 30) == (3, 9, 27)
    assert scheduler_decision_epochs(None, 30) == () and scheduler_decision_epochs({"type": "fifo"}, 30) == ()


class _Shapes(torch.nn.Module):
    """A model that records the input shapes it is given (what a compiled graph is specialised on)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.shapes = model, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self.model(x)


def test_a_fixed_batch_evaluation_gives_the_model_one_shape_and_the_same_metrics(tiny_dataset):
    trial = TrainingRun(validate_config(tiny_config()), tiny_dataset)
    val = trial.splits["val"]
    assert len(val) % 3, "the split must end on a short batch"
    answers = {}
    for fixed in (False, True):
        model = _Shapes(trial.model)
        answers[fixed] = evaluate(
            model, val, augmenter=trial.augmenter, class_names=trial.class_names, batch_size=3, fixed_batch=fixed
        )
        answers[fixed, "shapes"] = {shape[0] for shape in model.shapes}
    assert answers[False, "shapes"] == {3, len(val) % 3}
    assert answers[True, "shapes"] == {3}, "one batch size: no recompile for the last batch"
    (metrics, confusion, probabilities), (plain_metrics, plain_confusion, plain_probabilities) = (
        answers[True],
        answers[False],
    )
    assert (confusion == plain_confusion).all() and probabilities.shape == plain_probabilities.shape
    torch.testing.assert_close(probabilities, plain_probabilities)
    assert metrics == plain_metrics


def test_a_compiled_model_compiles_with_no_more_processes_than_the_trial_has_cpus(monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "compile_threads", inductor_config.compile_threads)  # restored after
    compile_model(torch.nn.Linear(2, 2), cpus=1.5, backend="eager")
    assert inductor_config.compile_threads == 1


def test_the_augmenter_hands_the_model_batches_in_its_memory_layout(tiny_dataset):
    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    labels = torch.arange(6)
    aug = shipped_augmentation("baseline")
    nchw = BatchAugmenter(aug, 24, 3, 7)
    nhwc = BatchAugmenter(aug, 24, 3, 7, memory_format=torch.channels_last)
    for make in (
        lambda a: a.eval(images),
        lambda a: a.train(images, labels, torch.Generator().manual_seed(1))[0],
    ):
        plain, last = make(nchw), make(nhwc)
        assert last.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(
            memory_format=torch.channels_last
        )
        assert torch.equal(plain, last), "the same values, only laid out for the model"
    # a trial's augmenter follows its model: channels_last where the model is (bf16 on a CPU, any GPU)
    for precision in ("fp32", "bf16"):
        trial = TrainingRun(validate_config(tiny_config(**{"training.precision": precision})), tiny_dataset)
        model_nhwc = trial.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert model_nhwc == (precision == "bf16") == (trial.augmenter.memory_format == torch.channels_last)


def test_the_plan_says_when_small_trials_would_each_take_a_whole_gpu(tmp_path, run_cli, monkeypatch):
    demo = CONFIGS_DIR / "demo" / "baseline_small.yaml"  # 48 px, resources.gpu unset
    plan = plan_sweep([demo], runs_dir=tmp_path / "runs")
    assert plan.to_run[0].config.data.img_size <= SMALL_IMAGE_PX
    note = whole_gpu_note(plan, gpus_here=1)
    assert note and "take a whole GPU each" in note and "--gpus-per-trial 0.25 runs 4 trials on each GPU" in note
    assert whole_gpu_note(plan, gpus_here=0) is None, "no GPU here: nothing to say"
    packed = plan_sweep([demo], runs_dir=tmp_path / "runs", gpus_per_trial=0.25)
    assert whole_gpu_note(packed, gpus_here=1) is None
    large = plan_sweep([demo], runs_dir=tmp_path / "runs", overrides=["data.img_size=224"])
    assert whole_gpu_note(large, gpus_here=1) is None

    import raytrain.sweeps.plan

    monkeypatch.setattr(raytrain.sweeps.plan, "local_gpu_count", lambda: 1)
    shown = run_cli("sweep", demo, "--runs-dir", tmp_path / "runs", "--dry-run")
    assert shown.code == 0 and note in shown.out
