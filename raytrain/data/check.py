"""`raytrain data check`: load a dataset as a sweep would, count its classes per split, and list what
makes its scores less trustworthy (missing or tiny classes, train images copied into val/test exactly
or nearly: duplicates.py, blanks). numpy only, like all of raytrain.data: it must not import torch or ray.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raytrain.data.datasets import FERDataset, class_counts, load_dataset
from raytrain.data.duplicates import Duplicates, find_duplicates, write_contact_sheet
from raytrain.data.origins import image_origins
from raytrain.data.sources import LAYOUT_NAMES, DamagedDataWarning
from raytrain.errors import UserError

# below this many train images a class's F1 swings by whole points between seeds
MIN_TRAIN_PER_CLASS = 10
# max/min train count above which the report suggests class weights or the weighted sampler
IMBALANCE_HINT = 10.0
# undecodable files named one per line, the rest counted: a folder of 30,000 broken files stays readable
MAX_LISTED_FILES = 20


@dataclass(frozen=True)
class DatasetReport:
    """Classes, per-split counts, image shape and the problems `check_dataset` found."""

    source: str
    layout: str
    label_source: str
    class_names: list[str]
    counts: dict[str, list[int]]  # split -> images per class, in class_names order
    image_size: tuple[int, int]  # (height, width)
    channels: int
    val_carved: bool
    imbalance_ratio: float  # max/min train count; inf when a class has no train images
    problems: list[str]
    notes: list[str]
    duplicates: list[str]  # the duplicates' counts and examples, as printed (Duplicates.format)
    duplicates_sheet: str | None = None  # the contact sheet of the examples, when one was written

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        splits = list(self.counts)
        carved = " (carved from train, fixed seed)" if self.val_carved else ""
        colour = "grayscale" if self.channels == 1 else "RGB"
        lines = [
            f"data:    {self.source} ({LAYOUT_NAMES[self.layout]})",
            f"labels:  {self.label_source}",
            f"images:  {self.image_size[0]}x{self.image_size[1]}, {self.channels} channel(s) ({colour})",
            f"splits:  {', '.join(splits)}{carved}",
            "",
        ]
        width = max(len("class"), *(len(c) for c in self.class_names))
        lines.append(f"{'class':<{width}}" + "".join(f"{s:>8}" for s in splits))
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{width}}" + "".join(f"{self.counts[s][i]:>8}" for s in splits))
        lines.append(f"{'total':<{width}}" + "".join(f"{sum(self.counts[s]):>8}" for s in splits))
        lines += ["", f"imbalance (max/min train count): {self.imbalance_ratio:.1f}", ""]
        lines += self.duplicates
        if self.duplicates_sheet:
            lines.append(f"  the examples side by side: {self.duplicates_sheet}")
        lines += [f"note: {note}" for note in self.notes]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem(s):"] + [f"  - {p}" for p in self.problems]
        else:
            lines += ["", "no problems found"]
        return "\n".join(lines)


def check_dataset(
    root: str | Path,
    *,
    channels: int = 1,
    val_fraction: float = 0.1,
    workers: int = 4,
    cache_dir: str | Path | None = None,
    class_names: list[str] | None = None,
    duplicates_sheet: str | Path | None = None,
    force: bool = False,
) -> DatasetReport:
    """Load `root` as a sweep would (so it also fills the cache) and report on it.

    Errors that make the data unusable raise DatasetError; things that make results less
    trustworthy (image files that could not be decoded, a split missing a class, tiny classes,
    train images copied into val/test, blank images) are listed in `problems`. With
    `duplicates_sheet`, the example duplicate pairs are drawn side by side into that PNG (an
    existing file only with `force`).
    """
    if duplicates_sheet and Path(duplicates_sheet).exists() and not force:
        raise UserError(f"{duplicates_sheet}: already exists; choose another --duplicates-sheet or pass --force")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedDataWarning)  # listed in full below, not warned about
        dataset = load_dataset(
            root,
            channels=channels,
            val_fraction=val_fraction,
            workers=workers,
            cache_dir=cache_dir,
            class_names=class_names,
        )
    k = dataset.num_classes
    counts = {name: class_counts(split.labels, k).tolist() for name, split in dataset.splits.items()}
    train = counts["train"]
    ratio = max(train) / min(train) if min(train) > 0 else math.inf
    found = find_duplicates(dataset)
    problems = (
        _undecodable_problems(dataset.skipped)
        + _missing_class_problems(dataset.class_names, counts)
        + _small_class_problems(dataset.class_names, train)
        + _copy_problems(found)
        + _blank_problems(dataset)
    )
    notes = list(dataset.notes) + _copy_notes(found)
    if ratio > IMBALANCE_HINT:
        notes.append(
            f"train is imbalanced ({ratio:.1f}x); keep loss.use_class_weights: true or try data.weighted_sampler: true"
        )
    return DatasetReport(
        source=dataset.source,
        layout=dataset.layout,
        label_source=dataset.label_source,
        class_names=dataset.class_names,
        counts=counts,
        image_size=dataset.image_size,
        channels=dataset.channels,
        val_carved=dataset.val_carved,
        imbalance_ratio=ratio,
        problems=problems,
        notes=notes,
        duplicates=found.format(image_origins(root, dataset, val_fraction, class_names) if found.examples else None),
        duplicates_sheet=_sheet(dataset, found, duplicates_sheet),
    )


def _undecodable_problems(skipped: tuple[str, ...]) -> list[str]:
    if not skipped:
        return []
    listed = "".join(f"\n      {line}" for line in skipped[:MAX_LISTED_FILES])
    if len(skipped) > MAX_LISTED_FILES:
        listed += f"\n      ... and {len(skipped) - MAX_LISTED_FILES} more"
    return [f"{len(skipped)} image file(s) could not be decoded and were left out:{listed}"]


def _missing_class_problems(class_names: list[str], counts: dict[str, list[int]]) -> list[str]:
    problems = []
    for split, per_class in counts.items():
        for name, n in zip(class_names, per_class):
            if n == 0:
                why = "the model never sees it" if split == "train" else f"its {split} scores are undefined"
                problems.append(f"{split}: no images of class {name!r} ({why}); add some")
    return problems


def _small_class_problems(class_names: list[str], train_counts: list[int]) -> list[str]:
    return [
        f"train: class {name!r} has only {n} images (< {MIN_TRAIN_PER_CLASS}); its scores will be noisy, add more"
        for name, n in zip(class_names, train_counts)
        if 0 < n < MIN_TRAIN_PER_CLASS
    ]


def _copy_problems(found: Duplicates) -> list[str]:
    problems = []
    for split in ("val", "test"):
        count = found.counts.get(("train", split))
        if count and count.exact_images + count.near_images:
            problems.append(
                f"{split}: {count.exact_images} images are exact copies of train images and {count.near_images} near "
                f"copies; {split} scores will be optimistic (data.drop_cross_split_duplicates: true leaves them out "
                "of a sweep)"
            )
    return problems


def _copy_notes(found: Duplicates) -> list[str]:
    notes = []
    count = found.counts.get(("val", "test"))
    if count and count.exact_images + count.near_images:
        notes.append(
            f"{count.exact_images + count.near_images} test images are exact or near copies of val images: the "
            "model chosen on val has in effect been selected on them"
        )
    for split in ("train", "val", "test"):
        count = found.counts.get((split, split))
        if count and count.exact_images + count.near_images:
            notes.append(
                f"{split}: {count.exact_images + count.near_images} images have an exact or near copy elsewhere in "
                f"{split}, which weighs them twice"
            )
    return notes


def _sheet(dataset: FERDataset, found: Duplicates, path: str | Path | None) -> str | None:
    if not path or not found.examples:
        return None  # nothing to draw: the report's counts say there are no copies
    return str(write_contact_sheet(dataset, found.examples, Path(path)))


def _blank_problems(dataset: FERDataset) -> list[str]:
    problems = []
    for split, data in dataset.splits.items():
        flat = data.images.reshape(len(data), -1)
        blank = int(np.count_nonzero(flat.min(axis=1) == flat.max(axis=1)))
        if blank:
            problems.append(f"{split}: {blank} images are a single flat colour (blank); remove them")
    return problems
