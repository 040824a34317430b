"""The data layer: datasets on disk -> cached uint8 arrays (`datasets`), batch augmentation on the
trial's device (`augment`) and procedural FER-like faces (`synthetic`).

`augment` imports torch, so its names load on first use: decoding worker processes import this
package and should start in a fraction of a second, not pay for torch.
"""

from raytrain.data.datasets import (
    CANONICAL_CLASSES,
    SPLIT_SEED,
    DatasetError,
    DatasetReport,
    FERDataset,
    Split,
    carve_val,
    check_dataset,
    class_counts,
    class_weights,
    default_cache_dir,
    load_dataset,
    sampler_weights,
)
from raytrain.data.synthetic import generate_synthetic

_AUGMENT_NAMES = ("BatchAugmenter", "normalization", "GRAY_MEAN", "GRAY_STD", "RGB_MEAN", "RGB_STD")

__all__ = [
    "CANONICAL_CLASSES",
    "SPLIT_SEED",
    "DatasetError",
    "DatasetReport",
    "FERDataset",
    "Split",
    "carve_val",
    "check_dataset",
    "class_counts",
    "class_weights",
    "default_cache_dir",
    "generate_synthetic",
    "load_dataset",
    "sampler_weights",
    *_AUGMENT_NAMES,
]


def __getattr__(name: str):
    if name in _AUGMENT_NAMES:
        from raytrain.data import augment

        return getattr(augment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
