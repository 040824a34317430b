"""raytrain's shared vocabulary, import-free: experiment names, statuses, metric keys, dotted knobs.

Every package reads these names (the readers without loading pydantic, the driver without torch), so
they live here once: a second copy elsewhere is a bug waiting for the first one to change.
Standard library only.
"""

from __future__ import annotations

import re

# ---- experiment names
# `<name>/seed-<seed>` is one repeat of `<name>`; `<search>/t007` the 7th trial an adaptive search
# proposed. A user's own name is one safe path component; only raytrain adds the member suffix.
NAME_CHARS = r"[A-Za-z0-9_.\-]+"
SEED_SUFFIX = "/seed-"
MEMBER_FOLDER = re.compile(r"seed-[0-9]+|t[0-9]{3,}")  # runs/<name>/seed-2/, runs/<search>/t007/
# A name becomes a folder (runs/<name>/, _tune/<sweep>/, TensorBoard's) and part of file names
# (<sweep>.sweep.json): well under the 255 bytes a file system allows in one component.
MAX_NAME_CHARS = 100
# raytrain's own files in runs/ end so (experiment_log.jsonl, results.csv, report.html, <sweep>.lock):
# an experiment of such a name would turn one of them into a folder
RESERVED_ENDINGS = (".jsonl", ".json", ".csv", ".parquet", ".html", ".yaml", ".lock", ".tmp", ".pt", ".npz", ".npy")


def name_problem(name: str) -> str | None:
    """Why `name` (an experiment's, a search's or a sweep's own name, without a member suffix) cannot
    be one folder inside runs/, or None. A name that passes cannot leave runs/ (no `..`, no `/`), hide
    (a leading `.`), land in raytrain's own folders (`_tune`, `_index`: a leading `_`) or replace one
    of its files."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long; the limit is {MAX_NAME_CHARS} (it names folders and files)"
    if not re.fullmatch(NAME_CHARS, name):
        return f"may hold only letters, digits, '_', '-' and '.', got {name!r}"
    if name[0] in "._":
        return f"must not start with '.' or '_' (runs/ keeps raytrain's own folders so: _tune, _index), got {name!r}"
    ending = next((e for e in RESERVED_ENDINGS if name.lower().endswith(e)), None)
    if ending:
        return (
            f"must not end in {ending!r}: raytrain's own files in runs/ do (experiment_log.jsonl, results.csv), "
            f"got {name!r}"
        )
    return None


def experiment_name_problem(name: str) -> str | None:
    """name_problem for an experiment's name as configs hold it: a user's own name, or raytrain's
    `<name>/seed-2` / `<search>/t007` for the members it made."""
    own, _, member = name.partition("/")
    if member and not MEMBER_FOLDER.fullmatch(member):
        return f"may hold only letters, digits, '_', '-' and '.', got {name!r}"
    return name_problem(own)


def repeat_name(name: str, seed: int) -> str:
    """The name of `name`'s repeat with `seed`: `baseline/seed-2`."""
    return f"{name}{SEED_SUFFIX}{seed}"


def adaptive_trial_name(search_name: str, number: int) -> str:
    """The name of the search's `number`-th proposed trial (from 1): `lr_search/t007`."""
    return f"{search_name}/t{number:03d}"


def group_of(experiment: str) -> str:
    """The experiment a repeat belongs to: `baseline/seed-2` -> `baseline`. A searched trial
    (`lr_search/t007`) is its own group: each is a different point."""
    return experiment.split(SEED_SUFFIX)[0]


def search_of(experiment: str) -> str | None:
    """The adaptive search a trial belongs to: `lr_search/t007` -> `lr_search`; None for others."""
    search, sep, trial = experiment.rpartition("/t")
    return search if sep and trial.isdigit() and "/" not in search else None


# ---- statuses: what experiment_log.jsonl, results.load and compare call an experiment's state
COMPLETED, PRUNED, FAILED = "completed", "pruned", "failed"
FINISHED_STATUSES = (COMPLETED, PRUNED)  # published to runs/ with best.pt; a pruned one has no test
UNFINISHED = "unfinished"  # a trial of a sweep still running or interrupted (read from runs/_tune)
DAMAGED = "damaged"  # a folder missing a file or holding an unreadable one


# ---- what Tune and the readers call a trial's numbers
METRIC, MODE = "val/macro_f1", "max"  # what "best" means everywhere: checkpoints, results, reports


def lower_is_better(column: str) -> bool:
    """Whether less of `column` is better: a loss or a duration; every other metric is a score."""
    return column.endswith("loss") or column == "duration_s"


SPLITS = ("val", "test")
# A trial's Tune config is {"experiment": <resolved config dict>}: one grid over whole experiments
# puts every config of a sweep into one Tuner, whatever keys each one changes.
EXPERIMENT_KEY = "experiment"
# Reported with every result; Tune keeps the checkpoint ranked highest and the latest one. The rank
# is the best epoch whose weights a checkpoint holds (its best.pt), less a half where it only
# refers to an earlier checkpoint's best.pt: so the one holding the current best weights is kept.
CHECKPOINT_RANK = "checkpoint_rank"
# True in the one result a restored trial reports when it had already finished and been published
# (a driver killed before Tune recorded its end): its last epoch again, not a new one
REPLAYED = "replayed"


# ---- knobs: one name per knob, the YAML path `training.lr` = `--set training.lr=` = search key = column
SEED_KNOB = "other.seed"
SEARCH_SPACE = "search.space"  # one knob per entry: kept whole when a config is flattened


def dotted(config: dict, prefix: str = "") -> dict:
    """A (resolved) config as dotted keys: {"training": {"lr": 1e-3}} -> {"training.lr": 1e-3}.
    Empty mappings and the search space stay values of their own."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" != SEARCH_SPACE:
            out |= dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def first_line(err: BaseException, limit: int = 300, *, typed: bool = False) -> str:
    """An exception's message as one line for ours: `[Errno 28] No space left on device`, or with
    `typed`, `OSError: [Errno 28] No space left on device`. The rest is in the traceback."""
    line = (str(err).splitlines() or [""])[0][:limit]
    return f"{type(err).__name__}: {line}" if typed else line
