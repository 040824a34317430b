"""The comparison `raytrain compare` shows, as data: one DataFrame per table, with numbers, not text.

tables.py renders these frames for the terminal. `compare --export` writes the export beside each:
the rows shown, in the order shown, with every column the seed's export promised (every config key,
every metric of the split, per class precision, recall, F1 and support) and the baseline comparison's
every number. Column names follow results.load: metrics carry their split (`val/macro_f1`), repeats
add the statistic (`val/macro_f1/mean`), and a baseline comparison adds `delta` columns.
No Ray, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from raytrain import lineage
from raytrain.errors import UserError
from raytrain.naming import COMPLETED, SEED_KNOB, lower_is_better
from raytrain.provenance import DATA_FINGERPRINT
from raytrain.results import analysis
from raytrain.results.load import class_names, hyperparameter_columns, split_metrics

AT_END = " at end"  # `training.lr at end`: a population member's value at its last epoch


@dataclass
class Leaderboard:
    """What `compare` shows: the table (one row per experiment, or per group with repeats, or the
    frame itself for --per-class), in the order shown, and what it was read from."""

    table: pd.DataFrame
    runs: pd.DataFrame  # one row per run (every seed) of the experiments in the table
    classes: list[str]
    sort_column: str
    repeats: bool
    ranked_by_test: bool
    export: pd.DataFrame  # `--export`: the table's rows in its order, with every column (experiments_export)
    mixed_data: str | None = None  # the warning when the rows were trained on different data (analysis.mixed_data)


def compare(
    frame: pd.DataFrame,
    runs_dir: Path,
    *,
    split: str = "val",
    sort: str = "macro_f1",
    filter_prefix: str | None = None,
    baseline: str | None = None,
    per_class: bool = False,
) -> Leaderboard:
    """results.load's frame -> the leaderboard: filtered by name prefix (or `data=FINGERPRINT`: the
    runs trained on that data), sorted by `sort` (a metric of `split`, or a column), repeats ranked by
    their mean, each compared with `baseline` (paired over seeds or images where it can be). Bad
    choices are UserErrors naming the option and the fix. Rows trained on different data get a
    `data` column and the leaderboard's `mixed_data` warning."""
    if filter_prefix:
        frame = _filtered(frame, filter_prefix)
    if f"{split}/macro_f1" not in frame or frame[f"{split}/macro_f1"].isna().all():
        raise UserError(f"--split {split}: no experiment has {split} metrics (does the data have a {split}/ split?)")
    column = sort if ("/" in sort or sort in frame) else f"{split}/{sort}"
    if column not in frame:
        known = ", ".join(c.split("/", 1)[1] for c in frame.columns if c.startswith(f"{split}/"))
        raise UserError(f"--sort {sort}: no such metric; use one of: {known}, duration_s, best_epoch")
    frame = frame.sort_values(column, ascending=lower_is_better(column), na_position="last", kind="stable")
    comparisons = None
    if baseline:
        if baseline not in set(frame["group"]):
            raise UserError(
                f"--baseline {baseline}: no such experiment; choose from {', '.join(frame['group'].unique())}"
            )
        comparisons = analysis.compare_with_baseline(frame, runs_dir, baseline, split)
        if comparisons.empty:
            comparisons = None  # nothing to pair (no saved predictions): the plain difference only
    classes = class_names(frame, split)
    repeats = analysis.has_repeats(frame)
    hyperparameters = analysis.distinguishing_knobs(frame)
    ranked_by_test = split == "test" or column.startswith("test/")
    mixed = analysis.mixed_data(frame)
    if per_class:
        return Leaderboard(frame, frame, classes, column, repeats, ranked_by_test, export=frame, mixed_data=mixed)
    if repeats:
        # seeds are repeats, not rivals: rank the groups by their mean. Every metric is summarised
        # once, for the export; the table shows the few it has room for.
        summary = analysis.summarize_repeats(frame, split, split_metrics(frame, split))
        summary = summary.sort_values("macro_f1/mean", ascending=False, kind="stable")
        table = repeats_table(
            summary,
            split=split,
            classes=classes,
            baseline=baseline,
            hyperparameters=frame.groupby("group", sort=False)[hyperparameters].first(),
            comparisons=comparisons,
        )
        export = repeats_export(table, summary, frame, split=split, comparisons=comparisons, baseline=baseline)
        runs = frame[frame["group"].isin(table["experiment"])]
        if mixed:  # a group's runs on one dataset show its fingerprint; on several, all of them
            data = analysis.short_fingerprints(frame).groupby(frame["group"], sort=False)
            table.insert(2, analysis.DATA_COLUMN, table["experiment"].map(data.agg(_joined)).to_numpy())
        return Leaderboard(table, runs, classes, column, repeats, ranked_by_test, export=export, mixed_data=mixed)
    plain_baseline = None
    if baseline and comparisons is None:
        plain_baseline = (baseline, float(frame.loc[frame["group"] == baseline, f"{split}/macro_f1"].iloc[0]))
    table = experiments_table(
        frame,
        split=split,
        hyperparameters=hyperparameters,
        classes=classes,
        baseline=plain_baseline,
        comparisons=comparisons,
    )
    export = experiments_export(table, frame, split=split, comparisons=comparisons)
    if mixed:
        table.insert(2, analysis.DATA_COLUMN, analysis.short_fingerprints(frame).to_numpy())
    return Leaderboard(table, frame, classes, column, repeats, ranked_by_test, export=export, mixed_data=mixed)


def _filtered(frame: pd.DataFrame, filter_prefix: str) -> pd.DataFrame:
    """--filter PREFIX: the experiments whose name starts with it; --filter data=FINGERPRINT: those
    trained on that data (a prefix of its fingerprint, as compare shows it). Names hold no '='."""
    if filter_prefix.startswith(f"{analysis.DATA_COLUMN}="):
        wanted = filter_prefix.split("=", 1)[1]
        short = analysis.short_fingerprints(frame)
        kept = frame[frame[DATA_FINGERPRINT].astype(str).str.startswith(wanted)] if short.notna().any() else frame[:0]
        if kept.empty or not wanted:
            known = ", ".join(short.dropna().unique()) or "none: these runs predate provenance.json"
            raise UserError(f"--filter {filter_prefix}: no run was trained on data {wanted!r}; known: {known}")
        return kept
    kept = frame[frame["experiment"].str.startswith(filter_prefix)]
    if kept.empty:
        raise UserError(f"--filter {filter_prefix}: no experiment name starts with {filter_prefix!r}")
    return kept


def _joined(values: pd.Series) -> str | None:
    known = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    return "/".join(known) or None


def experiments_table(
    frame: pd.DataFrame,
    *,
    split: str,
    hyperparameters: list[str],
    classes: list[str],
    baseline: tuple[str, float] | None = None,
    comparisons: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per experiment, in the frame's order: rank, name, the knobs that differ, accuracy and
    macro F1, the difference to the baseline (plain with `baseline`, paired with `comparisons`),
    per-class F1, best epoch, duration and status."""
    table = pd.DataFrame({"rank": range(1, len(frame) + 1), "experiment": frame["experiment"].astype(str).to_numpy()})
    for key in hyperparameters:
        table[key] = frame[key].to_numpy()
    for column in lineage.final_value_columns(frame.columns):
        # a population member's knob as it ended (the column above: at its best epoch, config.yaml)
        table[f"{column[len(lineage.KNOB_PREFIX) :]}{AT_END}"] = frame[column].to_numpy()
    for metric in ("accuracy", "macro_f1"):
        table[f"{split}/{metric}"] = _column(frame, f"{split}/{metric}")
    if baseline is not None:
        name, reference = baseline
        table["delta"] = [
            None if n == name else m - reference for n, m in zip(table["experiment"], table[f"{split}/macro_f1"])
        ]
    if comparisons is not None:
        table = _with_comparisons(table, frame["group"].to_numpy(), comparisons, baseline_group=None)
    for cls in classes:
        table[f"{split}/f1/{cls}"] = _column(frame, f"{split}/f1/{cls}")
    for column in ("best_epoch", "duration_s", "status", "epochs_run"):
        table[column] = _column(frame, column)
    return table


def repeats_table(
    summary: pd.DataFrame,
    *,
    split: str,
    hyperparameters: pd.DataFrame,
    classes: list[str],
    baseline: str | None = None,
    comparisons: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per group of seeds, in the summary's order: rank, name, n, the knobs, macro F1's mean,
    std and 95% interval, accuracy's mean, the paired difference to the baseline, per-class F1 means."""
    groups = summary["group"].astype(str).to_numpy()
    table = pd.DataFrame({"rank": range(1, len(summary) + 1), "experiment": groups, "n": summary["n"].to_numpy()})
    for key in hyperparameters.columns:
        table[key] = hyperparameters.loc[groups, key].to_numpy()
    for statistic in ("mean", "std", "low", "high"):
        table[f"{split}/macro_f1/{statistic}"] = summary[f"macro_f1/{statistic}"].to_numpy()
    table[f"{split}/accuracy/mean"] = summary["accuracy/mean"].to_numpy()
    if comparisons is not None:
        table = _with_comparisons(table, groups, comparisons, baseline_group=baseline)
    for cls in classes:
        table[f"{split}/f1/{cls}/mean"] = summary[f"f1/{cls}/mean"].to_numpy()
    return table


def experiments_export(
    table: pd.DataFrame, frame: pd.DataFrame, *, split: str, comparisons: pd.DataFrame | None = None
) -> pd.DataFrame:
    """experiments_table's rows (built from `frame`, row for row) with every column: rank, name, every
    config key, the split's headline metrics (accuracy, macro F1, loss), the difference to the
    baseline with all of the paired test, every per-class metric (precision, recall, F1, support),
    best epoch, duration, status. Whole columns at a time: as cheap at 10,000 rows as at 10."""
    headline, per_class = _headline_and_per_class(frame, split)
    columns = {"rank": table["rank"].to_numpy(), "experiment": table["experiment"].to_numpy()}
    columns |= {key: frame[key].to_numpy() for key in hyperparameter_columns(frame)}
    columns |= {key: frame[key].to_numpy() for key in lineage.final_value_columns(frame.columns)}
    columns |= {f"{split}/{metric}": frame[f"{split}/{metric}"].to_numpy() for metric in headline}
    columns |= _comparison_export(table, frame["group"].to_numpy(), comparisons, baseline_group=None)
    columns |= {f"{split}/{metric}": frame[f"{split}/{metric}"].to_numpy() for metric in per_class}
    columns |= {name: table[name].to_numpy() for name in ("best_epoch", "duration_s", "status", "epochs_run")}
    if DATA_FINGERPRINT in frame:  # which data each row was trained on (provenance.json)
        columns[DATA_FINGERPRINT] = frame[DATA_FINGERPRINT].to_numpy()
    return pd.DataFrame(columns)


def repeats_export(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    frame: pd.DataFrame,
    *,
    split: str,
    comparisons: pd.DataFrame | None = None,
    baseline: str | None = None,
) -> pd.DataFrame:
    """repeats_table's rows (built from `summary`, row for row) with every column: rank, name, n,
    every config key (the seed as the list of seeds the n runs used), mean, std and 95% interval of
    every metric `summary` holds (analysis.summarize_repeats over split_metrics), and the paired
    difference to the baseline with all of its test."""
    groups = summary["group"].to_numpy()
    headline, per_class = _headline_and_per_class(frame, split)
    columns = {name: table[name].to_numpy() for name in ("rank", "experiment", "n")}
    knobs = hyperparameter_columns(frame)
    first = frame.groupby("group", sort=False)[knobs].first().loc[groups]
    columns |= {key: first[key].to_numpy() for key in knobs}
    if SEED_KNOB in columns:
        # the seed differs inside a group: its value is the seeds of the runs the statistics are over, in order
        done = frame[frame["status"] == COMPLETED].sort_values(SEED_KNOB, kind="stable")
        seeds, members = done[SEED_KNOB].to_numpy(), done.groupby("group", sort=False).indices
        columns[SEED_KNOB] = [seeds[members[group]].tolist() for group in groups]
    statistics = ("mean", "std", "low", "high")
    columns |= {f"{split}/{m}/{s}": summary[f"{m}/{s}"].to_numpy() for m in headline for s in statistics}
    columns |= _comparison_export(table, groups, comparisons, baseline_group=baseline)
    columns |= {f"{split}/{m}/{s}": summary[f"{m}/{s}"].to_numpy() for m in per_class for s in statistics}
    return pd.DataFrame(columns)


def _headline_and_per_class(frame: pd.DataFrame, split: str) -> tuple[list[str], list[str]]:
    """The split's metrics: the whole-split ones (`macro_f1`), then the per-class ones (`recall/happy`)."""
    metrics = split_metrics(frame, split)
    return [m for m in metrics if "/" not in m], [m for m in metrics if "/" in m]


# what analysis.compare_with_baseline says beyond the table's columns, under the names the export gives it
_COMPARISON_DETAILS = {"p_value": "p_value", "n_pairs": "n_pairs", "paired_test": "method"}


def _comparison_export(
    table: pd.DataFrame, groups, comparisons: pd.DataFrame | None, *, baseline_group: str | None
) -> dict:
    """The table's difference columns and, from a paired comparison, the rest of its numbers: the raw
    p-value, the pairs it was over and which test it was. Empty for the baseline and unpaired groups."""
    shown = ("delta", "delta/low", "delta/high", "p_holm", "significant")
    columns = {name: table[name].to_numpy() for name in shown if name in table}
    if comparisons is not None:
        by_group = comparisons.set_index("group").reindex(groups)
        is_baseline = groups == baseline_group
        columns |= {name: by_group[source].mask(is_baseline).to_numpy() for name, source in _COMPARISON_DETAILS.items()}
    return columns


def _with_comparisons(
    table: pd.DataFrame, groups, comparisons: pd.DataFrame, *, baseline_group: str | None
) -> pd.DataFrame:
    """The paired test's columns for each row's group; empty for the baseline and for groups it
    could not pair (no saved predictions, other images)."""
    by_group = comparisons.set_index("group") if len(comparisons) else None
    # the paired comparison's columns: mean difference in macro F1, its 95% interval, Holm-adjusted p
    source = {
        "delta": "diff",
        "delta/low": "low",
        "delta/high": "high",
        "p_holm": "p_holm",
        "significant": "significant",
    }
    for column, name in source.items():
        table[column] = [
            by_group.at[g, name] if by_group is not None and g in by_group.index and g != baseline_group else None
            for g in groups
        ]
    return table


def _column(frame: pd.DataFrame, name: str):
    return frame[name].to_numpy() if name in frame else [None] * len(frame)
