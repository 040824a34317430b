"""Numerics: bf16 autocast where the hardware has it, fp32 on request, torch.compile, and the
out-of-GPU-memory message. CPU only; the CUDA side is measured by tests/bench/bench_gpu.py."""

from __future__ import annotations

import json

import pytest
import torch

from raytrain.config import validate_config
from raytrain.training.numerics import (
    MIN_BF16_SPEEDUP,
    autocast,
    cpu_bf16_speedup,
    cpu_precision,
    native_bf16_in,
    resolve_precision,
)
from raytrain.training.trainable import COMPILE_BACKEND_ENV, TrainingRun, TrainState, out_of_memory_message
from tests.conftest import tiny_config

CPU = torch.device("cpu")
X86_WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
X86_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM_WITH_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    "cpuinfo, native", [(X86_WITH_BF16, True), (X86_WITHOUT, False), (ARM_WITH_BF16, True), ("", False)]
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert native_bf16_in(cpuinfo) is native


@pytest.mark.parametrize(
    "native, speedup, chosen",
    [
        (False, None, "fp32"),
        (True, 1.7, "bf16"),  # the AMD EPYC this was first measured on
        (True, 0.9, "fp32"),  # an Intel Xeon with avx512_bf16 but no AMX: slower in bf16
        (True, MIN_BF16_SPEEDUP - 0.01, "fp32"),
        (True, MIN_BF16_SPEEDUP, "bf16"),
    ],
)
def test_auto_on_a_cpu_is_bf16_only_with_native_support_and_a_measured_win(native, speedup, chosen):
    assert cpu_precision(native, speedup) == chosen


def test_explicit_precisions_win_over_auto():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) in ("bf16", "fp32")


def test_the_bf16_timing_is_measured_once_per_machine_and_a_damaged_cache_is_measured_again(tmp_path):
    measured = cpu_bf16_speedup(tmp_path)
    assert 0.1 < measured < 20
    [cached] = tmp_path.glob("cpu-bf16-*.json")
    cached.write_text('{"speedup": 9.5}')  # a value no timing gives: proves the file is what is read
    assert cpu_bf16_speedup(tmp_path) == 9.5
    cached.write_text('{"speedup": ')  # torn by a crash
    assert 0.1 < cpu_bf16_speedup(tmp_path) < 20
    assert json.loads(cached.read_text())["speedup"] != 9.5


def test_bf16_autocast_runs_convolutions_in_bf16_and_fp32_does_not():
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.randn(2, 1, 8, 8)
    with autocast(CPU, "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert conv(x).dtype == torch.float32


def test_a_trial_trains_in_the_precision_it_resolved_and_says_so(tiny_dataset):
    bf16 = TrainingRun(validate_config(tiny_config(**{"training.precision": "bf16"})), tiny_dataset)
    fp32 = TrainingRun(validate_config(tiny_config(**{"training.precision": "fp32"})), tiny_dataset)
    assert bf16.run_epoch(1, TrainState())["precision_used"] == "bf16"
    assert fp32.run_epoch(1, TrainState())["precision_used"] == "fp32"
    # bf16 convolutions on the CPU go through oneDNN, which wants NHWC; fp32 stays NCHW
    assert bf16.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not fp32.model.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    changed = [
        k
        for k, v in bf16.model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, fp32.model.state_dict()[k])
    ]
    assert changed, "bf16 and fp32 trained identical weights: autocast never engaged"


@pytest.mark.slow  # torch.compile builds its graphs: 6 s, a tenth of the fast tier's minute
def test_compile_trains_through_the_compiled_module_and_checkpoints_plain_names(tiny_dataset, monkeypatch):
    # aot_eager traces forward and backward as inductor would, without minutes of C++ builds
    monkeypatch.setenv(COMPILE_BACKEND_ENV, "aot_eager")
    from torch._dynamo.utils import counters

    # 7 val images in batches of 3: a short last batch, which must not cost a compile of its own
    short_last = {"training.eval_batch_size": 3}
    compiled = TrainingRun(validate_config(tiny_config(**{"training.compile": True}, **short_last)), tiny_dataset)
    plain = TrainingRun(validate_config(tiny_config(**short_last)), tiny_dataset)
    assert compiled.forward_model is not compiled.model
    counters.clear()
    compiled_metrics = compiled.run_epoch(1, TrainState())
    compiled.run_epoch(2, TrainState(epoch=1))
    assert counters["frames"]["total"] == 2, f"compiled {dict(counters['frames'])}: one train and one eval graph"
    plain_metrics = plain.run_epoch(1, TrainState())
    # same seed, same batches: the compiled graph computes what eager does (up to rounding)
    assert compiled_metrics["train/loss"] == pytest.approx(plain_metrics["train/loss"], rel=0.05)
    assert not any(k.startswith("_orig_mod") for k in compiled.model.state_dict())
    plain.model.load_state_dict(compiled.model.state_dict())  # best.pt loads without compile


def test_compile_is_a_speed_knob_that_does_not_make_a_finished_experiment_stale():
    from raytrain.config import config_hash

    base = validate_config(tiny_config())
    assert config_hash(validate_config(tiny_config(**{"training.compile": True}))) == config_hash(base)
    assert config_hash(validate_config(tiny_config(**{"training.precision": "bf16"}))) != config_hash(base)


def test_out_of_gpu_memory_names_the_knobs_to_turn():
    packed = validate_config(tiny_config(**{"resources.gpu": 0.25, "training.batch_size": 512}))
    message = out_of_memory_message(packed)
    assert "training.batch_size 512" in message and "4 trials share one GPU" in message
    assert "--gpus-per-trial" in message
    whole = out_of_memory_message(validate_config(tiny_config(**{"resources.gpu": 1})))
    assert "a whole GPU" in whole and "lower training.batch_size" in whole


def test_precision_flag_reaches_every_planned_config(tiny_runs, tmp_path, run_cli):
    import shutil

    from tests.conftest import write_config

    write_config(tmp_path / "configs", "alpha")  # the config tiny_runs finished `alpha` with
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "alpha", runs / "alpha")

    same = run_cli("sweep", tmp_path / "configs", "--dry-run", "--runs-dir", runs)
    assert same.code == 0 and "done (skipped)" in same.out
    forced_fp32 = run_cli("sweep", tmp_path / "configs", "--dry-run", "--precision", "fp32", "--runs-dir", runs)
    assert forced_fp32.code == 0 and "config changed" in forced_fp32.out
    with pytest.raises(SystemExit) as bad:
        run_cli("sweep", tmp_path / "configs", "--dry-run", "--precision", "fp16")
    assert bad.value.code == 2
