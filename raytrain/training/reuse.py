"""What a trial resets when its process ran another trial before it (Tune's reuse_actors).

A sweep hands a finished trial's process to the next trial of the same resources, and a PBT member
that copies another's weights continues in the process it has: torch is imported once, not once
per trial. Everything a trial builds (model, optimiser, scheduler, augmenter, loss, the splits on
the device) is built anew by TrainingRun; what outlives a trial in the process is reset here, so a
trial in a reused process trains exactly as it would in a fresh one. Trials write no TensorBoard
files themselves: the driver's callback does, one writer per trial (trackers/tensorboard_tracker.py).
"""

from __future__ import annotations

import gc
import random

import numpy as np
import torch

from raytrain.config import ExperimentConfig


def start_trial(cfg: ExperimentConfig) -> None:
    """Called first thing in every trial, whether its process is new or ran a trial before."""
    if torch.cuda.is_available():
        # the last trial's model, optimiser and splits on the GPU: freed now, or what reference
        # cycles hold would count against this trial's memory. Not on a CPU, where a full
        # collection with torch loaded costs ~0.25 s per trial and memory freed later is reused
        gc.collect()
        torch.cuda.empty_cache()
    if cfg.training.compile:
        # compiled graphs of the last trial's model: dynamo caches a bounded number per code object,
        # and a reused process would reach that bound and silently fall back to eager
        torch._dynamo.reset()
    # torch's own generators are seeded where they are drawn (model init, each epoch); these global
    # ones are not drawn from by raytrain, but a fresh process would not carry the last trial's state
    seed = cfg.other.seed if isinstance(cfg.other.seed, int) else 0
    random.seed(seed)
    np.random.seed(seed % 2**32)
