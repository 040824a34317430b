"""Which numerics a trial trains with: bf16 autocast where the hardware runs it natively, fp32
otherwise, and the memory layout that goes with it. Torch only; no Ray, no config loading.

Measured on a 2-core AMD EPYC with avx512_bf16 (resnet18 train step, batch 128): bf16 autocast ran
248 -> 429 img/s at 48 px and 58 -> 105 img/s at 112 px against fp32. Without native bf16 the CPU
emulates it and is slower than fp32, so "auto" only picks bf16 where the instructions exist.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

# CPU feature flags (Linux /proc/cpuinfo) that mean bf16 matrix arithmetic runs natively:
# x86 avx512_bf16 / amx_bf16, Arm bf16 (Neoverse V1+, Graviton 3+, Apple M2+ under Linux)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 dot products in hardware (read from /proc/cpuinfo)."""
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


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" on CUDA GPUs that support it and on CPUs with native bf16, else "fp32"."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast for a resolved precision. bf16 keeps fp32's exponent range, so
    no loss scaler is needed; weights, optimizer state and the loss stay fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_channels_last(device: torch.device, precision: str) -> bool:
    """NHWC suits cuDNN on any GPU and oneDNN's bf16 convolutions on the CPU; fp32 on the CPU
    measured slower with it at 112 px (oneDNN reorders every layer), so it stays NCHW there."""
    return device.type == "cuda" or precision == "bf16"
