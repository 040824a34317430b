"""What the data part of runs/<experiment>/provenance.json says: the layout, where the labels came
from, and a fingerprint of the decoded splits, so that one dataset under two paths matches and a
changed pixel or label does not. numpy only, like all of raytrain.data: no torch, no ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from raytrain.data.datasets import FERDataset

# Bump when what the fingerprint covers changes: the same data then gets another fingerprint, which
# `compare` would call different data.
FINGERPRINT_VERSION = 1


def dataset_fingerprint(dataset: FERDataset) -> str:
    """blake2b (128 bits, hex) of the class names and, split by split, every array a split holds
    (images, labels, and any other per-image array) with its dtype and shape: the data a trial
    trains and is scored on, whatever folder it was read from. About 0.1 s for FER2013's 83 MB."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([FINGERPRINT_VERSION, list(dataset.class_names)]).encode())
    for name, split in dataset.splits.items():
        for field in dataclasses.fields(split):
            value = getattr(split, field.name)
            if not isinstance(value, np.ndarray):
                continue
            array = np.ascontiguousarray(value)
            digest.update(json.dumps([name, field.name, array.dtype.str, array.shape]).encode())
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def data_provenance(dataset: FERDataset, dropped_duplicates: dict[str, int] | None = None) -> dict:
    """The "data" part of provenance.json for the dataset a trial gets (after the val carve and
    any duplicates left out, which `dropped_duplicates` counts per split)."""
    return {
        "root": dataset.source,
        "layout": dataset.layout,
        "label_source": dataset.label_source,
        "fingerprint": dataset_fingerprint(dataset),
        "class_names": list(dataset.class_names),
        "images": {name: len(split) for name, split in dataset.splits.items()},
        "image_size": list(dataset.image_size),
        "channels": dataset.channels,
        "val_carved": dataset.val_carved,
        "dropped_duplicates": dropped_duplicates,
        "notes": list(dataset.notes),
    }
