"""Models: a torchvision classification model by name, with a new dropout+linear head and a 1-channel stem.

Owns the head swap, the RGB->grey stem fold, backbone freezing and the local-only pretrained-weights
lookup (nothing is ever downloaded). Must not import ray, config, data or the train loop.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from raytrain.config.model_names import is_classification_model, unknown_model_message
from raytrain.errors import ModelError
from raytrain.naming import first_line

# torchvision builds every classification model with ImageNet's 1000 outputs unless told otherwise;
# the head search checks for it so a model whose last Linear is not the classifier fails loudly.
IMAGENET_CLASSES = 1000
RGB = 3


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 1,
    dropout: float = 0.3,
    pretrained: bool = False,
) -> nn.Module:
    """A torchvision classification model with `num_classes` outputs for `in_channels`-channel images.

    The final Linear becomes Sequential(Dropout(dropout), Linear(in_features, num_classes)); with
    in_channels=1 the first conv is folded to one channel (see fold_to_one_channel). pretrained=True
    loads torchvision's DEFAULT ImageNet weights from the local torch cache only.
    """
    if not is_classification_model(arch):
        raise ModelError(f"model.arch: {unknown_model_message(arch)}")
    if in_channels not in (1, RGB):
        raise ModelError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
    weights = None
    if pretrained:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        _require_cached(arch, weights)
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as err:
        if weights is None:
            raise
        # a torn copy, another file under the same name, or weights for another architecture
        raise ModelError(
            f"model.pretrained: {_cache_path(weights)} does not hold the ImageNet weights of {arch!r} "
            f"({first_line(err, 200, typed=True)}); delete it and copy it again from {weights.url}"
        ) from err
    _drop_aux_heads(model)
    _replace_head(model, arch, num_classes, dropout)
    if in_channels == 1:
        name, conv = _first_rgb_conv(model, arch)
        model.set_submodule(name, fold_to_one_channel(conv))
        # inception_v3's transform_input re-normalises three ImageNet channels by index; a grey
        # input has one, and the folded stem already expects the pipeline's own normalisation
        if getattr(model, "transform_input", False):
            model.transform_input = False
    return model


def fold_to_one_channel(conv: nn.Conv2d) -> nn.Conv2d:
    """A 1-channel copy of an RGB conv whose kernel is the sum of the three colour kernels.

    Why summing: conv(grey replicated to RGB, W) = sum_c conv(grey, W_c) = conv(grey, sum_c W_c), so
    pretrained features see a grey image exactly as they would its RGB copy. For random weights the
    sum of three i.i.d. kernels has 3x the variance, which is what Kaiming init gives a conv with a
    third of the fan-in, so one rule serves both.
    """
    if conv.in_channels != RGB or conv.groups != 1:
        raise ModelError(f"can only fold a 3-channel, ungrouped stem conv, got {conv}")
    folded = nn.Conv2d(
        1,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            folded.bias.copy_(conv.bias)
    return folded


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The new classifier Linear's parameters (the part build_model initialised from scratch)."""
    return list(_head_linear(model)[1].parameters())


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (False) or unfreeze (True) everything but the head, for training.freeze_epochs.

    Only requires_grad changes: batch-norm running statistics still adapt in train mode, which is
    what a grey-face dataset needs from ImageNet statistics. The optimiser skips parameters whose
    .grad is None, so build it once over all parameters and zero grads with set_to_none=True.
    """
    for param in model.parameters():
        param.requires_grad_(trainable)
    for param in head_parameters(model):
        param.requires_grad_(True)


# ---------------------------------------------------------------------------------------------------


def _cache_path(weights: torchvision.models.WeightsEnum) -> Path:
    # the same rule as torch.hub.load_state_dict_from_url: hub dir (TORCH_HOME aware) + URL basename
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _require_cached(arch: str, weights: torchvision.models.WeightsEnum) -> None:
    """Raise unless the weights file is in the cache: get_model would otherwise try to download it."""
    problem = _missing_weights_message(arch, weights)
    if problem:
        raise ModelError(problem)


def missing_pretrained_weights(arch: str) -> str | None:
    """Why `model.pretrained: true` cannot build `arch` on this machine (its ImageNet weights are not
    in the torch cache), or None. For planning a local sweep, before any trial starts."""
    return _missing_weights_message(arch, torchvision.models.get_model_weights(arch).DEFAULT)


def _missing_weights_message(arch: str, weights: torchvision.models.WeightsEnum) -> str | None:
    path = _cache_path(weights)
    if path.is_file():
        return None
    return (
        f"model.pretrained: ImageNet weights for {arch!r} not found: {path} is missing, and raytrain "
        f"never downloads. On a machine with internet run\n"
        f"    curl -L -o {path.name} {weights.url}\n"
        f"and copy the file to {path} (TORCH_HOME moves this folder), or set `model.pretrained: false` "
        f"to train from random weights."
    )


def _drop_aux_heads(model: nn.Module) -> None:
    # inception_v3 and googlenet add auxiliary classifiers in train mode and return a tuple; the
    # train loop expects plain logits, and the aux Linears would be mistaken for the head
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, name):
                setattr(model, name, None)


def _head_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last Linear registered: torchvision registers the classifier after the trunk in every
    classification model (fc, classifier[-1], head, heads.head)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        # squeezenet classifies with a 1x1 conv; raytrain's head (dropout + Linear) needs a Linear
        raise ModelError(
            f"model.arch: {type(model).__name__} has no Linear classifier head for raytrain to replace;"
            " use another architecture, e.g. 'resnet18'"
        )
    return linears[-1]


def _replace_head(model: nn.Module, arch: str, num_classes: int, dropout: float) -> None:
    name, linear = _head_linear(model)
    if linear.out_features != IMAGENET_CLASSES:
        raise ModelError(
            f"model.arch: cannot find {arch!r}'s classifier head (its last Linear, {name}, has "
            f"{linear.out_features} outputs, not {IMAGENET_CLASSES}); use another architecture"
        )
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) > 0:
        before = parent[int(child) - 1]
        if isinstance(before, nn.Dropout):
            # the architecture's own head dropout (0.2 in efficientnet, mobilenet_v3) would stack on
            # ours, and model.dropout: 0 would still drop; model.dropout is the only head dropout
            parent[int(child) - 1] = nn.Identity()
    head = nn.Sequential(nn.Dropout(dropout), nn.Linear(linear.in_features, num_classes))
    model.set_submodule(name, head)


def _first_rgb_conv(model: nn.Module, arch: str) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == RGB:
            return name, module
    raise ModelError(f"model.arch: {arch!r} has no 3-channel input conv to fold to 1 channel; use data.channels: 3")
