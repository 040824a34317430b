"""Where each image of a loaded dataset came from, for messages that point at one image: its file
(every layout that lists image files: class folders, numbered folders, RAF-DB, a manifest; relative to
the data root) or its csv row (FER2013), per split, in the order the dataset holds them. FER+ gets
None (its majority vote leaves rows out), and its images are named by split and index.
numpy only, like all of raytrain.data: no torch, no ray.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from raytrain.data.datasets import FERDataset, carve_val
from raytrain.data.decode import FER_USAGE
from raytrain.data.sources import CsvSource, FolderSource, find_source


def image_origins(
    root: str | Path, dataset: FERDataset, val_fraction: float, class_names: list[str] | None = None
) -> dict[str, list[str]] | None:
    """split -> per image, `train/happy/0001.png` or `row 1234` (the csv's line, header = row 1).
    None for FER+, or where the files changed since `dataset` was loaded (the counts no longer
    match). `class_names`: data.class_names, as the dataset was loaded with."""
    source = find_source(Path(root).expanduser(), class_names)
    if isinstance(source, FolderSource) and dataset.layout == source.layout:
        listed = _folder_images(source, dataset.skipped)
    elif isinstance(source, CsvSource) and dataset.layout == "csv":
        listed = _csv_rows(source.root)
    else:
        return None
    if dataset.val_carved and "train" in listed:  # carved as load_dataset carves it
        uncarved = listed["train"]
        train, val = carve_val(np.array([label for _, label in uncarved], dtype=np.int64), val_fraction)
        listed["train"], listed["val"] = [uncarved[i] for i in train], [uncarved[i] for i in val]
    found = {split: [origin for origin, _ in listed.get(split, [])] for split in dataset.splits}
    if any(len(found[split]) != len(data) for split, data in dataset.splits.items()):
        return None
    return found


def _folder_images(source: FolderSource, skipped: tuple[str, ...]) -> dict[str, list[tuple[str, int]]]:
    """The files decode_source decoded, per split: every listed file less those `skipped` names."""
    paths = {str(path) for items in source.files.values() for path, _ in items}
    left_out = set()
    for line in skipped:  # "<path>: <why>"; a path may itself hold ": "
        cut = line.find(": ")
        while cut >= 0 and line[:cut] not in paths:
            cut = line.find(": ", cut + 1)
        if cut >= 0:
            left_out.add(line[:cut])
    return {
        split: [
            (Path(os.path.relpath(path, source.root)).as_posix(), label)
            for path, label in items
            if str(path) not in left_out
        ]
        for split, items in source.files.items()
    }


def _csv_rows(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Per split, each image's row number and emotion, numbered as decode's messages number them."""
    rows: dict[str, list[tuple[str, int]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        i_emotion = header.index("emotion")
        i_usage = header.index("usage") if "usage" in header else None
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            split = FER_USAGE.get(row[i_usage].strip().lower()) if i_usage is not None else "train"
            rows.setdefault(split, []).append((f"row {row_no}", int(row[i_emotion])))
    return rows
