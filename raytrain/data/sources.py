"""Where a dataset is on disk and what it holds, before any pixel is read: which layout `--data-root`
holds (image folders, numbered class folders, the FER2013 csv, FER+, RAF-DB basic, a manifest csv),
every image file with its split and label, the canonical class names and their order, DatasetError.

numpy and PIL only, like all of raytrain.data: it must not import torch or ray.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from raytrain.artifacts import DamagedRunsWarning
from raytrain.errors import UserError

# FER2013's seven, in the order of its `emotion` column (0 = angry ... 6 = neutral)
CANONICAL_CLASSES = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
# FER+ and AffectNet add contempt. It comes after the seven, so a class index means the same in a
# 7-class and an 8-class dataset. Named as every dataset names it ("contemptuous" is an alias).
CONTEMPT = "contempt"
EMOTION_CLASSES = (*CANONICAL_CLASSES, CONTEMPT)
# class names seen in the wild (folders, FER+ columns, manifests) -> canonical class; case-insensitive
CLASS_ALIASES = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
    "contemptuous": CONTEMPT,
}
# AffectNet's numbered folders 0-7: the names numbered class folders get unless data.class_names says otherwise
AFFECTNET_CLASSES = ("neutral", "happy", "sad", "surprised", "fearful", "disgusted", "angry", CONTEMPT)
# RAF-DB basic: list_patition_label.txt's labels 1-7 (Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral)
RAFDB_CLASSES = ("surprised", "fearful", "disgusted", "happy", "sad", "angry", "neutral")
RAFDB_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"  # "patition": RAF-DB's own spelling
RAFDB_IMAGE_DIRS = (Path("Image") / "aligned", Path("Image") / "original")  # aligned first: what baselines use
# FER+ (fer2013new.csv): Usage, Image name, then votes of 10 annotators per image in these columns
FERPLUS_EMOTION_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_OTHER_COLUMNS = ("unknown", "nf")  # no emotion the annotator could name; not a face
FERPLUS_COLUMNS = ("usage", "image name", *FERPLUS_EMOTION_COLUMNS, *FERPLUS_OTHER_COLUMNS)
# a manifest is a csv with exactly these columns (any order, any case); split is optional
MANIFEST_COLUMNS = ("path", "label")
MANIFEST_OPTIONAL_COLUMNS = ("split",)

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# each layout's name (FERDataset.layout) -> what `data check` calls it
LAYOUT_NAMES = {
    "folders": "image folders",
    "numbered_folders": "numbered class folders",
    "csv": "FER2013 csv",
    "ferplus": "FER+: fer2013.csv pixels, fer2013new.csv votes",
    "rafdb": "RAF-DB basic",
    "manifest": "manifest csv",
}
_LAYOUTS_HINT = (
    "train/<class>/*.png (optional val/, test/), a FER2013 csv (emotion,pixels,Usage), FER+ (fer2013new.csv "
    f"beside fer2013.csv), RAF-DB basic ({RAFDB_LABEL_FILE.as_posix()} and Image/aligned/) or a manifest csv "
    "(path,label[,split])"
)


class DatasetError(UserError):
    """A dataset that cannot be used; the message names the file or folder and the fix.
    A ValueError (through UserError), so the CLI prints it as one message with exit code 2."""


class DamagedDataWarning(DamagedRunsWarning):
    """Image files of a dataset that could not be decoded and were left out; the rest loads. A
    DamagedRunsWarning, so that the CLI prints it as damage under runs/ is: one line, no source line."""


@dataclass(frozen=True)
class FolderSource:
    """Image files, each with its split and label: class folders, numbered class folders, RAF-DB and
    a manifest all list their images this way, and decode alike."""

    root: Path
    class_names: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> [(image path, label)], in a stable order
    layout: str = "folders"
    label_file: Path | None = None  # where the labels are written (RAF-DB's list, the manifest), if not in folder names
    label_source: str = "class folder names"
    notes: tuple[str, ...] = ()  # what `data check` should say about how the files were read

    def fingerprint_entries(self) -> list:
        """What the cache key covers: the label file's size and mtime, and every image's split, path
        (relative to the root; a manifest may point outside it), label, size and mtime."""
        entries = []
        if self.label_file is not None:
            st = self.label_file.stat()
            entries.append([os.path.relpath(self.label_file, self.root), st.st_size, st.st_mtime_ns])
        for split, items in self.files.items():
            for path, label in items:
                st = path.stat()
                entries.append([split, os.path.relpath(path, self.root), label, st.st_size, st.st_mtime_ns])
        return entries


@dataclass(frozen=True)
class CsvSource:
    root: Path  # the csv file itself
    layout: ClassVar[str] = "csv"
    label_source: ClassVar[str] = "the emotion column"
    notes: ClassVar[tuple[str, ...]] = ()

    @property
    def class_names(self) -> list[str]:
        return list(CANONICAL_CLASSES)

    def fingerprint_entries(self) -> list:
        """What the cache key covers: the csv's name, size and mtime."""
        st = self.root.stat()
        return [[self.root.name, st.st_size, st.st_mtime_ns]]


@dataclass(frozen=True)
class FerPlusSource:
    """FER+: the FER2013 csv's pixels, relabelled row by row by the vote counts in fer2013new.csv."""

    root: Path  # the folder holding both files
    pixels: Path  # fer2013.csv
    votes: Path  # fer2013new.csv
    layout: ClassVar[str] = "ferplus"
    notes: ClassVar[tuple[str, ...]] = ()

    @property
    def class_names(self) -> list[str]:
        return class_order([canonical_class_name(c) for c in FERPLUS_EMOTION_COLUMNS])

    @property
    def label_source(self) -> str:
        return f"{self.votes.name} votes"

    def fingerprint_entries(self) -> list:
        """What the cache key covers: both csvs' names, sizes and mtimes."""
        return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in (self.pixels, self.votes)]


Source = FolderSource | CsvSource | FerPlusSource


def find_source(root: Path, class_names: list[str] | None = None) -> Source:
    """The layout at `root`, with every image file listed; DatasetError names what does not fit.

    `class_names` (data.class_names) names numbered class folders 0, 1, ...; any other layout names
    its own classes, and giving it names is an error.
    """
    source = _find_source(root, class_names)
    if class_names is not None and source.layout != "numbered_folders":
        raise DatasetError(
            f"{source.root}: data.class_names names numbered class folders (train/0/, train/1/, ...), but this is "
            f"{LAYOUT_NAMES[source.layout]}, which names its classes itself; remove data.class_names"
        )
    return source


def _find_source(root: Path, class_names: list[str] | None) -> Source:
    if not root.exists():
        raise DatasetError(f"{root}: data root does not exist; pass a folder holding {_LAYOUTS_HINT}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root}: not a folder or a .csv file; pass a folder holding {_LAYOUTS_HINT}")
        return _csv_file_source(root.resolve())
    # list the images under the absolute root: the cache key holds each image's path relative to it,
    # and a relative `data` (as people type it) would not be relative to /abs/data
    root = root.resolve()
    if (root / RAFDB_LABEL_FILE).is_file():
        return _scan_rafdb(root)
    csvs = _csvs_in(root)
    manifests = [p.name for p, kind in csvs.items() if kind == "manifest"]
    split_dirs = _split_dirs(root)
    if "train" in split_dirs:
        if manifests:
            raise DatasetError(
                f"{root}: holds both train/ folders and a manifest csv ({', '.join(manifests)}); pass the manifest "
                f"itself (--data-root {root / manifests[0]}) to use it, or move it out of {root} to use the folders"
            )
        return _scan_folders(root, split_dirs, class_names)
    votes = [p for p, kind in csvs.items() if kind == "ferplus"]
    if votes and manifests:
        raise DatasetError(
            f"{root}: holds both FER+ votes ({votes[0].name}) and a manifest csv ({manifests[0]}); pass the one to "
            "use as --data-root"
        )
    if votes:
        return _ferplus_source(root, votes, csvs)
    if len(csvs) == 1:
        return _csv_file_source(next(iter(csvs)))
    if len(csvs) > 1:
        names = ", ".join(p.name for p in csvs)
        raise DatasetError(
            f"{root}: holds {len(csvs)} csv files ({names}); pass the FER2013 csv file itself, or the manifest"
        )
    raise DatasetError(f"{root}: no train/ folder and no csv file; expected {_LAYOUTS_HINT}")


# ---------------------------------------------------------------------------------------------------
# Csv files: told apart by their header.


def csv_header(path: Path) -> list[str]:
    """The first row of a csv, stripped and lower-cased; [] for an empty or unreadable file (whose
    reader then says what is wrong with it)."""
    try:
        # utf-8-sig: a csv saved by Excel or Windows tools starts with a BOM, which would stick to the first name
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip().lower() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def csv_kind(path: Path) -> str:
    """ "manifest" (its header is path,label[,split]), "ferplus" (fer2013new.csv's columns) or "fer2013"
    (anything else: the FER2013 csv's reader names what its header lacks)."""
    header = csv_header(path)
    columns = set(header)
    if len(columns) == len(header) and set(MANIFEST_COLUMNS) <= columns <= {
        *MANIFEST_COLUMNS,
        *MANIFEST_OPTIONAL_COLUMNS,
    }:
        return "manifest"
    if set(FERPLUS_COLUMNS) <= columns:
        return "ferplus"
    return "fer2013"


def _csvs_in(folder: Path) -> dict[Path, str]:
    """Every csv file in `folder` (not below it), sorted, with its kind."""
    return {p: csv_kind(p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() == ".csv"}


def _csv_file_source(path: Path) -> Source:
    kind = csv_kind(path)
    if kind == "manifest":
        return _scan_manifest(path)
    if kind == "ferplus":
        return _ferplus_source(path.parent, [path], _csvs_in(path.parent))
    # the FER2013 csv, also when a fer2013new.csv lies beside it: the file named is the labels wanted
    return CsvSource(path)


def _ferplus_source(root: Path, votes: list[Path], csvs: dict[Path, str]) -> FerPlusSource:
    """FER+ from its vote file and the FER2013 csv beside it: fer2013.csv by name, else the one csv
    there that is not a manifest or another vote file."""
    if len(votes) > 1:
        names = ", ".join(p.name for p in votes)
        raise DatasetError(f"{root}: holds {len(votes)} FER+ vote files ({names}); keep one (fer2013new.csv)")
    candidates = [p for p, kind in csvs.items() if kind == "fer2013"]
    named = [p for p in candidates if p.name.lower() == "fer2013.csv"]
    if named or len(candidates) == 1:
        return FerPlusSource(root, (named or candidates)[0], votes[0])
    if not candidates:
        raise DatasetError(
            f"{votes[0]}: FER+ vote counts, but no FER2013 csv (emotion,pixels,Usage) beside it to take the pixels "
            f"from; put fer2013.csv in {root}"
        )
    names = ", ".join(p.name for p in candidates)
    raise DatasetError(
        f"{root}: FER+ votes in {votes[0].name}, and {len(candidates)} csv files that could hold the pixels ({names}); "
        "name the FER2013 one fer2013.csv"
    )


# ---------------------------------------------------------------------------------------------------
# Class names and their order.


def canonical_class_name(folder_name: str) -> str:
    """`Fear` -> `fearful`; a name that is no FER class is kept as is (lower-cased)."""
    name = folder_name.strip().lower()
    return CLASS_ALIASES.get(name, name)


def class_order(names: set[str] | list[str]) -> list[str]:
    """The emotions' order (FER2013's seven, then contempt) when every name is an emotion, else
    sorted: stable across machines, and the same index for a class in every emotion dataset."""
    if set(names) <= set(EMOTION_CLASSES):
        return [c for c in EMOTION_CLASSES if c in names]
    return sorted(set(names))


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class (it becomes part of metric names such as val/f1/<class>), or None."""
    if not name:
        return "is empty"
    if "/" in name:
        return f"{name!r} holds a '/', which separates the parts of metric names (val/f1/<class>)"
    return None


# ---------------------------------------------------------------------------------------------------
# Class folders: named (train/happy/) or numbered (train/0/).


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


def _scan_folders(root: Path, split_dirs: dict[str, Path], class_names: list[str] | None) -> FolderSource:
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
    numbered = all(re.fullmatch(r"[0-9]+", folder) for folder in train_classes)
    if numbered:
        name_of, note = _numbered_names(split_dirs["train"], train_classes, class_names)
    else:
        name_of, note = {folder: folder for folder in train_classes}, None
    names = class_order(set(name_of.values()))
    label_of = {folder: names.index(name) for folder, name in name_of.items()}
    folders = sorted(train_classes, key=label_of.__getitem__)
    files = {
        split: [(path, label_of[folder]) for folder in folders for path in _images_in(dirs[folder])]
        for split, dirs in class_dirs.items()
    }
    if not numbered:
        return FolderSource(root, names, files)
    return FolderSource(root, names, files, "numbered_folders", label_source="class folder numbers", notes=(note,))


def _numbered_names(train_dir: Path, folders: set[str], class_names: list[str] | None) -> tuple[dict[str, str], str]:
    """{folder: class name} for numbered class folders, and a note saying where the names came from:
    AffectNet's order by default, else data.class_names (one name per folder, in number order)."""
    numbers = {folder: int(folder) for folder in sorted(folders, key=lambda f: (int(f), f))}
    seen: dict[int, str] = {}
    for folder, number in numbers.items():
        if number in seen:
            raise DatasetError(f"{train_dir}: {seen[number]}/ and {folder}/ are both class {number}; merge them")
        seen[number] = folder
    if class_names is None:
        unnamed = [folder for folder, number in numbers.items() if number >= len(AFFECTNET_CLASSES)]
        if unnamed:
            raise DatasetError(
                f"{train_dir / unnamed[0]}: numbered class folder {unnamed[0]} has no name in AffectNet's order "
                f"(0-{len(AFFECTNET_CLASSES) - 1}); name every folder with data.class_names: [name of 0, ...]"
            )
        named = ", ".join(f"{number} {AFFECTNET_CLASSES[number]}" for number in numbers.values())
        note = f"numbered class folders named in AffectNet's order ({named}); data.class_names names them otherwise"
        return {folder: AFFECTNET_CLASSES[number] for folder, number in numbers.items()}, note
    if sorted(numbers.values()) != list(range(len(class_names))):
        raise DatasetError(
            f"{train_dir}: data.class_names has {len(class_names)} names for {len(numbers)} numbered class folders "
            f"({', '.join(numbers)}); give one name per folder, for folders numbered 0 to {len(class_names) - 1}"
        )
    canonical = [canonical_class_name(name) for name in class_names]
    for i, name in enumerate(canonical):
        problem = class_name_problem(name)
        if problem:
            raise DatasetError(f"{train_dir}: data.class_names[{i}] {problem}; rename it")
        if name in canonical[:i]:
            raise DatasetError(
                f"{train_dir}: data.class_names gives folders {canonical.index(name)} and {i} the same class {name!r}; "
                "give each folder its own name"
            )
    named = ", ".join(f"{number} {canonical[number]}" for number in numbers.values())
    note = f"class folders named by data.class_names ({named})"
    return {folder: canonical[number] for folder, number in numbers.items()}, note


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


# ---------------------------------------------------------------------------------------------------
# Label files: RAF-DB's list and a manifest csv. A bad line is an error naming the file and the line.


def _scan_rafdb(root: Path) -> FolderSource:
    """RAF-DB basic: `<image> <label>` lines, the split in the image name's prefix (train_, test_)."""
    label_file = root / RAFDB_LABEL_FILE
    image_dir = next((root / d for d in RAFDB_IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise DatasetError(
            f"{root}: RAF-DB labels in {RAFDB_LABEL_FILE.as_posix()}, but no Image/aligned/ or Image/original/ "
            "folder; put the images (train_00001_aligned.jpg or train_00001.jpg) in one of them"
        )
    aligned = image_dir.name == "aligned"
    present = {p.name for p in image_dir.iterdir()}  # one listing, not a stat per line
    rafdb_names = [canonical_class_name(c) for c in RAFDB_CLASSES]
    names = class_order(rafdb_names)
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    first_line_of: dict[str, int] = {}
    for line_no, line in enumerate(_read_lines(label_file), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_file}: line {line_no}"
        if len(fields) != 2:
            raise DatasetError(f"{where}: expected '<image> <label>' such as 'train_00001.jpg 5', got {line.strip()!r}")
        image, label = fields
        split = image.split("_", 1)[0].lower()
        if split not in files:
            raise DatasetError(
                f"{where}: {image!r} starts with neither train_ nor test_, which is how RAF-DB names the split"
            )
        if not (label.isdigit() and 1 <= int(label) <= len(RAFDB_CLASSES)):
            raise DatasetError(f"{where}: label must be 1-7 (1 surprise, 2 fear, ... 7 neutral), got {label!r}")
        if image in first_line_of:
            raise DatasetError(
                f"{where}: {image} is listed again (first on line {first_line_of[image]}); keep one line"
            )
        first_line_of[image] = line_no
        # aligned/ names its files train_00001_aligned.jpg; some copies drop the suffix
        stem, suffix = os.path.splitext(image)
        found = next((n for n in ([f"{stem}_aligned{suffix}"] if aligned else []) + [image] if n in present), None)
        if found is None:
            expected = f"{stem}_aligned{suffix}" if aligned else image
            raise DatasetError(f"{where}: no image {image_dir / expected}; restore it or remove the line")
        files[split].append((image_dir / found, names.index(rafdb_names[int(label) - 1])))
    if not files["train"]:
        raise DatasetError(f"{label_file}: lists no train_ images; RAF-DB basic lists train_ and test_ images")
    # sorted by file name: a stable order whatever order the list has
    files = {split: sorted(items) for split, items in files.items() if items}
    note = f"RAF-DB images from {image_dir.relative_to(root).as_posix()}/"
    if aligned and (root / RAFDB_IMAGE_DIRS[1]).is_dir():
        note += f" (not {RAFDB_IMAGE_DIRS[1].as_posix()}/: aligned faces are what RAF-DB baselines train on)"
    label_source = RAFDB_LABEL_FILE.as_posix()
    return FolderSource(root, names, files, "rafdb", label_file, label_source, notes=(note,))


def _scan_manifest(path: Path) -> FolderSource:
    """A csv of path,label[,split]: paths relative to the manifest's folder, labels class names, split
    train, val or test (empty or no column: train, and val is carved from it)."""
    rows: list[tuple[str, Path, str]] = []  # (split, image, class name)
    first_line_of: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns = {name.strip().lower(): i for i, name in enumerate(next(reader))}
            for row in reader:
                if any(cell.strip() for cell in row):
                    where = f"{path}: line {reader.line_num}"
                    split, image, label = _manifest_row(where, row, columns, path.parent)
                    key = os.path.normpath(image)
                    if key in first_line_of:
                        raise DatasetError(
                            f"{where}: {image} is listed again (first on line {first_line_of[key]}); keep one line"
                        )
                    first_line_of[key] = reader.line_num
                    rows.append((split, image, label))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: not a readable csv ({err}); a manifest is UTF-8 text") from None
    if not any(split == "train" for split, _, _ in rows):
        raise DatasetError(f"{path}: no train rows; give rows the split train (or leave split empty)")
    names = class_order({name for _, _, name in rows})
    files = {
        split: [(image, names.index(name)) for s, image, name in rows if s == split]
        for split in SPLIT_NAMES
        if any(s == split for s, _, _ in rows)
    }
    return FolderSource(path.parent, names, files, "manifest", path, f"{path.name} label column")


def _manifest_row(where: str, row: list[str], columns: dict[str, int], root: Path) -> tuple[str, Path, str]:
    """(split, image path, class name) of one manifest row; `where` names its file and line."""
    if len(row) != len(columns):
        raise DatasetError(f"{where}: {len(row)} fields, the header ({','.join(columns)}) has {len(columns)}")
    relative, label = row[columns["path"]].strip(), canonical_class_name(row[columns["label"]])
    if not relative:
        raise DatasetError(f"{where}: path is empty; give the image's path relative to {root}")
    problem = class_name_problem(label)
    if problem:
        raise DatasetError(f"{where}: label {problem}; give the class name")
    split = "train"
    given = row[columns["split"]].strip() if "split" in columns else ""
    if given:
        split = _SPLIT_DIR_NAMES.get(given.lower())
        if split is None:
            raise DatasetError(f"{where}: split must be train, val or test (empty: train), got {given!r}")
    image = root / relative
    if not image.is_file():
        raise DatasetError(f"{where}: no image {image}; fix the path (relative to {root}) or remove the line")
    return split, image, label


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not a text file ({err}); RAF-DB's label list is plain text") from None
