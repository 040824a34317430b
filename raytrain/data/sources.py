"""Where a dataset is on disk and what it holds, before any pixel is read: image folders or a FER2013
csv, the split and class folder names, the canonical class names and their order, and DatasetError.

numpy and PIL only, like all of raytrain.data: it must not import torch or ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from raytrain.artifacts import DamagedRunsWarning
from raytrain.errors import UserError

CANONICAL_CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
# folder names seen in the wild -> canonical class; matched case-insensitively
CLASS_ALIASES = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class DatasetError(UserError):
    """A dataset that cannot be used; the message names the file or folder and the fix.
    A ValueError (through UserError), so the CLI prints it as one message with exit code 2."""


class DamagedDataWarning(DamagedRunsWarning):
    """Image files of a dataset that could not be decoded and were left out; the rest loads. A
    DamagedRunsWarning, so that the CLI prints it as damage under runs/ is: one line, no source line."""


@dataclass(frozen=True)
class FolderSource:
    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> [(image path, label)], in a stable order
    layout: ClassVar[str] = "folders"

    def fingerprint_entries(self) -> list:
        """What the cache key covers: every image's split, relative path, label, size and mtime."""
        entries = []
        for split, items in self.files.items():
            for path, label in items:
                st = path.stat()
                entries.append([split, path.relative_to(self.root).as_posix(), label, st.st_size, st.st_mtime_ns])
        return entries


@dataclass(frozen=True)
class CsvSource:
    root: Path  # the csv file itself
    layout: ClassVar[str] = "csv"

    @property
    def class_names(self) -> list[str]:
        return list(CANONICAL_CLASSES)

    def fingerprint_entries(self) -> list:
        """What the cache key covers: the csv's name, size and mtime."""
        st = self.root.stat()
        return [[self.root.name, st.st_size, st.st_mtime_ns]]


Source = FolderSource | CsvSource


def find_source(root: Path) -> Source:
    """The layout at `root`, with every image file listed; DatasetError names what does not fit."""
    layouts = "train/<class>/*.png (optional val/, test/) or a FER2013 csv (emotion,pixels,Usage)"
    if not root.exists():
        raise DatasetError(f"{root}: data root does not exist; pass a folder holding {layouts}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root}: not a folder or a .csv file; pass a folder holding {layouts}")
        return CsvSource(root.resolve())
    # list the images under the absolute root: the cache key holds each image's path relative to it,
    # and a relative `data` (as people type it) would not be relative to /abs/data
    root = root.resolve()
    split_dirs = _split_dirs(root)
    if "train" in split_dirs:
        return _scan_folders(root, split_dirs)
    csvs = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if len(csvs) == 1:
        return CsvSource(csvs[0])
    if len(csvs) > 1:
        names = ", ".join(p.name for p in csvs)
        raise DatasetError(f"{root}: holds {len(csvs)} csv files ({names}); pass the FER2013 csv file itself")
    raise DatasetError(f"{root}: no train/ folder and no csv file; expected {layouts}")


def _split_dirs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        split = _SPLIT_DIR_NAMES.get(entry.name.lower())
        if split is None or not entry.is_dir():
            continue
        if split in found:
            raise DatasetError(
                f"{root}: both {found[split].name}/ and {entry.name}/ look like the {split} split; keep one"
            )
        found[split] = entry
    return found


def canonical_class_name(folder_name: str) -> str:
    """`Fear` -> `fearful`; a name that is no FER class is kept as is (lower-cased)."""
    name = folder_name.strip().lower()
    return CLASS_ALIASES.get(name, name)


def class_order(names: set[str] | list[str]) -> list[str]:
    """Canonical FER order when every name is a FER class, else sorted: stable across machines."""
    if set(names) <= set(CANONICAL_CLASSES):
        return [c for c in CANONICAL_CLASSES if c in names]
    return sorted(names)


def _scan_folders(root: Path, split_dirs: dict[str, Path]) -> FolderSource:
    class_dirs = {split: _class_dirs(split_dirs[split]) for split in SPLIT_NAMES if split in split_dirs}
    train_classes = set(class_dirs["train"])
    for split, dirs in class_dirs.items():
        missing, extra = sorted(train_classes - set(dirs)), sorted(set(dirs) - train_classes)
        if missing or extra:
            what = "; ".join([f"missing {missing}"] * bool(missing) + [f"not in train: {extra}"] * bool(extra))
            raise DatasetError(
                f"{split_dirs[split]}: classes differ from {split_dirs['train']} ({what}); "
                "every split needs one folder per class, with the same class names"
            )
    class_names = class_order(train_classes)
    label_of = {name: i for i, name in enumerate(class_names)}
    files = {
        split: [(path, label_of[name]) for name in class_names for path in _images_in(dirs[name])]
        for split, dirs in class_dirs.items()
    }
    return FolderSource(root, class_names, files)


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for entry in sorted(split_dir.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        name = canonical_class_name(entry.name)
        if name in dirs:
            raise DatasetError(
                f"{split_dir}: {dirs[name].name}/ and {entry.name}/ are both the class {name!r}; "
                "merge them into one folder"
            )
        dirs[name] = entry
    if not dirs:
        raise DatasetError(f"{split_dir}: no class folders; put each class's images in {split_dir}/<class>/")
    return dirs


def _images_in(class_dir: Path) -> list[Path]:
    images = sorted(
        p
        for p in class_dir.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not images:
        raise DatasetError(
            f"{class_dir}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
        )
    return images
