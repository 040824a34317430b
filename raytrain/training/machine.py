"""The machine part of runs/<experiment>/provenance.json, which only the trial can tell: the
versions it runs, the device it trains on and the precision it actually uses. The trial writes it
into each checkpoint; the driver, which may run on another machine, publishes it
(sweeps/publisher.py). Runs in the trial: torch.
"""

from __future__ import annotations

import platform
import socket

import numpy as np
import ray
import torch
import torchvision

from raytrain.training.numerics import cpu_model


def machine_provenance(device: torch.device, precision: str) -> dict:
    """Versions, host, device name (the GPU's, or the CPU model), CUDA and cuDNN versions when the
    trial trains on a GPU, and the precision ("fp32"/"bf16") it resolved to."""
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ray": ray.__version__,
        "numpy": np.__version__,
        "os": platform.platform(),
        "host": socket.gethostname(),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_model(),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "precision": precision,
        "threads": torch.get_num_threads(),
    }
