"""CUDA-only checks of the GPU path: they skip on a CPU-only machine and run wherever a GPU is lent
(with tests/bench/bench_gpu.py for the figures). No CUDA path is trusted before these pass there."""

from __future__ import annotations

import warnings

import pytest
import torch
from ray import tune

from raytrain.config import validate_config
from raytrain.naming import EXPERIMENT_KEY
from raytrain.training.augment import BatchAugmenter
from raytrain.training.trainable import TrainingRun, TrainState, train_experiment
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_trial_on_the_gpu_trains_in_bf16_channels_last_with_its_data_on_the_device(tiny_dataset):
    trial = TrainingRun(validate_config(tiny_config(**{"training.precision": "auto"})), tiny_dataset)
    assert trial.device.type == "cuda" and trial.precision == "bf16"
    assert trial.splits["train"].images.is_cuda
    assert trial.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    metrics = trial.run_epoch(1, TrainState())
    assert metrics["precision_used"] == "bf16" and metrics["val/macro_f1"] >= 0
    # provenance.json's machine part names the GPU and the CUDA and cuDNN the trial ran with
    machine = trial.machine
    assert machine["device"] == "cuda" and machine["device_name"] == torch.cuda.get_device_name()
    assert machine["cuda"] == torch.version.cuda and machine["cudnn"] == torch.backends.cudnn.version() > 0
    assert machine["precision"] == "bf16"


def test_an_epoch_syncs_with_the_host_a_fixed_number_of_times_not_once_per_batch(tiny_dataset, tmp_path):
    # mixup on (the shipped default): its Beta draw once built a host tensor per step
    trial = TrainingRun(validate_config(tiny_config(**{"training.batch_size": 8})), tiny_dataset)
    assert trial.steps >= 5 and trial.cfg.augmentation.mixup_alpha > 0
    state = TrainState()
    trial.run_epoch(1, state)  # warm-up: cuDNN autotuning syncs on its first batches
    trial.write_checkpoint(tmp_path, state, final=False)
    _assert_few_syncs(trial, 2)
    # restored from a checkpoint: the optimiser's step counters must come back on the host
    restored = TrainingRun(trial.cfg, tiny_dataset)
    restored.restore(tune.Checkpoint.from_directory(str(tmp_path)))
    assert all(s["step"].device.type == "cpu" for s in restored.optimizer.state.values())
    restored.run_epoch(2, TrainState(epoch=1))  # warm-up, as above
    _assert_few_syncs(restored, 3)


def _assert_few_syncs(trial: TrainingRun, epoch: int) -> None:
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trial.run_epoch(epoch, TrainState(epoch=epoch - 1))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) < trial.steps, f"{len(syncs)} host syncs in {trial.steps} steps:\n" + "\n".join(
        str(w.message) for w in syncs[:5]
    )


def test_a_trial_given_no_gpu_leaves_the_gpu_alone(tiny_dataset):
    trial = TrainingRun(validate_config(tiny_config(**{"resources.gpu": 0})), tiny_dataset)
    assert trial.device.type == "cpu" and not trial.splits["train"].images.is_cuda


def test_rgb_batches_reach_a_channels_last_model_channels_last(tiny_dataset):
    trial = TrainingRun(validate_config(tiny_config(**{"training.precision": "auto"})), tiny_dataset)
    augmenter = BatchAugmenter(
        trial.cfg.augmentation, 48, 3, 7, trial.device, memory_format=trial.augmenter.memory_format
    )
    images = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8, device=trial.device)
    generator = torch.Generator(device=trial.device).manual_seed(0)
    for batch in (augmenter.eval(images), augmenter.train(images, torch.arange(8, device=trial.device), generator)[0]):
        assert batch.is_cuda and batch.is_contiguous(memory_format=torch.channels_last)


def _in_a_sliver_of_the_gpu(config, dataset):
    torch.cuda.set_per_process_memory_fraction(0.002)  # a few hundred MB: a 224 px batch cannot fit
    train_experiment(config, dataset)


def test_running_out_of_gpu_memory_fails_the_trial_with_what_to_change(ray_session, tiny_dataset, tmp_path):
    experiment = tiny_config(**{"data.img_size": 224, "training.batch_size": 64, "resources.gpu": 0.5})
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_in_a_sliver_of_the_gpu, dataset=tiny_dataset), {"cpu": 1, "gpu": 0.5}
        ),
        param_space={EXPERIMENT_KEY: experiment},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="oom", verbose=0),
    )
    [result] = tuner.fit()
    assert result.error is not None
    message = str(result.error)
    assert "out of GPU memory at training.batch_size 64" in message and "2 trials share one GPU" in message
