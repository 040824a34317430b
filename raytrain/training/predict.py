"""Use a trained model: best.pt + image files -> class probabilities.

Needs only best.pt (it carries the architecture, class names, input size and normalisation), never
the YAML. Must not import ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raytrain.config import AugmentationConfig
from raytrain.data.decode import decode_image
from raytrain.errors import UserError
from raytrain.training import best_weights
from raytrain.training.augment import BatchAugmenter
from raytrain.training.models import build_model


class PredictError(UserError):
    """An unusable best.pt or image."""


@dataclass(frozen=True)
class Prediction:
    """One image's result: its classes, most probable first, or why it could not be classified."""

    path: str
    ranked: list[tuple[str, float]]  # (class, probability); empty when `error` is set
    error: str | None = None  # one line naming the file and the fix


def load_classifier(weights_path: str | Path) -> tuple[torch.nn.Module, dict]:
    path = Path(weights_path)
    if not path.is_file():
        raise PredictError(f"{path}: not found; pass the best.pt of a finished run, e.g. runs/baseline/best.pt")
    try:
        saved = best_weights.load_best_weights(path)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise PredictError(f"{path}: not a raytrain best.pt ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "arch" not in saved:
        raise PredictError(f"{path}: not a raytrain best.pt (no state_dict/arch); pass runs/<experiment>/best.pt")
    model = build_model(saved["arch"], len(saved["class_names"]), saved["in_channels"], saved["dropout"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """uint8 (1, C, H, W) in the colour mode the model was trained on (16-bit pixels scaled, not clipped)."""
    if not Path(path).is_file():
        raise PredictError(f"{path}: image not found")
    try:
        pixels = decode_image(path, "L" if channels == 1 else "RGB")
    except UserError as err:  # damaged, too large, or pixels with no 8-bit scale: the message names the file
        raise PredictError(str(err)) from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return pixels[None]


@torch.no_grad()
def predict(weights_path: str | Path, image_paths: list[str | Path]) -> Iterator[Prediction]:
    """For each image in turn, its Prediction. An image that cannot be read is reported in its own
    Prediction and the others are still classified; an unusable best.pt raises PredictError."""
    model, saved = load_classifier(weights_path)
    # eval() only resizes and normalises, with the statistics the model was trained with
    augmenter = BatchAugmenter(AugmentationConfig(), saved["img_size"], saved["in_channels"], len(saved["class_names"]))
    for path in image_paths:
        try:
            pixels = read_image(path, saved["in_channels"])
        except PredictError as err:
            yield Prediction(str(path), [], str(err))
            continue
        probabilities = model(augmenter.eval(pixels)).softmax(dim=1)[0]
        order = probabilities.argsort(descending=True).tolist()
        yield Prediction(str(path), [(saved["class_names"][i], float(probabilities[i])) for i in order])
