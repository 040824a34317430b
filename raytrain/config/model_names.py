"""Names of torchvision's classification models, known without importing torch.

`raytrain validate` must stay fast and torch-free, so the names torchvision 0.29.1 lists are kept here
(tests/test_config.py checks them against the installed torchvision). A name missing from this list is
looked up in the installed torchvision before it is rejected, so a newer torchvision's models work.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

KNOWN_CLASSIFICATION_MODELS = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "swin_b",
    "swin_s",
    "swin_t",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vit_b_16",
    "vit_b_32",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "wide_resnet101_2",
    "wide_resnet50_2",
)


def is_classification_model(name: str) -> bool:
    return name in KNOWN_CLASSIFICATION_MODELS or name in _installed_models()


def unknown_model_message(name: str) -> str:
    hint = suggest_model(name)
    return (
        f"unknown architecture {name!r}"
        + (f"; did you mean {hint!r}?" if hint else "")
        + " Use a torchvision classification model name, e.g. 'resnet18'"
    )


def suggest_model(name: str) -> str | None:
    close = difflib.get_close_matches(name, KNOWN_CLASSIFICATION_MODELS, n=1, cutoff=0.6)
    return close[0] if close else None


@lru_cache(maxsize=1)
def _installed_models() -> frozenset[str]:
    try:
        import torchvision.models  # slow (imports torch): only reached for names not listed above
    except ImportError:
        return frozenset()
    return frozenset(torchvision.models.list_models(module=torchvision.models))
