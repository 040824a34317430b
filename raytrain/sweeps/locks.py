"""One writer per sweep and per experiment in a runs folder, however many commands run at once.

A command that runs a sweep holds runs/_tune/<sweep>.lock: an flock, which the kernel drops when the
holder ends, however it ends (kill -9 too), so a stale lock is simply free again and nothing waits on
a dead process. The file names its holder (PID, host, start) and the experiments it claims; a
second command on the same sweep is refused with that, and a sweep that plans an experiment a live
sweep has claimed leaves it out. Claims are taken, and publishes made, under runs/_tune/runs.lock,
held for milliseconds, so two commands starting together cannot both claim an experiment, and two
publishes into one experiment's folder never interleave.

flock is per machine and per file system that supports it (local disks; NFS v4 through fcntl
locks): two drivers on two machines sharing one runs folder over a file system without locks are not
kept apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from raytrain import artifacts
from raytrain.sweeps.settings import SweepError

LOCK_SUFFIX = ".lock"
RUNS_LOCK = "runs.lock"  # runs/_tune/runs.lock: taking claims and publishing, briefly


class SweepBusy(SweepError):
    """The sweep, or an experiment it plans, is being run by another command right now."""


@dataclass
class Holder:
    """Who holds a sweep's lock, as its file says."""

    pid: int | None = None
    host: str = "?"
    since: str = "?"
    experiments: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, since {self.since}"


def lock_file(runs_dir: Path, sweep: str) -> Path:
    return artifacts.within(Path(runs_dir) / artifacts.TUNE_DIR, f"{sweep}{LOCK_SUFFIX}")


@contextmanager
def runs_folder_lock(runs_dir: Path) -> Iterator[None]:
    """The runs folder's own short lock: claims are checked and taken, and experiments published,
    by one command at a time."""
    path = Path(runs_dir) / artifacts.TUNE_DIR / RUNS_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # blocks: every holder keeps it for milliseconds
        yield


class SweepLock:
    """Held for as long as this command runs the sweep; released on exit, or by the kernel."""

    def __init__(self, path: Path, file, refused: dict[str, Holder], previous: Holder | None):
        self.path = path
        self._file = file
        self.refused = refused  # experiments it planned that another live sweep holds
        self.previous = previous  # the holder of a lock left behind by a process that died

    def release(self) -> None:
        if self._file.closed:
            return
        self._file.truncate(0)  # empty: the next holder knows it was released, not abandoned
        self._file.close()

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold_sweep(runs_dir: Path, sweep: str, experiments: list[str], *, force: bool = False) -> SweepLock:
    """Take sweep `sweep`'s lock and claim `experiments` for it, or raise SweepBusy if another
    command holds the sweep. An experiment another live sweep claims is left out (SweepLock.refused)
    unless `force`, where both run it and the later publish replaces the earlier one whole."""
    path = lock_file(runs_dir, sweep)
    with runs_folder_lock(runs_dir):
        file = open(path, "a+")  # held open for the lock's life: release() closes it
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            holder = _read_holder(path)
            raise SweepBusy(
                f"sweep {sweep} is already running ({holder.describe()}); wait for it to finish, or stop it "
                f"first (Ctrl+C where it runs, or `kill {holder.pid}` on {holder.host}). {path} is its lock"
            ) from None
        previous = _read_holder(path) if path.stat().st_size else None
        refused = {} if force else _claimed_elsewhere(runs_dir, path, experiments)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "experiments": [name for name in experiments if name not in refused],
        }
        file.seek(0)
        file.truncate()
        file.write(json.dumps(record) + "\n")
        file.flush()
        return SweepLock(path, file, refused, previous)


def _claimed_elsewhere(runs_dir: Path, mine: Path, experiments: list[str]) -> dict[str, Holder]:
    wanted = set(experiments)
    claimed: dict[str, Holder] = {}
    for path in sorted((Path(runs_dir) / artifacts.TUNE_DIR).glob(f"*{LOCK_SUFFIX}")):
        if path == mine or path.name == RUNS_LOCK or not _held(path):
            continue
        holder = _read_holder(path)
        for name in wanted.intersection(holder.experiments):
            claimed[name] = holder
    return claimed


def _held(path: Path) -> bool:
    """Whether a live process holds the lock. A shared lock is granted only if none holds it
    exclusively; taken under runs.lock, so no one can be acquiring it meanwhile."""
    try:
        with open(path) as file:
            try:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False  # closing the file drops the shared lock
    except FileNotFoundError:
        return False


def _read_holder(path: Path) -> Holder:
    try:
        record = json.loads(path.read_text())
        return Holder(record["pid"], record["host"], record["since"], list(record["experiments"]))
    except (OSError, ValueError, KeyError, TypeError):  # written while we looked, or damaged
        return Holder()
