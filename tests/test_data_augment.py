"""Batch augmentation: each transform does what its name says on a known input, and nothing else."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_fixtures import aug_config, shipped_augmentation

from raytrain.data.synthetic import render_faces
from raytrain.training import augment
from raytrain.training.augment import GRAY_MEAN, GRAY_STD, RGB_MEAN, RGB_STD, BatchAugmenter, normalization


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noise(n: int = 8, side: int = 16, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=gen(seed))


def dots(n: int, side: int, row: int, col: int) -> torch.Tensor:
    """n black images with one white 3x3 dot centred at (row, col)."""
    x = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    x[:, :, row - 1 : row + 2, col - 1 : col + 2] = 255
    return x


def centroid(images: torch.Tensor, augmenter: BatchAugmenter) -> torch.Tensor:
    """(n, 2) row/col centre of brightness, measured in pixel values (undoing the normalisation)."""
    pixels = (images[:, 0] * augmenter.std[0] + augmenter.mean[0]).clamp(min=0)
    side = pixels.shape[-1]
    grid = torch.arange(side, dtype=torch.float32)
    mass = pixels.sum((1, 2))
    return torch.stack([(pixels.sum(2) * grid).sum(1) / mass, (pixels.sum(1) * grid).sum(1) / mass], 1)


def test_normalisation_constants_are_imagenet_based():
    assert normalization(1) == (GRAY_MEAN, GRAY_STD) == ((0.449,), (0.226,))
    assert normalization(3) == (RGB_MEAN, RGB_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    augmenter = BatchAugmenter(aug_config(), 16, 3, 7)
    assert (augmenter.mean, augmenter.std) == (RGB_MEAN, RGB_STD)


def test_eval_normalises_and_is_deterministic():
    augmenter = BatchAugmenter(shipped_augmentation("aug_heavy"), 16, 1, 7)
    x = torch.full((2, 1, 16, 16), 128, dtype=torch.uint8)
    out = augmenter.eval(x)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.full_like(out, (128 / 255 - 0.449) / 0.226))
    x = noise()
    torch.testing.assert_close(augmenter.eval(x), augmenter.eval(x), rtol=0, atol=0)


def test_eval_resizes_up_and_down_like_interpolate():
    augmenter = BatchAugmenter(aug_config(), 24, 1, 7)
    for x, antialias in ((noise(side=12), False), (noise(side=48), True)):
        expected = F.interpolate(x.float() / 255, (24, 24), mode="bilinear", align_corners=False, antialias=antialias)
        torch.testing.assert_close(augmenter.eval(x), (expected - 0.449) / 0.226, atol=1e-5, rtol=1e-5)
    wide = torch.zeros(2, 1, 10, 30, dtype=torch.uint8)
    assert augmenter.eval(wide).shape == (2, 1, 24, 24)


def test_eval_accepts_numpy_and_rejects_the_wrong_channels():
    augmenter = BatchAugmenter(aug_config(), 16, 1, 7)
    assert augmenter.eval(noise().numpy()).shape == (8, 1, 16, 16)
    expected = r"expected a uint8 batch \(B, 1, H, W\), got torch.uint8 of shape \(8, 3, 16, 16\)"
    with pytest.raises(ValueError, match=expected):
        augmenter.eval(noise(channels=3))
    with pytest.raises(ValueError, match=r"got torch.float32 of shape"):
        augmenter.eval(noise().float())  # a float batch would be modified in place


def test_with_every_transform_off_train_equals_eval():
    augmenter = BatchAugmenter(shipped_augmentation("aug_none"), 32, 1, 7)
    x, y = noise(side=16), torch.arange(8) % 7
    out, targets = augmenter.train(x, y, gen())
    torch.testing.assert_close(out, augmenter.eval(x), rtol=0, atol=0)
    assert targets.dtype == torch.int64 and targets.tolist() == y.tolist()


def test_train_is_reproducible_for_a_seed():
    augmenter = BatchAugmenter(shipped_augmentation("aug_heavy"), 24, 1, 7)
    x, y = noise(side=16), torch.arange(8) % 7
    a, ta = augmenter.train(x, y, gen(3))
    b, tb = augmenter.train(x, y, gen(3))
    c, _ = augmenter.train(x, y, gen(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ta, tb, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_flip_mirrors_the_image():
    x = noise()
    augmenter = BatchAugmenter(aug_config(hflip=1.0), 16, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(8, dtype=torch.long), gen())
    torch.testing.assert_close(out, augmenter.eval(torch.flip(x, dims=[3])), rtol=0, atol=0)


def test_flip_inside_the_affine_resampling_mirrors_too():
    # a translate too small to move anything switches the affine path on; the flip rides in its grid
    x = noise()
    augmenter = BatchAugmenter(aug_config(hflip=1.0, translate=1e-7), 16, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(8, dtype=torch.long), gen())
    torch.testing.assert_close(out, augmenter.eval(torch.flip(x, dims=[3])), atol=1e-3, rtol=0)


def test_flip_probability_is_respected():
    x = noise(n=200)
    augmenter = BatchAugmenter(aug_config(hflip=0.5), 16, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(200, dtype=torch.long), gen())
    flipped = (out == augmenter.eval(torch.flip(x, dims=[3]))).flatten(1).all(1)
    assert 70 < int(flipped.sum()) < 130


def test_the_affine_grid_is_affine_grid():
    augmenter = BatchAugmenter(aug_config(rotation=10), 16, 1, 7)
    theta = torch.randn(5, 2, 3, generator=gen())
    expected = F.affine_grid(theta, [5, 1, 12, 20], align_corners=False)
    torch.testing.assert_close(augmenter._grid(theta, 12, 20), expected)


def test_translate_shifts_a_dot_and_only_shifts_it():
    side, translate = 33, 0.25
    augmenter = BatchAugmenter(aug_config(translate=translate), side, 1, 7)
    x = dots(64, side, 16, 16)
    out, _ = augmenter.train(x, torch.zeros(64, dtype=torch.long), gen())
    shift = centroid(out, augmenter) - 16
    assert shift.abs().max() <= translate * side + 0.5
    assert shift.abs().max() > 0.6 * translate * side  # some dots really moved
    assert shift[:, 0].std() > 1 and shift[:, 1].std() > 1  # in both directions, by different amounts
    # a pure shift keeps the dot whole: its brightness sums to the original 9 pixels
    pixels = out * augmenter.std[0] + augmenter.mean[0]
    torch.testing.assert_close(pixels.sum((1, 2, 3)), torch.full((64,), 9.0), atol=0.05, rtol=0)


def test_rotation_keeps_a_dot_at_its_distance_from_the_centre():
    side = 33
    augmenter = BatchAugmenter(aug_config(rotation=180), side, 1, 7)
    out, _ = augmenter.train(dots(64, side, 16, 26), torch.zeros(64, dtype=torch.long), gen())
    offset = centroid(out, augmenter) - 16
    radius = offset.norm(dim=1)
    torch.testing.assert_close(radius, torch.full_like(radius, 10.0), atol=0.5, rtol=0)
    angles = torch.atan2(offset[:, 0], offset[:, 1])
    assert angles.max() - angles.min() > math.pi  # spread all the way round, not one fixed angle


def test_scale_moves_a_dot_along_its_ray_by_the_zoom():
    side = 33
    augmenter = BatchAugmenter(aug_config(scale=0.3), side, 1, 7)
    out, _ = augmenter.train(dots(64, side, 16, 26), torch.zeros(64, dtype=torch.long), gen())
    offset = centroid(out, augmenter) - 16
    zoom = offset[:, 1] / 10
    assert offset[:, 0].abs().max() < 0.3
    assert zoom.min() >= 0.7 - 0.03 and zoom.max() <= 1.3 + 0.03 and zoom.max() - zoom.min() > 0.3


def test_brightness_scales_the_pixels_by_a_factor_in_range():
    x = torch.full((100, 1, 8, 8), 100, dtype=torch.uint8)
    augmenter = BatchAugmenter(aug_config(brightness=0.4), 8, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(100, dtype=torch.long), gen())
    factor = (out * 0.226 + 0.449) * 255 / 100
    per_image = factor.mean((1, 2, 3))
    torch.testing.assert_close(factor, per_image.view(-1, 1, 1, 1).expand_as(factor))  # one factor per image
    assert per_image.min() >= 0.6 - 1e-4 and per_image.max() <= 1.4 + 1e-4 and per_image.std() > 0.1


def test_contrast_scales_the_spread_around_the_mean():
    x = torch.full((100, 1, 8, 8), 50, dtype=torch.uint8)
    x[:, :, :, 4:] = 150  # half dark, half bright: mean 100, spread +-50
    augmenter = BatchAugmenter(aug_config(contrast=0.5), 8, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(100, dtype=torch.long), gen())
    pixels = (out * 0.226 + 0.449) * 255
    torch.testing.assert_close(pixels.mean((1, 2, 3)), torch.full((100,), 100.0), atol=1e-3, rtol=0)
    spread = (pixels[:, 0, 0, 7] - pixels[:, 0, 0, 0]) / 100
    assert spread.min() >= 0.5 - 1e-4 and spread.max() <= 1.5 + 1e-4 and spread.std() > 0.1


def test_contrast_of_rgb_pulls_towards_the_luma_grey():
    x = torch.zeros(32, 3, 8, 8, dtype=torch.uint8)
    x[:, 0] = 150  # pure red: its luma grey is 0.299 * 150
    grey = 0.299 * 150
    augmenter = BatchAugmenter(aug_config(contrast=0.5), 8, 3, 7)
    out, _ = augmenter.train(x, torch.zeros(32, dtype=torch.long), gen())
    std = torch.tensor(RGB_STD).view(1, 3, 1, 1)
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    pixels = (out * std + mean) * 255
    factor = (pixels[:, 0, 0, 0] - grey) / (150 - grey)
    assert factor.min() >= 0.5 - 1e-4 and factor.max() <= 1.5 + 1e-4
    # green and blue move from 0 towards the grey by the same factor (clamped at black)
    torch.testing.assert_close(pixels[:, 1, 0, 0], (grey * (1 - factor)).clamp(min=0), atol=1e-3, rtol=0)


def test_random_erasing_zeroes_one_rectangle_per_chosen_image():
    side = 32
    x = torch.randint(1, 256, (200, 1, side, side), dtype=torch.uint8, generator=gen())
    augmenter = BatchAugmenter(aug_config(random_erasing=0.5), side, 1, 7)
    out, _ = augmenter.train(x, torch.zeros(200, dtype=torch.long), gen())
    reference = augmenter.eval(x)
    erased = out == 0
    changed = (out != reference).flatten(1).any(1)
    assert 70 < int(changed.sum()) < 130
    for mask in erased[:, 0]:
        if not mask.any():
            continue
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all(), "the zeros form one filled rectangle"
        assert 0.01 <= box.numel() / side**2 <= 0.4
    torch.testing.assert_close(out[~changed], reference[~changed], rtol=0, atol=0)


def test_mixup_mixes_each_image_with_its_partner_and_the_targets_alike():
    n = 16
    x = torch.arange(n, dtype=torch.uint8).mul(15).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    y = torch.arange(n)  # one class per image, so each target row names the partner
    augmenter = BatchAugmenter(aug_config(mixup_alpha=0.4), 8, 1, n)
    out, targets = augmenter.train(x, y, gen(1))
    assert targets.shape == (n, n) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(n))
    clean = augmenter.eval(x)
    for i in range(n):
        lam = targets[i, i]
        partner = int(torch.where(torch.arange(n) == i, -1.0, targets[i]).argmax()) if lam < 1 else i
        torch.testing.assert_close(out[i], lam * clean[i] + (1 - lam) * clean[partner], atol=1e-5, rtol=0)
    assert len({round(float(targets[i, i]), 5) for i in range(n) if targets[i].count_nonzero() == 2}) == 1


def test_soft_targets_pass_through_and_mixup_mixes_them_as_it_mixes_the_images():
    n = 12
    x = torch.arange(n, dtype=torch.uint8).mul(20).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    y = torch.arange(n) % 3
    soft = torch.softmax(torch.randn(n, 3, generator=gen(2)), dim=1)  # vote distributions, rows sum to 1
    _, unmixed = BatchAugmenter(aug_config(), 8, 1, 3).train(x, y, gen(1), soft)
    torch.testing.assert_close(unmixed, soft)  # without mixup the votes are the targets as they are
    # with one class per image, the one-hot mix names each image's partner and lambda: lam e_i + (1 - lam) e_j
    _, pairs = BatchAugmenter(aug_config(mixup_alpha=0.4), 8, 1, n).train(x, torch.arange(n), gen(1))
    assert (pairs.max(1).values < 1).any(), "no example was mixed"
    _, targets = BatchAugmenter(aug_config(mixup_alpha=0.4), 8, 1, 3).train(x, y, gen(1), soft)
    torch.testing.assert_close(targets, pairs @ soft)  # the same draws: lam soft_i + (1 - lam) soft_j
    torch.testing.assert_close(targets.sum(1), torch.ones(n))


def test_mixup_lambda_follows_beta_alpha_alpha():
    g = gen()
    draws = augment._Draws(g, torch.device("cpu"))
    lams = torch.stack([draws.beta(0.2) for _ in range(4000)])
    assert abs(float(lams.mean()) - 0.5) < 0.03
    # Beta(0.2, 0.2) piles up at the ends: 67.3% of its mass is below 0.1 or above 0.9
    assert abs(float(((lams < 0.1) | (lams > 0.9)).float().mean()) - 0.673) < 0.04
    wider = torch.stack([draws.beta(2.0) for _ in range(4000)])
    assert float(((wider < 0.1) | (wider > 0.9)).float().mean()) < 0.1  # Beta(2, 2) hugs the middle


def test_the_presets_differ_as_their_names_say():
    faces = torch.from_numpy(render_faces(np.arange(64) % 7, 48, np.random.default_rng(0))).unsqueeze(1)
    y = torch.arange(64) % 7
    distance, mixing = {}, {}
    for name in ("aug_none", "baseline", "aug_heavy"):
        aug = shipped_augmentation(name)
        # mixup draws one lambda per batch, which would swamp a per-image comparison: measure it apart
        augmenter = BatchAugmenter(aug.model_copy(update={"mixup_alpha": 0.0}), 48, 1, 7)
        clean = augmenter.eval(faces)
        distance[name] = np.mean([float((augmenter.train(faces, y, gen(s))[0] - clean).abs().mean()) for s in range(4)])
        draws = augment._Draws(gen(), torch.device("cpu"))
        lams = torch.stack([draws.beta(aug.mixup_alpha) for _ in range(500)]) if aug.mixup_alpha else torch.ones(1)
        mixing[name] = float(torch.minimum(lams, 1 - lams).mean())  # 0 = no mixing
    assert distance["aug_none"] == 0 and mixing["aug_none"] == 0
    assert 0.1 < distance["baseline"] and 1.2 * distance["baseline"] < distance["aug_heavy"]
    assert 0.05 < mixing["baseline"] < mixing["aug_heavy"]


def test_outputs_come_out_at_img_size_on_the_requested_device():
    augmenter = BatchAugmenter(shipped_augmentation("aug_heavy"), 40, 3, 7, device="cpu")
    out, targets = augmenter.train(noise(side=20, channels=3), torch.arange(8) % 7, gen())
    assert out.shape == (8, 3, 40, 40) and out.device.type == "cpu" and targets.shape == (8, 7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_a_cuda_generator_matches_the_shapes_and_reproduces():
    augmenter = BatchAugmenter(shipped_augmentation("aug_heavy"), 64, 1, 7, device="cuda")
    x, y = noise(side=48).cuda(), (torch.arange(8) % 7).cuda()
    a, ta = augmenter.train(x, y, torch.Generator(device="cuda").manual_seed(0))
    b, tb = augmenter.train(x, y, torch.Generator(device="cuda").manual_seed(0))
    assert a.device.type == "cuda" and a.shape == (8, 1, 64, 64) and ta.shape == (8, 7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    cpu_gen_out, _ = augmenter.train(x, y, gen())  # a CPU generator drives a CUDA augmenter too
    assert cpu_gen_out.device.type == "cuda"
