"""best.pt, the product of a trial: the best epoch's weights plus everything needed to use them
without the YAML (architecture, class names, input size and normalisation, the config). Written in
the trial, read by `predict`; torch is needed for both, so this lives with the training code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from raytrain.artifacts import atomic_path

BEST_PT_FORMAT = 1  # bump when the keys of best.pt change


def save_best_weights(
    path: Path,
    state_dict: dict,  # name -> torch.Tensor
    *,
    arch: str,
    class_names: list[str],
    in_channels: int,
    img_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: dict,
    epoch: int,
) -> None:
    """best.pt: the weights plus everything needed to use them without the YAML."""
    payload = {
        "format": BEST_PT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "arch": arch,
        "class_names": list(class_names),
        "in_channels": in_channels,
        "img_size": img_size,
        "mean": list(mean),
        "std": list(std),
        "dropout": config["model"]["dropout"],
        "config": config,
        "epoch": epoch,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_best_weights(path: Path) -> dict:
    """The dict save_best_weights wrote; weights_only since best.pt may come from someone else."""
    return torch.load(path, map_location="cpu", weights_only=True)
