"""Experiments on disk -> pandas DataFrames: one row per experiment, per epoch, per class.

Reads runs/<experiment>/ (finished trials) and, for a sweep still running or interrupted, the
trials' result.json files under runs/_tune/ — plain files, so a notebook needs no Ray cluster.
A damaged file costs only what depends on it: a warning naming it, and a `damaged` row for its
experiment. Must not import torch, ray or the training code. What each experiment folder held is
cached in runs/_index (results/index.py), so a read opens only the folders that changed.

    from raytrain import results
    df = results.load("runs")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from raytrain import artifacts, lineage
from raytrain.naming import COMPLETED, METRIC, SPLITS, UNFINISHED, group_of
from raytrain.results import index as results_index

SCHEMA_VERSION = 1  # bump when a column's name or meaning changes
RESULTS_PARQUET, RESULTS_CSV = "results.parquet", "results.csv"
HISTORY_PARQUET, PER_CLASS_PARQUET = "history.parquet", "per_class.parquet"
FINGERPRINT = "raytrain_fingerprint"  # load()'s frame.attrs key: the state of runs/ it was read from


def load(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per experiment (a repeat `baseline/seed-2` is a row, its `group` is `baseline`):
    name, status, sweep, every config key as a dotted column, the
    best-epoch metrics (val and, when evaluated, test; per class too), best epoch, epochs run and
    duration, and which data, code and machine produced it (provenance.COLUMNS: `data_fingerprint`,
    `code_commit`, `machine_precision`, ...; empty for runs from before provenance.json). Sorted by
    val macro F1, best first.

    Reads only the experiment folders that changed since the last call (runs/_index; see
    results_index), so it stays quick as runs/ grows."""
    runs_dir = Path(runs_dir)
    snapshot = results_index.sync(runs_dir)
    log = _latest_log_lines(runs_dir)
    rows = []
    for entry in snapshot.entries:
        _warn_if_damaged(runs_dir, entry)
        rows.append(_with_log(entry.row, log.get(entry.experiment, {}), damaged=entry.damage is not None))
    known = {entry.experiment for entry in snapshot.entries}
    rows += _unfinished_rows(runs_dir, snapshot, skip=known)
    if not rows:
        return pd.DataFrame(columns=["experiment", "status", METRIC, "schema_version"])
    frame = pd.DataFrame(rows)
    frame["schema_version"] = SCHEMA_VERSION
    frame = frame.sort_values(METRIC, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    frame.attrs[FINGERPRINT] = snapshot.fingerprint  # export() skips rewriting tables already written from this state
    return frame


def load_history(runs_dir: str | Path = "runs", experiments: list[str] | None = None) -> pd.DataFrame:
    """One row per experiment and epoch, with every metric reported that epoch. `experiments`:
    only these (a report's top few), read straight from their folders."""
    runs_dir = Path(runs_dir)
    if experiments is not None:
        return _history_of(runs_dir, experiments)
    snapshot = results_index.sync(runs_dir)
    for entry in snapshot.entries:
        _warn_if_damaged(runs_dir, entry)
    frames = [results_index.history(runs_dir, snapshot.entries)]
    finished = set(frames[0]["experiment"])
    for experiment, results in _unfinished_trials(runs_dir, snapshot, skip=finished):
        if results:
            frames.append(pd.DataFrame(results).assign(experiment=experiment["name"]))
    return _tidy_history([f for f in frames if len(f)])


def _history_of(runs_dir: Path, experiments: list[str]) -> pd.DataFrame:
    frames, unpublished = [], set()
    for name in experiments:
        if not artifacts.has_artifacts(artifacts.experiment_dir(runs_dir, name)):
            unpublished.add(name)  # still running or interrupted: its epochs are in its Tune trial
            continue
        try:
            frames.append(pd.DataFrame(artifacts.read_experiment(runs_dir, name).history).assign(experiment=name))
        except artifacts.DamagedExperiment:
            continue  # load() has warned about it and shows it as damaged
    if unpublished:
        snapshot = results_index.sync(runs_dir)
        others = {t.experiment for t in snapshot.trials} - unpublished
        for experiment, results in _unfinished_trials(runs_dir, snapshot, skip=others):
            if results:
                frames.append(pd.DataFrame(results).assign(experiment=experiment["name"]))
    return _tidy_history([f for f in frames if len(f)])


def _tidy_history(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["experiment", "epoch", "schema_version"])
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop(columns=[c for c in frame.columns if c not in _HISTORY_KEEP and "/" not in c])
    frame["schema_version"] = SCHEMA_VERSION
    first = ["experiment", "epoch"]
    return (
        frame[first + [c for c in frame.columns if c not in first]]
        .sort_values(first, kind="stable")
        .reset_index(drop=True)
    )


def load_per_class(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """The tidy long table: experiment, split, class, precision, recall, f1, support (best epoch for
    val; the best weights on test). Per-class comparisons are a pivot away."""
    return per_class_rows(load(runs_dir))


def per_class_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """load()'s wide per-class columns as the tidy long table of load_per_class: per experiment (in
    the frame's order), per split, per class."""
    columns = ["experiment", "split", "class", "precision", "recall", "f1", "support"]
    blocks = []
    # one block per split and class, whole columns at a time: iterrows cost ~0.5 s per 1,000 experiments
    for split_rank, split in enumerate(SPLITS):
        for class_rank, cls in enumerate(_class_names(frame.columns, split)):
            block = pd.DataFrame({"experiment": frame["experiment"].to_numpy(), "split": split, "class": cls})
            for metric in ("precision", "recall", "f1", "support"):
                column = f"{split}/{metric}/{cls}"
                block[metric] = frame[column].to_numpy() if column in frame.columns else None
            blocks.append(block.assign(_row=np.arange(len(frame)), _split=split_rank, _class=class_rank))
    if not blocks:
        table = pd.DataFrame(columns=columns)
    else:
        table = pd.concat(blocks, ignore_index=True).sort_values(["_row", "_split", "_class"], kind="stable")
        table = table[columns]
    table = table.dropna(subset=["f1"]).reset_index(drop=True)
    table["schema_version"] = SCHEMA_VERSION
    return table


def export(runs_dir: str | Path = "runs", frame: pd.DataFrame | None = None) -> list[Path]:
    """Write runs/results.parquet, results.csv, history.parquet and per_class.parquet (atomically).

    `frame`: load(runs_dir) when the caller already has it, so runs/ is read once, not three times.
    """
    runs_dir = Path(runs_dir)
    frame = load(runs_dir) if frame is None else frame
    paths = [runs_dir / name for name in (RESULTS_PARQUET, RESULTS_CSV, HISTORY_PARQUET, PER_CLASS_PARQUET)]
    fingerprint = frame.attrs.get(FINGERPRINT)
    if fingerprint is not None and results_index.export_is_current(runs_dir, fingerprint, paths):
        return paths  # nothing in runs/ changed since these were written: `compare` again costs no rewrite
    write_table(frame, paths[0])
    write_table(frame, paths[1])
    write_table(load_history(runs_dir), paths[2])
    write_table(per_class_rows(frame), paths[3])
    if fingerprint is not None:
        results_index.stamp_export(runs_dir, fingerprint, paths)
    return paths


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """A DataFrame as .csv or .parquet by the file's suffix, written atomically."""
    path = Path(path)
    with artifacts.atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"{path}: export to .csv or .parquet")
    return path


def class_names(frame: pd.DataFrame, split: str = "val") -> list[str]:
    """The classes that have per-class columns for `split`, in column order."""
    return _class_names(frame.columns, split)


def split_metrics(frame: pd.DataFrame, split: str = "val") -> list[str]:
    """Every metric the frame holds for `split`, by its name within the split, in column order:
    `accuracy`, `macro_f1`, `loss`, then per class `precision/<c>`, `recall/<c>`, `f1/<c>`, `support/<c>`."""
    prefix = f"{split}/"
    return [c[len(prefix) :] for c in frame.columns if c.startswith(prefix)]


def hyperparameter_columns(frame: pd.DataFrame) -> list[str]:
    """The dotted config columns (training.lr, ...)."""
    return [c for c in frame.columns if "." in c and "/" not in c]


def varying_hyperparameters(frame: pd.DataFrame) -> list[str]:
    """Config columns whose value differs between the rows: what a comparison is about."""
    columns = hyperparameter_columns(frame)
    # a damaged row without a readable config has no values: it says nothing about what varies
    known = frame.dropna(subset=columns, how="all") if columns else frame
    return [c for c in columns if known[c].astype(str).nunique(dropna=False) > 1]


# ---------------------------------------------------------------------------------------------------

_HISTORY_KEEP = {"experiment", "epoch", "lr", "epoch_time_s", "epochs_since_best", "best_epoch", "precision_used"}


def _latest_log_lines(runs_dir: Path) -> dict[str, dict]:
    return {record["experiment"]: record for record in artifacts.read_log(runs_dir)}


def _warn_if_damaged(runs_dir: Path, entry: results_index.Entry) -> None:
    damage = entry.damaged(runs_dir)
    # one call site, so load() and load_history() warn once
    for message in [damage.message] if damage is not None else entry.problems:
        artifacts.warn_damaged(message)


def _with_log(row: dict, log: dict, *, damaged: bool) -> dict:
    """An index entry's row with the fields experiment_log.jsonl gives: it changes (a failed run, a
    re-run's new line) without the folder changing, so it is laid over the entry on every read."""
    row = dict(row)
    row["sweep"], row["config_hash"] = log.get("sweep"), log.get("config_hash")
    if not damaged:
        row["status"] = log.get("status", COMPLETED)
        row["duration_s"] = log.get("duration_s", row["duration_s"])
    return row


def _unfinished_trials(
    runs_dir: Path, snapshot: results_index.Snapshot, skip: set[str]
) -> list[tuple[dict, list[dict]]]:
    """(experiment config, its reported results) for each trial of every Tune experiment whose
    experiment is not in `skip`. A Tune folder that was deleted or moved simply has no trials here.
    The others are not opened: their torn lines, if any, are warned about from the index."""
    trials, scanned = [], False
    for trial in snapshot.trials:
        if trial.problem is not None:
            artifacts.warn_damaged(trial.problem)
            continue
        result_file = runs_dir / trial.folder / "result.json"
        if trial.experiment in skip:
            if trial.torn is None:
                trial.torn, scanned = _torn_lines(result_file), True
            for number in trial.torn:
                _warn_torn(result_file, number)
            continue
        params = runs_dir / trial.folder / "params.json"
        try:
            experiment = json.loads(params.read_text())["experiment"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            artifacts.warn_damaged(f"{params}: unreadable ({type(err).__name__}); left out that trial's epochs")
            continue
        trials.append((experiment, _result_lines(result_file)))
    if scanned:
        results_index.save_torn_lines(runs_dir, snapshot)
    return trials


def _torn_lines(path: Path) -> list[int]:
    """The numbers of result.json's lines that are not whole results."""
    torn = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if line.strip() and not _is_result(line):
            torn.append(number)
    return torn


def _is_result(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "epoch" in record


def _warn_torn(path: Path, number: int) -> None:
    artifacts.warn_damaged(f"{path}: line {number} is not a whole result; skipped it")


def _result_lines(path: Path) -> list[dict]:
    """Tune's result.json: one JSON object per reported epoch. A running trial may be mid-write."""
    lines = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None
        if isinstance(record, dict) and "epoch" in record:
            lines.append(record)
        elif line.strip():
            _warn_torn(path, number)
    return lines


def _unfinished_rows(runs_dir: Path, snapshot: results_index.Snapshot, skip: set[str]) -> list[dict]:
    """Rows for trials of a running or interrupted sweep: the best epoch so far, status 'unfinished'."""
    rows = {}
    for experiment, results in _unfinished_trials(runs_dir, snapshot, skip):
        if not results:
            continue
        name = experiment["name"]
        best = max(results, key=lambda r: r.get(METRIC, -1.0))
        rows[name] = {
            "experiment": name,
            "group": group_of(name),
            "status": UNFINISHED,
            "sweep": None,
            **results_index.flatten(experiment),
            **{k: v for k, v in best.items() if k.startswith("val/")},
            "best_epoch": best["epoch"],
            "epochs_run": max(r["epoch"] for r in results),
            "duration_s": results[-1].get("time_total_s"),
            "config_hash": None,
            **lineage.final_values(results),
        }
    return list(rows.values())


def _class_names(columns, split: str) -> list[str]:
    prefix = f"{split}/f1/"
    return [c[len(prefix) :] for c in columns if c.startswith(prefix)]
