"""Where and in which numerics a trial trains: its device, bf16 autocast where it is faster on this
hardware and fp32 otherwise, the memory layout that goes with it, and torch.compile within the
trial's CPUs. No Ray, no config loading.

A CPU flag is not enough on its own. Measured with a resnet18 train step, batch 128, 2 threads:
an AMD EPYC with avx512_bf16 ran bf16 autocast 1.7x faster than fp32 (248 -> 429 img/s at 48 px),
while an Intel Xeon that lists avx512_bf16 (AMX hidden by its hypervisor) ran it 0.9x (239 -> 212).
So on a CPU, "auto" times one 3x3 convolution forward and backward in both precisions, once per
machine and torch version (the answer is cached), and picks bf16 only where it clearly wins.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from raytrain import artifacts

# CPU feature flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic runs natively:
# x86 avx512_bf16 / amx_bf16, Arm bf16 (Neoverse V1+, Graviton 3+, Apple M2+ under Linux)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# below this speed-up bf16's rounding buys too little: stay in fp32 (also a margin for timing noise)
MIN_BF16_SPEEDUP = 1.15


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU lists a bf16 arithmetic feature (read from /proc/cpuinfo)."""
    if platform.system() != "Linux":
        return False  # no reliable flag elsewhere: fp32 is the safe choice
    try:
        return native_bf16_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def native_bf16_in(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bf16 feature (its first CPU is enough)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 and Arm spell the line differently
            return not NATIVE_BF16_FLAGS.isdisjoint(value.split())
    return False


def cpu_precision(native_bf16: bool, speedup: float | None) -> str:
    """What "auto" means on a CPU: bf16 only with native support and a measured win."""
    return "bf16" if native_bf16 and speedup is not None and speedup >= MIN_BF16_SPEEDUP else "fp32"


def measure_cpu_bf16_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16-autocast time of a 3x3 convolution forward and backward, ResNet's staple,
    each in the layout a trial would use (NCHW for fp32, NHWC for bf16). About half a second."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    inputs = {"fp32": torch.randn(32, 64, 28, 28)}
    inputs["bf16"] = inputs["fp32"].contiguous(memory_format=torch.channels_last)
    layers = {"fp32": conv, "bf16": torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)}

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            out = layers[precision](inputs[precision].requires_grad_())
        out.float().sum().backward()
        return time.perf_counter() - start

    step("fp32"), step("bf16")  # warm-up: oneDNN builds its kernels on first use
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(repeats):  # interleaved, so other load hits both alike; the fastest run counts
        for precision in best:
            best[precision] = min(best[precision], step(precision))
    return best["fp32"] / best["bf16"]


def cpu_bf16_speedup(cache_dir: Path | None = None) -> float:
    """measure_cpu_bf16_speedup, measured once per CPU, torch version and thread count and kept in
    `cache_dir`, so every trial on a machine makes the same choice. A damaged cache is measured again."""
    if cache_dir is None:
        return measure_cpu_bf16_speedup()
    path = Path(cache_dir) / f"cpu-bf16-{_machine_key()}.json"
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speedup = measure_cpu_bf16_speedup()
    with contextlib.suppress(OSError):  # a cache we cannot write costs half a second next time
        artifacts.write_json(path, {"speedup": speedup, "cpu": _cpu_model_and_flags()[0], "torch": torch.__version__})
    return speedup


def _machine_key() -> str:
    """The CPU (model and feature flags), torch version and thread count: what the ratio depends on."""
    model, flags = _cpu_model_and_flags()
    return hashlib.sha256(f"{model}|{flags}|{torch.__version__}|{torch.get_num_threads()}".encode()).hexdigest()[:12]


def cpu_model() -> str:
    """This machine's CPU model name (from /proc/cpuinfo; the architecture where there is none)."""
    return _cpu_model_and_flags()[0]


def _cpu_model_and_flags() -> tuple[str, str]:
    """The first CPU's model name and feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine(), ""
    first: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    return first.get("model name", platform.machine()), first.get("flags", first.get("Features", ""))


def pick_device(gpus: float | None) -> torch.device:
    """The trial's device from its resolved resources.gpu (None: outside a sweep, whatever is there).
    0 means the CPU even where CUDA is available: Ray sets CUDA_VISIBLE_DEVICES only for tasks that
    ask for a GPU, so a 0-GPU trial still sees every GPU of its node (docs/ray-notes.md)."""
    if gpus == 0:
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: torch.device, cache_dir: Path | None = None) -> str:
    """ "auto" -> "bf16" on CUDA GPUs that support it and on CPUs where it is measured faster
    (see cpu_bf16_speedup; `cache_dir` keeps that measurement), else "fp32"."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if not cpu_has_native_bf16():
        return "fp32"  # emulated bf16 is slower than fp32: not worth timing
    return cpu_precision(True, cpu_bf16_speedup(cache_dir))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast for a resolved precision. bf16 keeps fp32's exponent range, so
    no loss scaler is needed; weights, optimizer state and the loss stay fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_channels_last(device: torch.device, precision: str) -> bool:
    """NHWC suits cuDNN on any GPU and oneDNN's bf16 convolutions on the CPU (measured 1.0-1.1x
    against NCHW bf16 here); fp32 on the CPU gained nothing from it, so it stays NCHW there."""
    return device.type == "cuda" or precision == "bf16"


def memory_format(device: torch.device, precision: str) -> torch.memory_format:
    """The layout of the model's weights and of the batches it is given (use_channels_last)."""
    return torch.channels_last if use_channels_last(device, precision) else torch.contiguous_format


def compile_model(model: torch.nn.Module, *, cpus: float, backend: str = "inductor") -> torch.nn.Module:
    """torch.compile for training.compile, its code generation held to the trial's CPUs.

    Inductor compiles kernels in a pool of worker processes, one per core of the machine unless told
    (torch._inductor.config.compile_threads, at most 32): four trials packed on a 16-core GPU node
    would start 64 at once. The pool is made at the first compile, so the bound is set before it,
    for this process (a trial's own). The compiled module shares its parameters with `model`.
    """
    import torch._inductor.config as inductor_config  # torch.compile imports it anyway

    inductor_config.compile_threads = max(1, int(cpus))
    return torch.compile(model, backend=backend)
