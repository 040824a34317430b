"""Experiments on disk -> pandas DataFrames: one row per experiment, per epoch, per class.

Reads runs/<experiment>/ (finished trials) and, for a sweep still running or interrupted, the
trials' result.json files under runs/_tune/ — plain files, so a notebook needs no Ray cluster.
A damaged file costs only what depends on it: a warning naming it, and a `damaged` row for its
experiment. Must not import torch, ray or the training code.

    from raytrain import results
    df = results.load("runs")
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from raytrain import artifacts
from raytrain.search import group_of

SCHEMA_VERSION = 1  # bump when a column's name or meaning changes
METRIC = "val/macro_f1"
DAMAGED = "damaged"  # the status of an experiment whose folder is missing a file or holds an unreadable one
SPLITS = ("val", "test")
RESULTS_PARQUET, RESULTS_CSV = "results.parquet", "results.csv"
HISTORY_PARQUET, PER_CLASS_PARQUET = "history.parquet", "per_class.parquet"


def load(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per experiment (a repeat `baseline/seed-2` is a row, its `group` is `baseline`):
    name, status, sweep, every config key as a dotted column, the
    best-epoch metrics (val and, when evaluated, test; per class too), best epoch, epochs run and
    duration. Sorted by val macro F1, best first."""
    runs_dir = Path(runs_dir)
    log = _latest_log_lines(runs_dir)
    rows = []
    for name in _experiment_folders(runs_dir):
        files = _read_or_warn(runs_dir, name)
        if isinstance(files, artifacts.DamagedExperiment):
            rows.append(_damaged_row(runs_dir, name, files, log.get(name, {})))
        else:
            rows.append(_finished_row(name, files, log.get(name, {})))
    known = {row["experiment"] for row in rows}
    rows += [row for row in _unfinished_rows(runs_dir) if row["experiment"] not in known]
    if not rows:
        return pd.DataFrame(columns=["experiment", "status", METRIC, "schema_version"])
    frame = pd.DataFrame(rows)
    frame["schema_version"] = SCHEMA_VERSION
    return frame.sort_values(METRIC, ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def load_history(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per experiment and epoch, with every metric reported that epoch."""
    runs_dir = Path(runs_dir)
    frames = []
    for name in _experiment_folders(runs_dir):
        files = _read_or_warn(runs_dir, name)
        if not isinstance(files, artifacts.DamagedExperiment):
            frames.append(pd.DataFrame(files.history).assign(experiment=name))
    finished = {f["experiment"].iloc[0] for f in frames if len(f)}
    for experiment, results in _unfinished_trials(runs_dir):
        if experiment["name"] not in finished and results:
            frames.append(pd.DataFrame(results).assign(experiment=experiment["name"]))
    if not frames:
        return pd.DataFrame(columns=["experiment", "epoch", "schema_version"])
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.drop(columns=[c for c in frame.columns if c not in _HISTORY_KEEP and "/" not in c])
    frame["schema_version"] = SCHEMA_VERSION
    first = ["experiment", "epoch"]
    return frame[first + [c for c in frame.columns if c not in first]].sort_values(first, kind="stable").reset_index(drop=True)


def load_per_class(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """The tidy long table: experiment, split, class, precision, recall, f1, support (best epoch for
    val; the best weights on test). Per-class comparisons are a pivot away."""
    return per_class_rows(load(runs_dir))


def per_class_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """load()'s wide per-class columns as the tidy long table of load_per_class."""
    rows = []
    for _, row in frame.iterrows():
        for split in SPLITS:
            for cls in _class_names(frame.columns, split):
                rows.append({
                    "experiment": row["experiment"], "split": split, "class": cls,
                    **{m: row.get(f"{split}/{m}/{cls}") for m in ("precision", "recall", "f1", "support")},
                })
    table = pd.DataFrame(rows, columns=["experiment", "split", "class", "precision", "recall", "f1", "support"])
    table = table.dropna(subset=["f1"]).reset_index(drop=True)
    table["schema_version"] = SCHEMA_VERSION
    return table


def export(runs_dir: str | Path = "runs", frame: pd.DataFrame | None = None) -> list[Path]:
    """Write runs/results.parquet, results.csv, history.parquet and per_class.parquet (atomically).

    `frame`: load(runs_dir) when the caller already has it, so runs/ is read once, not three times.
    """
    runs_dir = Path(runs_dir)
    frame = load(runs_dir) if frame is None else frame
    return [
        write_table(frame, runs_dir / RESULTS_PARQUET),
        write_table(frame, runs_dir / RESULTS_CSV),
        write_table(load_history(runs_dir), runs_dir / HISTORY_PARQUET),
        write_table(per_class_rows(frame), runs_dir / PER_CLASS_PARQUET),
    ]


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


def _experiment_folders(runs_dir: Path) -> list[str]:
    """Folders a finished trial published into, whole or damaged: runs/<name>/,
    runs/<name>/seed-<n>/ for repeats, or runs/<search>/t<nnn>/ for the trials of an adaptive
    search. Folders starting with _ or . are raytrain's own."""
    if not runs_dir.is_dir():
        return []
    candidates = [p for pattern in ("*/", "*/seed-*/", "*/t[0-9][0-9][0-9]*/") for p in runs_dir.glob(pattern)]
    names = {p.relative_to(runs_dir).as_posix() for p in candidates if not p.relative_to(runs_dir).as_posix().startswith(("_", "."))}
    return sorted(n for n in names if artifacts.has_artifacts(runs_dir / n))


def _read_or_warn(runs_dir: Path, name: str) -> artifacts.ExperimentFiles | artifacts.DamagedExperiment:
    try:
        return artifacts.read_experiment(runs_dir, name)
    except artifacts.DamagedExperiment as damage:
        artifacts.warn_damaged(damage.message)  # one call site, so load() and load_history() warn once
        return damage


def _latest_log_lines(runs_dir: Path) -> dict[str, dict]:
    return {record["experiment"]: record for record in artifacts.read_log(runs_dir)}


def _finished_row(name: str, files: artifacts.ExperimentFiles, log: dict) -> dict:
    history, best = files.history, files.best
    row = {
        "experiment": name,
        "group": group_of(name),
        "status": log.get("status", "completed"),
        "sweep": log.get("sweep"),
        **_flatten(files.config),
        **_metrics_columns(best),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "duration_s": log.get("duration_s", float(sum(h.get("epoch_time_s", 0.0) for h in history))),
        "config_hash": log.get("config_hash"),
    }
    if files.test is not None:
        row |= _metrics_columns(files.test)
    return row


def _damaged_row(runs_dir: Path, name: str, damage: artifacts.DamagedExperiment, log: dict) -> dict:
    """A row that says what is wrong; no metrics, since the files that hold them cannot be trusted."""
    row = {
        "experiment": name, "group": group_of(name), "status": DAMAGED, "sweep": log.get("sweep"),
        "problem": f"{damage.path.name}: {damage.problem}", "config_hash": log.get("config_hash"),
    }
    if damage.path.name != artifacts.CONFIG:  # the config is still readable: its columns help find the run
        try:
            row |= _flatten(yaml.safe_load((artifacts.experiment_dir(runs_dir, name) / artifacts.CONFIG).read_text()))
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            pass
    return row


def _metrics_columns(metrics: dict) -> dict:
    """best_metrics.json / test_metrics.json -> {split/accuracy, split/macro_f1, split/f1/<class>, ...}."""
    split = metrics["split"]
    out = {f"{split}/{key}": metrics[key] for key in ("accuracy", "macro_f1", "loss")}
    for cls, values in metrics["per_class"].items():
        for key, value in values.items():
            out[f"{split}/{key}/{cls}"] = value
    return out


def _unfinished_trials(runs_dir: Path) -> list[tuple[dict, list[dict]]]:
    """(experiment config, its reported results) for each trial folder of every Tune experiment.
    A Tune folder that was deleted or moved simply has no trials here."""
    trials = []
    for result_file in sorted((runs_dir / artifacts.TUNE_DIR).glob("*/*/result.json")):
        params = result_file.parent / "params.json"
        if not params.is_file():
            continue
        try:
            experiment = json.loads(params.read_text())["experiment"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            artifacts.warn_damaged(f"{params}: unreadable ({type(err).__name__}); left out that trial's epochs")
            continue
        trials.append((experiment, _result_lines(result_file)))
    return trials


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
            artifacts.warn_damaged(f"{path}: line {number} is not a whole result; skipped it")
    return lines


def _unfinished_rows(runs_dir: Path) -> list[dict]:
    """Rows for trials of a running or interrupted sweep: the best epoch so far, status 'unfinished'."""
    rows = {}
    for experiment, results in _unfinished_trials(runs_dir):
        if not results:
            continue
        name = experiment["name"]
        best = max(results, key=lambda r: r.get(METRIC, -1.0))
        rows[name] = {
            "experiment": name,
            "group": group_of(name),
            "status": "unfinished",
            "sweep": None,
            **_flatten(experiment),
            **{k: v for k, v in best.items() if k.startswith("val/")},
            "best_epoch": best["epoch"],
            "epochs_run": max(r["epoch"] for r in results),
            "duration_s": results[-1].get("time_total_s"),
            "config_hash": None,
        }
    return list(rows.values())


def _flatten(config: dict) -> dict:
    """Resolved config -> dotted columns; the search section is left out (the values are in)."""
    out = {}
    for section, values in config.items():
        if section == "search":
            continue
        if isinstance(values, dict):
            out |= {f"{section}.{key}": value for key, value in values.items()}
        elif section == "description":
            out["description"] = values
    return out


def _class_names(columns, split: str) -> list[str]:
    prefix = f"{split}/f1/"
    return [c[len(prefix):] for c in columns if c.startswith(prefix)]


def macro_f1_from_per_class(per_class: pd.DataFrame) -> pd.Series:
    """Macro F1 recomputed from the tidy per-class table (mean over classes), by experiment and split."""
    return per_class.groupby(["experiment", "split"])["f1"].mean()
