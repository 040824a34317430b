"""The files raytrain leaves on disk: a trial's best.pt, *_metrics.json, *_confusion_matrix.npy and
history.json, and runs/ (one folder per experiment, experiment_log.jsonl).

Owns their names and formats and writes each one atomically (a crash never leaves half a file). No
Ray import, and torch only inside the best.pt functions, so results and reports load fast anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

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
# Everything a finished trial hands to runs/<experiment>/, in the order a reader wants them.
TRIAL_ARTIFACTS = (
    CONFIG, BEST_WEIGHTS, BEST_METRICS, BEST_CONFUSION, HISTORY, TEST_METRICS, TEST_CONFUSION,
    VAL_PREDICTIONS, TEST_PREDICTIONS,
)

BEST_PT_FORMAT = 1  # bump when the keys of best.pt change


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
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
                f, label=labels.astype(np.int16), predicted=predicted.astype(np.int16),
                probability=probabilities[np.arange(len(predicted)), predicted].astype(np.float16),
            )


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_best_weights(
    path: Path,
    state_dict: dict,  # name -> torch.Tensor
    *,
    arch: str,
    class_names: list[str],
    in_channels: int,
    img_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: dict,
    epoch: int,
) -> None:
    """best.pt: the weights plus everything needed to use them without the YAML."""
    import torch  # here, not at the top: results and reports read runs/ without loading torch

    payload = {
        "format": BEST_PT_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "arch": arch,
        "class_names": list(class_names),
        "in_channels": in_channels,
        "img_size": img_size,
        "mean": list(mean),
        "std": list(std),
        "dropout": config["model"]["dropout"],
        "config": config,
        "epoch": epoch,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_best_weights(path: Path) -> dict:
    """The dict save_best_weights wrote; weights_only since best.pt may come from someone else."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------------
# runs/: one folder per experiment, written by the sweep driver only


EXPERIMENT_LOG = "experiment_log.jsonl"
TUNE_DIR = "_tune"


def experiment_dir(runs_dir: Path, experiment: str) -> Path:
    return Path(runs_dir) / experiment


def is_complete(runs_dir: Path, experiment: str) -> bool:
    """A finished experiment has its resolved config and best weights in runs/<experiment>/."""
    folder = experiment_dir(runs_dir, experiment)
    return (folder / CONFIG).is_file() and (folder / BEST_WEIGHTS).is_file() and (folder / BEST_METRICS).is_file()


def publish_experiment(runs_dir: Path, experiment: str, trial_files: Path, config_yaml: str) -> Path:
    """Copy a trial's artifacts from its checkpoint folder into runs/<experiment>/, each atomically.

    config.yaml goes last: is_complete() reads it as the sign that everything else is there.
    """
    folder = experiment_dir(runs_dir, experiment)
    for name in TRIAL_ARTIFACTS:
        source = Path(trial_files) / name
        if name != CONFIG and source.is_file():
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(source.read_bytes())
    write_text(folder / CONFIG, config_yaml)
    return folder


def append_log(runs_dir: Path, record: dict) -> None:
    """One JSON line in runs/experiment_log.jsonl, flushed and fsynced before returning, so a killed
    driver never leaves a half line. Only the driver writes it: trials on other nodes never do."""
    path = Path(runs_dir) / EXPERIMENT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record, sort_keys=False) + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_log(runs_dir: Path) -> list[dict]:
    path = Path(runs_dir) / EXPERIMENT_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
