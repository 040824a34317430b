"""The files raytrain leaves on disk: a trial's best.pt, *_metrics.json, *_confusion_matrix.npy and
history.json, and runs/ (one folder per experiment, experiment_log.jsonl).

Owns their names and formats, writes each one atomically (a crash never leaves half a file), and
tells a damaged experiment from a good one so every reader can warn and go on. No torch and no Ray
(best.pt's torch code is training/best_weights.py), so results and reports load fast anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from raytrain.errors import UserError
from raytrain.naming import first_line

BEST_WEIGHTS = "best.pt"
BEST_METRICS = "best_metrics.json"
BEST_CONFUSION = "best_confusion_matrix.npy"
TEST_METRICS = "test_metrics.json"
TEST_CONFUSION = "test_confusion_matrix.npy"
HISTORY = "history.json"
CONFIG = "config.yaml"
# per image: true class, predicted class, its probability; for bootstrap intervals over images
VAL_PREDICTIONS = "val_predictions.npz"
TEST_PREDICTIONS = "test_predictions.npz"
# which data, code and machine produced the run (provenance.py): the trial writes the machine part
# into its checkpoints, the driver adds the data and code parts as it publishes
PROVENANCE = "provenance.json"
# the uncommitted changes of the checkout the sweep ran from, beside provenance.json when it was dirty
UNCOMMITTED_PATCH = "uncommitted.patch"
# a population member's (pbt/pb2) lineage: per epoch, the member that trained it and each knob in
# force, and where it copied another member (raytrain/lineage.py)
SCHEDULE = "schedule.csv"
# Everything a finished trial hands to runs/<experiment>/, in the order a reader wants them.
TRIAL_ARTIFACTS = (
    CONFIG,
    BEST_WEIGHTS,
    BEST_METRICS,
    BEST_CONFUSION,
    HISTORY,
    TEST_METRICS,
    TEST_CONFUSION,
    VAL_PREDICTIONS,
    TEST_PREDICTIONS,
    PROVENANCE,
)
# ...and a population member's (pbt, pb2), beside them
MEMBER_ARTIFACTS = (SCHEDULE,)


def _usual_mode() -> int:
    """The mode open() gives a new file under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0o022)  # reading the umask means setting it: set it straight back
    os.umask(umask)
    return 0o666 & ~umask


# read once, at import, before any thread: setting the umask to read it is process-wide
USUAL_MODE = _usual_mode()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes. The file
    gets the usual mode (umask), like any other new file: mkstemp's owner-only mode would make a
    shared runs folder unreadable to the rest of a team."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, USUAL_MODE)
        # on disk before the rename: after a power cut the name holds the old file or the new, not zeros
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # np.save on a name would append .npy
            np.save(f, array)


def write_predictions(path: Path, labels: np.ndarray, probabilities: np.ndarray) -> None:
    """Per-image predictions, small: int16 classes and the float16 probability of the predicted one."""
    predicted = probabilities.argmax(axis=1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                label=labels.astype(np.int16),
                predicted=predicted.astype(np.int16),
                probability=probabilities[np.arange(len(predicted)), predicted].astype(np.float16),
            )


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------------------------------------------
# runs/: one folder per experiment, written by the sweep driver only


EXPERIMENT_LOG = "experiment_log.jsonl"
TUNE_DIR = "_tune"


class OutsideRuns(UserError):
    """A name that would put a file outside runs/ (or the storage): never written."""


def within(folder: Path, relative: str) -> Path:
    """folder/relative, which must stay inside `folder`: every path raytrain makes from a name goes
    through here before anything is written there. Names are checked when configs are validated
    (naming.name_problem); this is the last guard, by the path's text alone (no disk access)."""
    path = Path(folder) / relative
    inner = os.path.relpath(path, folder)  # `..` parts resolved by their text, as the OS would
    if Path(relative).is_absolute() or inner == os.curdir or inner.split(os.sep)[0] == os.pardir:
        raise OutsideRuns(f"{relative!r} would lie outside {folder}; names must be one plain folder name")
    return path


def experiment_dir(runs_dir: Path, experiment: str) -> Path:
    return within(runs_dir, experiment)


def is_complete(runs_dir: Path, experiment: str) -> bool:
    """A finished experiment has its resolved config and best weights in runs/<experiment>/."""
    folder = experiment_dir(runs_dir, experiment)
    return (folder / CONFIG).is_file() and (folder / BEST_WEIGHTS).is_file() and (folder / BEST_METRICS).is_file()


def publish_experiment(
    runs_dir: Path,
    experiment: str,
    trial_files: Path,
    config_yaml: str,
    *,
    provenance: dict | None = None,
    patch: str | None = None,
) -> Path:
    """Copy a trial's artifacts from its checkpoint folder into runs/<experiment>/, each atomically,
    and remove those of an earlier run that this one does not have (a --force re-run on data without
    a test split must not keep the old model's test scores, a clean tree not the old dirty one's patch).
    `provenance`: the whole record, written in place of the trial's machine part; `patch`: the
    uncommitted diff it names.

    config.yaml goes last: is_complete() reads it as the sign that everything else is there.
    """
    folder = experiment_dir(runs_dir, experiment)
    for name in TRIAL_ARTIFACTS + MEMBER_ARTIFACTS:
        source = Path(trial_files) / name
        if name == CONFIG or (name == PROVENANCE and provenance is not None):
            continue
        if source.is_file():
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(source.read_bytes())
        else:
            (folder / name).unlink(missing_ok=True)
    if provenance is not None:
        write_json(folder / PROVENANCE, provenance)
    if patch is not None:
        write_text(folder / UNCOMMITTED_PATCH, patch)
    else:
        (folder / UNCOMMITTED_PATCH).unlink(missing_ok=True)
    write_text(folder / CONFIG, config_yaml)
    return folder


def append_log(runs_dir: Path, record: dict) -> None:
    """One JSON line in runs/experiment_log.jsonl, flushed and fsynced before returning. Only the
    driver writes it: trials on other nodes never do.

    A crash or a full disk during an earlier append can leave a torn last line; this record then
    starts on a new line, so it is never glued onto the fragment (read_log skips the fragment)."""
    path = Path(runs_dir) / EXPERIMENT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False) + "\n"
    with open(path, "a+b") as log:
        if log.tell() > 0:
            log.seek(-1, os.SEEK_END)
            if log.read(1) != b"\n":
                line = "\n" + line
        log.write(line.encode("utf-8"))
        log.flush()
        os.fsync(log.fileno())


def read_log(runs_dir: Path) -> list[dict]:
    """Every record of experiment_log.jsonl; a line that is not a JSON object is skipped with a warning."""
    path = Path(runs_dir) / EXPERIMENT_LOG
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "experiment" not in record:
            warn_damaged(
                f"{path}: line {number} is not a whole record (a write cut short by a crash or a full disk); skipped it"
            )
            continue
        records.append(record)
    return records


def last_logged(runs_dir: Path, sweep: str, experiment: str) -> dict | None:
    """Sweep `sweep`'s latest log record for `experiment`, None if it has none: a trial's end as
    the publisher wrote it (a retried trial has a failed record, then a completed one)."""
    records = [r for r in read_log(runs_dir) if r.get("sweep") == sweep and r["experiment"] == experiment]
    return records[-1] if records else None


# ---------------------------------------------------------------------------------------------------
# Damage: readers of runs/ warn once per problem and go on with everything else


class DamagedRunsWarning(UserWarning):
    """A file under runs/ that cannot be read; what was skipped because of it is in the message."""


def warn_damaged(message: str) -> None:
    # one call site for every such warning: Python shows a given message once per call site
    warnings.warn(message, DamagedRunsWarning, stacklevel=2)


class DamagedExperiment(Exception):
    """runs/<experiment>/ is missing a file or holds one that cannot be read."""

    def __init__(self, experiment: str, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.experiment, self.path, self.problem = experiment, path, problem

    @property
    def message(self) -> str:
        """The warning every reader gives for it: the file, the problem, and how to repair it."""
        return (
            f"{self.path}: {self.problem}; experiment {self.experiment!r} is shown as damaged until it is "
            "run again (`raytrain sweep`/`run` with its config plans it again and repairs it)"
        )


@dataclass
class ExperimentFiles:
    """What results and reports read from a finished experiment's folder. `problems`: files that
    could not be read but are not needed (a damaged provenance.json), to warn about and go on."""

    config: dict
    best: dict
    history: list[dict]
    test: dict | None
    provenance: dict | None = None
    problems: list[str] = field(default_factory=list)


# needed by every reader; the rest are checked only when present (older runs lack the predictions)
REQUIRED_ARTIFACTS = (CONFIG, BEST_WEIGHTS, BEST_METRICS, HISTORY)


def has_artifacts(folder: Path) -> bool:
    """Whether a finished trial published anything into `folder`: it is an experiment, whole or damaged."""
    return any((Path(folder) / name).is_file() for name in TRIAL_ARTIFACTS)


def read_experiment(runs_dir: Path, experiment: str) -> ExperimentFiles:
    """Read and check runs/<experiment>/; raise DamagedExperiment naming the first bad file.

    The binary files are checked cheaply (no torch): a truncated zip (best.pt, *.npz) loses its
    directory at the end, and a truncated .npy is shorter than its header says."""
    folder = experiment_dir(runs_dir, experiment)
    for name in REQUIRED_ARTIFACTS:
        if not (folder / name).is_file():
            raise DamagedExperiment(experiment, folder / name, "missing")
    for name in (BEST_WEIGHTS, VAL_PREDICTIONS, TEST_PREDICTIONS):
        if (folder / name).is_file() and not zipfile.is_zipfile(folder / name):
            raise DamagedExperiment(experiment, folder / name, "truncated or not a torch/numpy archive")
    for name in (BEST_CONFUSION, TEST_CONFUSION):
        if (folder / name).is_file():
            _parse(experiment, folder / name, lambda p: np.load(p, mmap_mode="r"))
    config = _parse(experiment, folder / CONFIG, lambda p: yaml.safe_load(p.read_text(encoding="utf-8")), dict)
    best = _parse(experiment, folder / BEST_METRICS, read_json, dict)
    history = _parse(experiment, folder / HISTORY, read_json, list)
    test = _parse(experiment, folder / TEST_METRICS, read_json, dict) if (folder / TEST_METRICS).is_file() else None
    provenance, problems = None, []
    if (folder / PROVENANCE).is_file():  # runs from before raytrain recorded it have none
        try:
            provenance = _parse(experiment, folder / PROVENANCE, read_json, dict)
        except DamagedExperiment as damage:
            problems.append(f"{damage.path}: {damage.problem}; its data, code and machine columns are left empty")
    return ExperimentFiles(config, best, history, test, provenance, problems)


def _parse(experiment: str, path: Path, read, kind: type | None = None):
    try:
        value = read(path)
    except (OSError, ValueError, yaml.YAMLError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedExperiment(experiment, path, f"unreadable ({first_line(err, 200, typed=True)})") from None
    if kind is not None and not isinstance(value, kind):
        raise DamagedExperiment(
            experiment, path, f"holds {type(value).__name__}, not the {kind.__name__} raytrain writes"
        )
    return value


# ---------------------------------------------------------------------------------------------------
# Before a sweep: can runs/ be written at all?


class UnwritableRuns(UserError):
    """runs/ (or the Tune storage in it) cannot take a file: read-only, full, or no permission."""


def check_writable(folder: Path) -> None:
    """Create `folder` and write, fsync and delete a small file in it, so that a read-only or full
    disk stops a sweep before any training is spent on results that could not be kept."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".raytrain-write-check.", suffix=".tmp")
        try:
            os.write(fd, b"x" * 4096)  # a page: tmpfs and most file systems allocate on write
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise UnwritableRuns(f"{folder}: cannot write here ({_describe_os_error(err)})") from None


def _describe_os_error(err: OSError) -> str:
    hints = {
        errno.ENOSPC: "no space left on device: free some space",
        errno.EDQUOT: "disk quota exceeded: free some space",
        errno.EROFS: "read-only file system: choose a writable --runs-dir",
        errno.EACCES: "permission denied: choose a folder you can write, or fix its permissions",
        errno.EPERM: "permission denied: choose a folder you can write, or fix its permissions",
    }
    return hints.get(err.errno, f"{err.strerror or err}")
