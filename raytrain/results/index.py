"""The index of runs/: what each experiment folder and Tune trial holds, kept in runs/_index/ so that
results.load re-reads only the folders that changed since the last read, not all of them.

Correct by checking, not by bookkeeping: every read lists runs/ and stats each experiment's files
(inode, size, mtime: no file is opened), re-reads the folders whose files differ from their entry
or that have none, and drops the entries of folders that are gone. So an experiment added, re-run
with --force, repaired, damaged or deleted, by this version or an older one or by hand, shows on
the next read; record() (the sweep driver, as each trial is published) only makes it cheaper. An
unreadable index is rebuilt with a warning. Every write replaces its file atomically; when two
processes write at once the last one wins and the next read re-reads whatever it missed. A runs
folder that cannot be written (read-only, full) is simply read without an index.

An entry holds the part of an experiment's results row that comes from its files (the config
columns, best-epoch and test metrics; the log's status, sweep and duration are laid over it by
results.load, since experiment_log.jsonl changes without the folder changing), or, for a damaged
folder, the file and problem to warn about. Histories live beside the entries in a parquet file,
each row tagged with its folder's signature. No torch, no ray.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from raytrain import artifacts, lineage
from raytrain.naming import COMPLETED, DAMAGED, MEMBER_FOLDER, dotted, group_of
from raytrain.provenance import provenance_columns

INDEX_DIR = "_index"  # under runs/; a leading _ keeps it out of the experiment folders
ENTRIES = "experiments.jsonl"
HISTORY = "history.parquet"
EXPORTED = "exported.json"
FORMAT = 1  # bump when an entry's content changes: an index of another format is rebuilt quietly
_ARTIFACTS = frozenset(artifacts.TRIAL_ARTIFACTS)
_SIGNATURE = "_signature"  # the history table's column naming the folder state its rows came from


@dataclass
class Entry:
    """One experiment folder as of `signature`: its files' row, or the damage that stops it having one."""

    experiment: str
    signature: str
    row: dict
    damage: tuple[str, str] | None = None  # (file name, problem)
    history: list[dict] | None = field(default=None, repr=False)  # only when read in this process
    problems: list[str] = field(default_factory=list)  # files it does without (a torn provenance.json)

    def damaged(self, runs_dir: Path) -> artifacts.DamagedExperiment | None:
        if self.damage is None:
            return None
        name, problem = self.damage
        return artifacts.DamagedExperiment(
            self.experiment, artifacts.experiment_dir(runs_dir, self.experiment) / name, problem
        )


@dataclass
class TuneTrialRecord:
    """A Tune trial folder under runs/_tune/<sweep>/: the experiment it trains (None when its
    params.json cannot be read: `problem` says why) and the lines of its result.json that are not
    whole results, as of its files' signatures."""

    folder: str  # relative to runs/
    params: str
    result: str
    experiment: str | None
    problem: str | None = None
    torn: list[int] | None = None  # None: not read yet


@dataclass
class Snapshot:
    entries: list[Entry]
    trials: list[TuneTrialRecord]
    fingerprint: str  # changes whenever anything results.load reads changes


def sync(runs_dir: Path) -> Snapshot:
    """Every experiment folder and Tune trial in runs/, re-reading only what changed since the
    index last saw it; the index is rewritten when anything did."""
    runs_dir = Path(runs_dir)
    cached_entries, cached_trials, readable = _read_index(runs_dir)
    folders = _experiment_folders(runs_dir)
    entries = []
    for name in sorted(folders):
        signature = _signature(folders[name])
        cached = cached_entries.get(name)
        entries.append(
            cached if cached is not None and cached.signature == signature else read_entry(runs_dir, name, signature)
        )
    trials = []
    for folder, (params, result) in sorted(_trial_files(runs_dir).items()):
        cached = cached_trials.get(folder)
        if cached is None or cached.params != params:
            cached = _read_trial(runs_dir, folder, params, result)
        elif cached.result != result:
            cached = replace(cached, result=result, torn=None)  # a new object: `changed` below compares with the old
        trials.append(cached)
    changed = (
        not readable
        or [(e.experiment, e.signature) for e in entries]
        != [(e.experiment, e.signature) for e in cached_entries.values()]
        or [(t.folder, t.params, t.result, t.torn) for t in trials]
        != [(t.folder, t.params, t.result, t.torn) for t in cached_trials.values()]
    )
    # nothing to index in a folder that is missing or empty: reading must not create runs/_index there
    if changed and (entries or trials or readable):
        _write_index(runs_dir, entries, trials)
    return Snapshot(entries, trials, _fingerprint(runs_dir, entries, trials))


def save_torn_lines(runs_dir: Path, snapshot: Snapshot) -> None:
    """Rewrite the index once results has read result.json files the index had not scanned, so the
    next read can name their torn lines without opening them."""
    _write_index(Path(runs_dir), snapshot.entries, snapshot.trials)


def record(runs_dir: str | Path, experiment: str) -> None:
    """Add or refresh one just-published experiment: one line appended to the index, so a
    `raytrain compare` during a long sweep does not read it again. Best effort: sync() finds
    the folder anyway, so an index that cannot be written costs only time."""
    runs_dir = Path(runs_dir)
    path = runs_dir / INDEX_DIR / ENTRIES
    try:
        folders = _experiment_folders(runs_dir, only=experiment)
        if experiment not in folders or not path.is_file():
            return  # no index yet: the first read builds it whole
        line = _entry_line(read_entry(runs_dir, experiment, _signature(folders[experiment])))
        with open(path, "a", encoding="utf-8") as index:  # a later line for a name wins over an earlier one
            index.write(line + "\n")
    except Exception:  # noqa: BLE001 - the sweep driver calls this: a cache must never stop a sweep; the next read re-reads it
        pass


def history(runs_dir: Path, entries: list[Entry]) -> pd.DataFrame:
    """The history.json of every whole experiment in `entries`, one row per epoch with column
    `experiment`: from the index's table where it still matches the folder, read where not."""
    runs_dir = Path(runs_dir)
    path = runs_dir / INDEX_DIR / HISTORY
    wanted = {e.experiment: e for e in entries if e.damage is None}
    cached = pd.DataFrame(columns=["experiment", _SIGNATURE])
    if path.is_file():
        try:
            cached = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises its own types for a torn or foreign file
            artifacts.warn_damaged(f"{path}: unreadable ({type(err).__name__}); rebuilt it from the experiment folders")
    signatures = {name: entry.signature for name, entry in wanted.items()}
    keep = cached[cached["experiment"].map(signatures) == cached[_SIGNATURE]] if len(cached) else cached
    have = set(keep["experiment"])
    frames = [keep] if len(keep) else []
    for name, entry in wanted.items():
        if name in have:
            continue
        records = entry.history if entry.history is not None else _read_history(runs_dir, name)
        if records:
            frames.append(pd.DataFrame(records).assign(experiment=name, **{_SIGNATURE: entry.signature}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["experiment", _SIGNATURE])
    if len(table) != len(cached) or len(keep) != len(cached):
        _write_quietly(lambda tmp: table.to_parquet(tmp, index=False), path)
    return table.drop(columns=[_SIGNATURE])


def export_is_current(runs_dir: Path, fingerprint: str, files: list[Path]) -> bool:
    """Whether `files` are what export() wrote at `fingerprint` and nobody has touched them since."""
    try:
        stamp = artifacts.read_json(Path(runs_dir) / INDEX_DIR / EXPORTED)
        return stamp["fingerprint"] == fingerprint and stamp["files"] == {p.name: _file_signature(p) for p in files}
    except (OSError, ValueError, KeyError, TypeError):
        return False


def stamp_export(runs_dir: Path, fingerprint: str, files: list[Path]) -> None:
    stamp = {"fingerprint": fingerprint, "files": {p.name: _file_signature(p) for p in files}}
    _write_quietly(lambda tmp: tmp.write_text(json.dumps(stamp)), Path(runs_dir) / INDEX_DIR / EXPORTED)


# --- an experiment folder -> its entry ----------------------------------------------------------------


def read_entry(runs_dir: Path, name: str, signature: str) -> Entry:
    """Read runs/<name>/ (artifacts.read_experiment checks every file) into an entry."""
    try:
        files = artifacts.read_experiment(runs_dir, name)
    except artifacts.DamagedExperiment as damage:
        return Entry(name, signature, damaged_row(runs_dir, name, damage), (damage.path.name, damage.problem))
    return Entry(name, signature, files_row(name, files), history=files.history, problems=files.problems)


def files_row(name: str, files: artifacts.ExperimentFiles) -> dict:
    """A finished experiment's row as its files give it; results.load lays the log's fields over it."""
    history, best = files.history, files.best
    row = {
        "experiment": name,
        "group": group_of(name),
        "status": COMPLETED,
        "sweep": None,
        **flatten(files.config),
        **metrics_columns(best),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "duration_s": float(sum(h.get("epoch_time_s", 0.0) for h in history)),
        "config_hash": None,
        **lineage.final_values(history),  # a population member's knobs at its end (config.yaml: at its best)
    }
    if files.test is not None:
        row |= metrics_columns(files.test)
    if files.provenance is not None:
        row |= provenance_columns(files.provenance)
    return row


def damaged_row(runs_dir: Path, name: str, damage: artifacts.DamagedExperiment) -> dict:
    """A row that says what is wrong; no metrics, since the files that hold them cannot be trusted."""
    row = {
        "experiment": name,
        "group": group_of(name),
        "status": DAMAGED,
        "sweep": None,
        "problem": f"{damage.path.name}: {damage.problem}",
        "config_hash": None,
    }
    if damage.path.name != artifacts.CONFIG:  # the config is still readable: its columns help find the run
        try:
            row |= flatten(yaml.safe_load((artifacts.experiment_dir(runs_dir, name) / artifacts.CONFIG).read_text()))
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            pass
    return row


def metrics_columns(metrics: dict) -> dict:
    """best_metrics.json / test_metrics.json -> {split/accuracy, split/macro_f1, split/f1/<class>, ...}."""
    split = metrics["split"]
    out = {f"{split}/{key}": metrics[key] for key in ("accuracy", "macro_f1", "loss")}
    for cls, values in metrics["per_class"].items():
        for key, value in values.items():
            out[f"{split}/{key}/{cls}"] = value
    return out


def flatten(config: dict) -> dict:
    """Resolved config -> dotted columns; the name and the search section are left out (its values are in)."""
    return {key: value for key, value in dotted(config).items() if key != "name" and key.split(".")[0] != "search"}


def _read_history(runs_dir: Path, name: str) -> list[dict]:
    """An entry's history read again (another process made the entry); [] if the folder changed
    under us: the next sync sees that and re-reads it whole."""
    try:
        return artifacts.read_experiment(runs_dir, name).history
    except artifacts.DamagedExperiment:
        return []


# --- listing runs/ (stat only) -------------------------------------------------------------------------


def _experiment_folders(runs_dir: Path, only: str | None = None) -> dict[str, dict[str, os.stat_result]]:
    """name -> {artifact: its stat} for every folder a finished trial published into, whole or
    damaged: runs/<name>/, runs/<name>/seed-<n>/ and runs/<search>/t<nnn>/. Folders starting with _
    or . are raytrain's own. One scandir per folder: far cheaper than globbing each pattern."""
    found: dict[str, dict[str, os.stat_result]] = {}
    try:
        top = [e for e in os.scandir(runs_dir) if e.is_dir() and not e.name.startswith(("_", "."))]
    except OSError:
        return found
    for entry in top:
        if only is None or only == entry.name or only.startswith(entry.name + "/"):
            _collect(entry.path, entry.name, found, nested=True)
    return found if only is None else {k: v for k, v in found.items() if k == only}


def _collect(folder: str, name: str, found: dict, *, nested: bool) -> None:
    # str paths, not Path: at 10,000 folders pathlib's own overhead is a visible share of a read
    files, inner = {}, []
    try:
        with os.scandir(folder) as listing:
            for item in listing:
                if item.name in _ARTIFACTS and item.is_file():
                    files[item.name] = item.stat()
                elif nested and MEMBER_FOLDER.fullmatch(item.name) and item.is_dir():
                    inner.append(item.name)
    except OSError:
        return  # deleted while listed: it is not there
    if files:
        found[name] = files
    for sub in inner:
        _collect(os.path.join(folder, sub), f"{name}/{sub}", found, nested=False)


def _signature(files: dict[str, os.stat_result]) -> str:
    # the inode changes on every atomic replace, so a file rewritten within one mtime tick still differs
    return ";".join(f"{name}:{s.st_ino}:{s.st_size}:{s.st_mtime_ns}" for name, s in sorted(files.items()))


def _file_signature(path: str | Path) -> str | None:
    try:
        s = os.stat(path)
    except OSError:
        return None
    return f"{s.st_ino}:{s.st_size}:{s.st_mtime_ns}"


def _trial_files(runs_dir: Path) -> dict[str, tuple[str, str]]:
    """runs/_tune/<sweep>/<trial>/ with both params.json and result.json -> their signatures."""
    trials = {}
    try:
        sweeps = [e for e in os.scandir(runs_dir / artifacts.TUNE_DIR) if e.is_dir()]
    except OSError:
        return trials
    for sweep in sweeps:
        try:
            folders = [e for e in os.scandir(sweep.path) if e.is_dir()]
        except OSError:
            continue
        for folder in folders:
            params = _file_signature(os.path.join(folder.path, "params.json"))
            result = _file_signature(os.path.join(folder.path, "result.json"))
            if params is not None and result is not None:
                trials[f"{artifacts.TUNE_DIR}/{sweep.name}/{folder.name}"] = (params, result)
    return trials


def _read_trial(runs_dir: Path, folder: str, params: str, result: str) -> TuneTrialRecord:
    path = runs_dir / folder / "params.json"
    try:
        experiment = json.loads(path.read_text())["experiment"]["name"]
        if not isinstance(experiment, str):
            raise TypeError(type(experiment).__name__)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return TuneTrialRecord(
            folder,
            params,
            result,
            None,
            problem=f"{path}: unreadable ({type(err).__name__}); left out that trial's epochs",
        )
    return TuneTrialRecord(folder, params, result, experiment)


def _fingerprint(runs_dir: Path, entries: list[Entry], trials: list[TuneTrialRecord]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.experiment}\0{entry.signature}\n".encode())
    for trial in trials:
        digest.update(f"{trial.folder}\0{trial.params}\0{trial.result}\n".encode())
    digest.update(str(_file_signature(runs_dir / artifacts.EXPERIMENT_LOG)).encode())
    return digest.hexdigest()


# --- the index file ---------------------------------------------------------------------------------


def _read_index(runs_dir: Path) -> tuple[dict[str, Entry], dict[str, TuneTrialRecord], bool]:
    """The index's entries by name and trials by folder, and whether it was there and whole."""
    path = runs_dir / INDEX_DIR / ENTRIES
    entries: dict[str, Entry] = {}
    trials: dict[str, TuneTrialRecord] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return entries, trials, False
    except (OSError, ValueError) as err:
        artifacts.warn_damaged(f"{path}: unreadable ({type(err).__name__}); rebuilt it from the experiment folders")
        return entries, trials, False
    try:
        if json.loads(lines[0]) != {"format": FORMAT}:
            return entries, trials, False  # another version's index: rebuilt without a fuss
        for number, line in enumerate(lines[1:], start=2):
            try:
                item = json.loads(line)
            except ValueError:
                if number == len(lines):  # record() cut short by a crash: that experiment is simply read again
                    break
                raise
            if "trial" in item:
                trials[item["trial"]] = TuneTrialRecord(
                    item["trial"],
                    item["params"],
                    item["result"],
                    item["experiment"],
                    item.get("problem"),
                    item.get("torn"),
                )
            else:
                entries.pop(item["experiment"], None)  # a later line wins, and keeps the names in file order
                entries[item["experiment"]] = Entry(
                    item["experiment"],
                    item["signature"],
                    item["row"],
                    tuple(item["damage"]) if item.get("damage") else None,
                    problems=item.get("problems") or [],
                )
    except (ValueError, KeyError, TypeError, IndexError) as err:
        artifacts.warn_damaged(f"{path}: unreadable ({type(err).__name__}); rebuilt it from the experiment folders")
        return {}, {}, False
    entries = dict(sorted(entries.items()))  # record() appends out of order
    return entries, trials, True


def _entry_line(entry: Entry) -> str:
    return json.dumps(
        {
            "experiment": entry.experiment,
            "signature": entry.signature,
            "row": entry.row,
            "damage": list(entry.damage) if entry.damage else None,
            "problems": entry.problems,
        }
    )


def _write_index(runs_dir: Path, entries: list[Entry], trials: list[TuneTrialRecord]) -> None:
    def write(tmp: Path) -> None:
        lines = [json.dumps({"format": FORMAT})]
        lines += [_entry_line(entry) for entry in entries]
        lines += [
            json.dumps(
                {
                    "trial": t.folder,
                    "params": t.params,
                    "result": t.result,
                    "experiment": t.experiment,
                    "problem": t.problem,
                    "torn": t.torn,
                }
            )
            for t in trials
        ]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")

    _write_quietly(write, runs_dir / INDEX_DIR / ENTRIES)


def _write_quietly(write, path: Path) -> None:
    """Write through artifacts.atomic_path; a folder that cannot take it (read-only, full) goes without
    an index, and a value the file format cannot hold costs the same: the index is only a cache."""
    try:
        with artifacts.atomic_path(path) as tmp:
            write(tmp)
    except (OSError, ValueError, TypeError):
        pass
