"""Batch augmentation on the trial's device: uint8 batches in, normalised float32 batches out.

Every transform acts on the whole batch at once (no per-image Python loop, no PIL) and every random
draw comes from the caller's torch.Generator, so a seed reproduces an epoch. Pure torch; it must not
import ray or the dataset code.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from raytrain.config import AugmentationConfig

# Normalisation, stored in checkpoints so a model can be used without its config. Grayscale uses
# ImageNet's RGB statistics averaged over the channels, which suits a pretrained stem summed to 1 channel.
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)
# ITU-R 601 luma weights: the grey level that contrast is measured against, as torchvision does
_LUMA = (0.299, 0.587, 0.114)

# Random erasing draws the rectangle as torchvision's RandomErasing does: area as a share of the
# image, aspect ratio (h/w) log-uniform.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


@functools.cache
def reuse_freed_memory() -> bool:
    """Let glibc keep freed batch buffers for the next batch instead of unmapping them.

    Each CPU batch allocates fresh float buffers of several MB (6.4 MB at 128 x 112 px); glibc
    serves those with mmap and returns them on free, so every batch pays page faults to touch new
    memory again: a third of the 112 px throughput here. Raising the mmap and trim thresholds keeps
    them in the heap for reuse. Process-wide and harmless for training; a no-op off glibc. Called
    when this module is imported, i.e. before a trial allocates anything large: set later, after
    the heap has grown around big tensors, it helped only every other run here.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and libc.mallopt(_M_TRIM_THRESHOLD, 4 * _MMAP_THRESHOLD_MAX)
    )


reuse_freed_memory()


def normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel for 1 (grayscale) or 3 (RGB) channels."""
    if channels == 1:
        return GRAY_MEAN, GRAY_STD
    if channels == 3:
        return RGB_MEAN, RGB_STD
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")


class BatchAugmenter:
    """Turns uint8 (B, C, H, W) batches into model inputs of size `img_size` on `device`.

    `eval` resizes and normalises, nothing else. `train` adds, in order: horizontal flip, a random
    affine (rotation, scale, translation), brightness and contrast, random erasing and mixup; a
    transform whose config value is 0 is skipped entirely. Per-pixel work runs at the smaller of the
    stored and the output size: a downscale comes first, an upscale last (bilinear resizing is
    linear, so normalising or mixing before it gives the same result as after).
    """

    def __init__(
        self,
        aug: AugmentationConfig,
        img_size: int,
        channels: int,
        num_classes: int,
        device: torch.device | str = "cpu",
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.aug = aug
        self.img_size = img_size
        self.channels = channels
        self.num_classes = num_classes  # the width of mixup's soft targets
        self.device = torch.device(device)
        # the model's layout (numerics.use_channels_last): handed NCHW, a channels_last model's first
        # conv transposes every 3-channel batch itself
        self.memory_format = memory_format
        self.mean, self.std = normalization(channels)
        # pixels stay in 0-255 until normalisation, which folds in the /255: one pass fewer
        std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1) / std
        self._luma = torch.tensor(_LUMA, device=self.device).view(1, 3, 1, 1)
        self._affine_on = aug.rotation > 0 or aug.scale > 0 or aug.translate > 0

    # -- public ------------------------------------------------------------------------------------

    def eval(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 (B, C, img_size, img_size), normalised, in `memory_format`.
        Deterministic."""
        return self._to_output_size(self._normalise(self._to_float(x)))

    def train(
        self,
        x: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        generator: torch.Generator,
        soft: torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented inputs, targets). Targets are the int64 labels `y`, or the float32 (B, num_classes)
        rows `soft` (FER+ vote distributions) when given; with mixup on, soft rows that sum to 1 mixed
        from either. `generator` may live on the CPU or on `device`."""
        a = self.aug
        x = self._to_float(x)
        if soft is not None:
            y = torch.as_tensor(soft).to(self.device, torch.float32, non_blocking=True)
        else:
            y = torch.as_tensor(y).to(self.device, torch.int64, non_blocking=True)
        n = x.shape[0]
        rand = _Draws(generator, self.device)
        flip = rand.uniform(n) < a.hflip if a.hflip > 0 else None
        if self._affine_on:
            x = self._affine(x, rand, flip)  # the flip rides along in the sampling grid: no extra pass
        elif flip is not None:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if a.brightness > 0:
            factor = rand.uniform(n, 1 - a.brightness, 1 + a.brightness).view(-1, 1, 1, 1)
            x.mul_(factor).clamp_(0, 255)
        if a.contrast > 0:
            # pull each image towards its own mean grey level, as torchvision's adjust_contrast does
            factor = rand.uniform(n, 1 - a.contrast, 1 + a.contrast).view(-1, 1, 1, 1)
            grey = x.mean((1, 2, 3), keepdim=True) if self.channels == 1 else self._luma_mean(x)
            x.mul_(factor).add_(grey * (1 - factor)).clamp_(0, 255)
        x = self._normalise(x)
        if a.random_erasing > 0:
            x = self._erase(x, rand)
        targets = y
        if a.mixup_alpha > 0:
            x, targets = self._mixup(x, y, rand)
        return self._to_output_size(x), targets

    # -- steps -------------------------------------------------------------------------------------

    def _to_float(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 -> a new float32 tensor (0-255) on the device; downscaled (or squared) to img_size
        if needed. Callers may modify the result in place."""
        x = torch.as_tensor(x)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a uint8 batch (B, {self.channels}, H, W), got {x.dtype} of shape {tuple(x.shape)}"
            )
        x = x.to(self.device, non_blocking=True).float()
        height, width = x.shape[2:]
        if height == width <= self.img_size:
            return x  # upscaled at the very end, after the per-pixel work
        size = (self.img_size, self.img_size)
        # antialias only when shrinking: plain bilinear then skips pixels and aliases
        shrinking = max(height, width) > self.img_size
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)

    def _to_output_size(self, x: torch.Tensor) -> torch.Tensor:
        """The last step of eval and train: the model's input size, in the model's memory layout."""
        if x.shape[2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return x.contiguous(memory_format=self.memory_format)

    def _luma_mean(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, 1, 1) mean grey level of RGB images."""
        return (x.mean((2, 3), keepdim=True) * self._luma).sum(1, keepdim=True)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """0-255 -> (x / 255 - mean) / std, in one pass."""
        return torch.addcmul(self._shift, x, self._scale)

    def _affine(self, x: torch.Tensor, rand: _Draws, flip: torch.Tensor | None) -> torch.Tensor:
        """Flip (where `flip`), then rotate by +-rotation degrees, zoom by [1-scale, 1+scale] and shift
        by +-translate of the side, in one bilinear resampling. Pixels pulled in from outside the
        image are black, as in torchvision's RandomAffine."""
        a = self.aug
        n, _, h, w = x.shape
        angle = rand.uniform(n, -a.rotation, a.rotation) * (math.pi / 180)
        zoom = rand.uniform(n, 1 - a.scale, 1 + a.scale)
        # grid coordinates run from -1 to 1 across the image, so one side is 2 units
        shift_x, shift_y = rand.uniform((2, n), -a.translate, a.translate) * 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # the grid says, for each output pixel, where to sample the input: the inverse transform,
        # input = R(-angle) (output - shift) / zoom; flipping first mirrors the sampled x
        mirror = 1.0 - 2.0 * flip.float() if flip is not None else torch.ones_like(cos)
        theta = torch.stack(
            [
                torch.stack([cos, sin, -(cos * shift_x + sin * shift_y)], 1) * mirror.view(-1, 1),
                torch.stack([-sin, cos, sin * shift_x - cos * shift_y], 1),
            ],
            1,
        )  # (n, 2, 3), what F.affine_grid takes
        return F.grid_sample(x, self._grid(theta, h, w), mode="bilinear", padding_mode="zeros", align_corners=False)

    def _grid(self, theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """F.affine_grid(theta, (n, c, h, w), align_corners=False), built with two broadcast adds
        written straight into the grid's x and y planes: affine_grid's batched matmul (inner size 3)
        measured ~13x slower on CPU (4.7 ms against 0.36 ms for 128 x 48 x 48)."""
        xs = (torch.arange(w, device=self.device) * 2 + 1) / w - 1  # pixel centres
        ys = (torch.arange(h, device=self.device) * 2 + 1) / h - 1
        grid = torch.empty(theta.shape[0], h, w, 2, device=self.device)
        for k in range(2):
            row = theta[:, k, :, None, None]  # (n, 3, 1, 1)
            torch.add(row[:, 0] * xs.view(1, 1, w), row[:, 1] * ys.view(1, h, 1) + row[:, 2], out=grid[..., k])
        return grid

    def _erase(self, x: torch.Tensor, rand: _Draws) -> torch.Tensor:
        """Zero one rectangle (the mean colour, after normalisation) in each chosen image."""
        n, _, h, w = x.shape
        chosen = rand.uniform(n) < self.aug.random_erasing
        area = rand.uniform(n, *ERASE_AREA) * (h * w)
        ratio = torch.exp(rand.uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
        eh = torch.sqrt(area * ratio).round().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().clamp(1, w)
        top = (rand.uniform(n) * (h - eh + 1)).floor()
        left = (rand.uniform(n) * (w - ew + 1)).floor()
        rows = torch.arange(h, device=self.device).view(1, h)
        cols = torch.arange(w, device=self.device).view(1, w)
        in_rows = (rows >= top.view(-1, 1)) & (rows < (top + eh).view(-1, 1))
        in_cols = (cols >= left.view(-1, 1)) & (cols < (left + ew).view(-1, 1))
        mask = in_rows.unsqueeze(2) & in_cols.unsqueeze(1) & chosen.view(-1, 1, 1)
        return x.masked_fill_(mask.unsqueeze(1), 0.0)

    def _mixup(self, x: torch.Tensor, y: torch.Tensor, rand: _Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """One lambda ~ Beta(alpha, alpha) per batch; each image is mixed with a random partner:
        lam * x + (1 - lam) * x[partner], and the same for the targets: int labels as one-hot rows,
        soft rows as they are (a mix of two distributions is one too)."""
        lam = rand.beta(self.aug.mixup_alpha)
        partner = rand.permutation(x.shape[0])
        target = F.one_hot(y, self.num_classes).float() if y.ndim == 1 else y
        return torch.lerp(x.index_select(0, partner), x, lam), torch.lerp(target[partner], target, lam)


class _Draws:
    """Random numbers from one generator, delivered on the augmenter's device.

    A CPU generator works with a CUDA augmenter (the small parameter tensors are copied over); a
    generator on the device avoids the copies. Nothing here reads a value back to the host, so the
    GPU never waits on the CPU.
    """

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.generator = generator
        self.device = device

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=self.generator.device)
        return (u * (high - low) + low).to(self.device, non_blocking=True)

    def permutation(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)

    def beta(self, alpha: float) -> torch.Tensor:
        """A 0-d Beta(alpha, alpha) draw as G1 / (G1 + G2) with G ~ Gamma(alpha): torch.distributions
        cannot take a generator, but the gamma sampler underneath it can."""
        shape = torch.full((2,), float(alpha), device=self.generator.device)
        g = torch._standard_gamma(shape, generator=self.generator)
        # both gammas can underflow to 0 for small alpha; Beta(a, a) is symmetric, so 0.5 is the fair tie.
        # The tie is filled on the device: torch.tensor(0.5, device=...) copies from the host and, on
        # CUDA, waits for the copy, once per train step
        lam = torch.where(g.sum() > 0, g[0] / g.sum().clamp_min(1e-30), g.new_full((), 0.5))
        return lam.to(self.device)
