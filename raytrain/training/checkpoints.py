"""A trial's Tune checkpoints on their storage: where its best.pt is, and pruning once it is published.

A checkpoint folder holds state.pt (to continue training), checkpoint.json and the small artifacts
of the trial as of that epoch; best.pt only where the best epoch changed since the previous
checkpoint. A later checkpoint refers to that earlier best.pt instead of carrying a copy: the holder
is the newest sibling `checkpoint_*` folder whose checkpoint.json says it holds the best weights of
the same best epoch. Tune keeps the holder because the trainable ranks it highest
(naming.CHECKPOINT_RANK). checkpoint.json, not the presence of best.pt, decides: after a kill -9 Tune
can write a checkpoint into the folder of one it never registered, and files it does not overwrite
stay there.

Also when a trial saves (CheckpointCadence) and how Tune ranks its checkpoints (checkpoint_rank).
Everything here goes through the checkpoint's own pyarrow filesystem, so the same code serves a
local folder and a bucket (`--storage s3://...`). No torch and no Ray import: the driver prunes with it.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from raytrain import artifacts

STATE_FILE = "state.pt"  # the training state to continue from; never published
# what this folder is: {"epoch", "best_epoch", "holds_best_weights", "final"}, and "published"
# once the trial is in runs/ and its weights were pruned from here
INDEX_FILE = "checkpoint.json"
CHECKPOINT_PREFIX = "checkpoint_"  # how Tune names a trial's checkpoint folders


class Location:
    """One checkpoint folder on a pyarrow filesystem (what a tune.Checkpoint points at)."""

    def __init__(self, filesystem: pafs.FileSystem, path: str):
        self.filesystem, self.path = filesystem, path.rstrip("/")

    @classmethod
    def of(cls, checkpoint) -> Location:
        return cls(checkpoint.filesystem, checkpoint.path)

    def file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def has(self, name: str) -> bool:
        return self.filesystem.get_file_info(self.file(name)).type == pafs.FileType.File

    def read_bytes(self, name: str) -> bytes:
        with self.filesystem.open_input_stream(self.file(name)) as stream:
            return stream.read()

    def read_json(self, name: str):
        return json.loads(self.read_bytes(name))

    def siblings(self) -> list[Location]:
        """The trial's checkpoint folders, this one included, newest (highest index) first."""
        selector = pafs.FileSelector(posixpath.dirname(self.path), allow_not_found=True)
        folders = [
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.Directory and posixpath.basename(info.path).startswith(CHECKPOINT_PREFIX)
        ]
        return [Location(self.filesystem, p) for p in sorted(folders, key=posixpath.basename, reverse=True)]


def index(*, epoch: int, best_epoch: int, holds_best_weights: bool, final: bool = False) -> dict:
    # final: the trial's last checkpoint (its last epoch, or patience ran out)
    return {"epoch": epoch, "best_epoch": best_epoch, "holds_best_weights": holds_best_weights, "final": final}


def read_index(location: Location) -> dict | None:
    try:
        data = location.read_json(INDEX_FILE)
        return data if isinstance(data, dict) and {"best_epoch", "holds_best_weights"} <= data.keys() else None
    except (OSError, ValueError):
        return None


def best_weights_holder(location: Location) -> Location | None:
    """The checkpoint folder whose best.pt holds the best weights as of `location`, or None once
    the trial has been pruned (or the holder was lost)."""
    own = read_index(location)
    if own is None:  # written before checkpoint.json existed: every checkpoint carried its best.pt
        return location if location.has(artifacts.BEST_WEIGHTS) else None
    for candidate in [location, *location.siblings()]:
        found = own if candidate is location else read_index(candidate)
        if (
            found
            and found["holds_best_weights"]
            and found["best_epoch"] == own["best_epoch"]
            and candidate.has(artifacts.BEST_WEIGHTS)
        ):
            return candidate
    return None


@contextmanager
def trial_artifacts(checkpoint) -> Iterator[Path | None]:
    """A local folder with the trial's published artifacts as of `checkpoint`: its small files and
    the best.pt it refers to. Only these are fetched (never state.pt). None where best.pt is gone."""
    location = Location.of(checkpoint)
    holder = best_weights_holder(location)
    if holder is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="raytrain-publish-"))
    try:
        for name in artifacts.TRIAL_ARTIFACTS + artifacts.MEMBER_ARTIFACTS:
            source = holder if name == artifacts.BEST_WEIGHTS else location
            if source.has(name):
                _fetch(source, name, folder / name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fetch(location: Location, name: str, target: Path) -> None:
    if isinstance(location.filesystem, pafs.LocalFileSystem):
        try:  # a local checkpoint: a hard link costs no copy
            target.hardlink_to(location.file(name))
            return
        except OSError:
            pass
    pafs.copy_files(
        location.file(name),
        str(target),
        source_filesystem=location.filesystem,
        destination_filesystem=pafs.LocalFileSystem(),
    )


def prune_published(checkpoint) -> int:
    """Once a finished trial is whole in runs/<experiment>/: mark its latest checkpoint published,
    then delete its older checkpoint folders and the latest one's state.pt and best.pt. What is left
    (the latest folder's small artifacts, and the trial's result.json, params.json, progress.csv
    beside it) is what `compare`, `report` and `resume` read; best.pt is in runs/. Marking first
    means a kill -9 part-way leaves a trial that a restore recognises as finished (finished_history),
    whatever was deleted yet. Returns the bytes freed."""
    location = Location.of(checkpoint)
    _mark_published(location)
    fs, freed = location.filesystem, 0
    for sibling in location.siblings():
        if sibling.path != location.path:
            freed += _size(fs, sibling.path)
            fs.delete_dir(sibling.path)
    for name in (STATE_FILE, artifacts.BEST_WEIGHTS):
        info = fs.get_file_info(location.file(name))
        if info.type == pafs.FileType.File:
            freed += info.size or 0
            fs.delete_file(location.file(name))
    return freed


def _mark_published(location: Location) -> None:
    found = read_index(location)
    if found is None or found.get("published"):
        return  # from before checkpoint.json (nothing to mark), or marked by an earlier prune
    # written beside, then moved over: a torn checkpoint.json would hide what the folder is
    staged = location.file(INDEX_FILE + ".tmp")
    with location.filesystem.open_output_stream(staged) as stream:
        stream.write(json.dumps({**found, "published": True}).encode())
    location.filesystem.move(staged, location.file(INDEX_FILE))


def finished_history(checkpoint) -> list[dict] | None:
    """The epochs of a trial that had finished, from the small files of the checkpoint it would be
    restored from; None for a trial with epochs left to train. Tune can restore a finished trial
    once more: a driver killed before Tune's record of the trial's end reached the storage leaves the
    trial RUNNING in that record, whether or not it was published and pruned yet. Finished means the
    trial's own last checkpoint (`final`: its last epoch, or patience ran out), or a checkpoint
    marked published (a trial the scheduler stopped ends on one that is not final)."""
    given = Location.of(checkpoint)
    for location in [given, *(s for s in given.siblings() if s.path != given.path)]:
        found = read_index(location)
        if found is None:
            continue  # deleted since Tune recorded it, or from before checkpoint.json
        if not (found.get("final") or found.get("published")):
            return None
        try:
            return location.read_json(artifacts.HISTORY)
        except (OSError, ValueError):
            return None
    return None


def _size(fs: pafs.FileSystem, path: str) -> int:
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)


def checkpoint_rank(best_epoch: int, *, holds_best_weights: bool) -> float:
    return best_epoch if holds_best_weights else best_epoch - 0.5


class CheckpointCadence:
    """When a trial saves its whole training state: every `epochs` epochs and/or every `minutes`
    minutes since the last save, whichever comes first (other.checkpoint_epochs / _minutes), and at
    each epoch of `also_at` (where the sweep's scheduler may stop the trial). The trainable saves
    its final epoch too.

    The best epoch needs no save of its own (saving each would save most early epochs): its weights
    wait in memory for the next checkpoint, and a trial that crashes before then trains the lost
    epochs again from the last one, each seeded by its number as before. Every way a trial ends is
    a checkpoint: its final epoch, or a decision epoch of the scheduler.
    """

    def __init__(self, epochs: int | None, minutes: float | None, *, also_at=(), clock=time.monotonic):
        self.epochs, self.minutes, self.also_at, self.clock = epochs, minutes, frozenset(also_at), clock
        self.last_epoch, self.last_time = 0, clock()

    def due(self, epoch: int) -> bool:
        by_epochs = self.epochs is not None and epoch - self.last_epoch >= self.epochs
        by_time = self.minutes is not None and self.clock() - self.last_time >= self.minutes * 60
        return by_epochs or by_time or epoch in self.also_at

    def saved(self, epoch: int) -> None:
        """The state as of `epoch` is in a checkpoint (just written, or restored from)."""
        self.last_epoch, self.last_time = epoch, self.clock()
