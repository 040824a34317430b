"""Datasets on disk -> decoded uint8 arrays: layout detection (`sources`), decoding (`decode`), the
cache (`cache`), the val carve and class weights (`datasets`), `data check` (`check`), and procedural
FER-like faces (`synthetic`).

numpy and PIL only: no torch, no ray (`make lint` checks), so decoding workers start in a fraction of
a second and a dataset pickles into Ray's object store as plain arrays. Batch augmentation runs on
the trial's device, with torch: it is training.augment.
"""

from raytrain.data.cache import default_cache_dir
from raytrain.data.check import DatasetReport, check_dataset
from raytrain.data.datasets import (
    SPLIT_SEED,
    FERDataset,
    Split,
    carve_val,
    class_counts,
    class_weights,
    load_dataset,
    sampler_weights,
)
from raytrain.data.sources import CANONICAL_CLASSES, DamagedDataWarning, DatasetError
from raytrain.data.synthetic import generate_synthetic

__all__ = [
    "CANONICAL_CLASSES",
    "SPLIT_SEED",
    "DamagedDataWarning",
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
]
