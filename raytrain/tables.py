"""Terminal tables (rich), rendered to text so the CLI prints them and tests read them.

Presentation only: takes plans and DataFrames already filtered and sorted. No Ray, no torch.
"""

from __future__ import annotations

import shutil

import pandas as pd
from rich.console import Console
from rich.table import Table

from raytrain.plan import SweepPlan

STATUS_TEXT = {
    "new": "to run", "done": "done (skipped)", "changed": "done, config changed (skipped)",
    "damaged": "damaged (to run again, which repairs it)",
}


def terminal_width() -> int:
    # the real terminal width where there is one; wide in pipes and files, where nothing wraps
    return shutil.get_terminal_size((200, 24)).columns


def render(table: Table) -> str:
    console = Console(width=terminal_width(), record=True, file=_Discard(), color_system=None)
    console.print(table)
    return console.export_text().rstrip()


def natural_width(table: Table) -> int:
    """The width the table takes when nothing has to be squeezed."""
    return Console(width=10_000, file=_Discard()).measure(table).maximum


def plan_table(plan: SweepPlan) -> str:
    table = Table(title=f"sweep {plan.name}: {len(plan.to_run)} of {len(plan.trials)} to run", title_justify="left")
    for column in ("experiment", "status", "differs from baseline", "per trial"):
        table.add_column(column, overflow="fold")
    for trial in plan.trials:
        status = "to run (--force)" if plan.force and trial.status not in ("new", "damaged") else STATUS_TEXT[trial.status]
        changes = ", ".join(
            f"{key}={_short(new)}" for key, (_, new) in trial.changes.items() if not key.startswith(("resources.", "search."))
        )
        name = trial.name
        if trial.adaptive:
            search = trial.config.search
            name = f"{trial.name}/t001..t{search.num_samples:03d}"
            status = f"{status}: up to {search.num_samples} trials, proposed by {search.algorithm}"
            fixed = [f"{key}={_short(new)}" for key, (_, new) in trial.changes.items()
                     if not key.startswith(("resources.", "search.")) and key not in search.space]
            changes = ", ".join([f"searches {', '.join(search.space)}", *fixed])
        resources = trial.config.resources
        gpu = "auto" if resources.gpu is None else f"{resources.gpu:g}"
        table.add_row(name, status, changes or "-", f"{resources.cpu:g} CPU, {gpu} GPU")
    return render(table)


def _short(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def status_text(row: pd.Series) -> str:
    """`completed`, or `pruned (epoch 2)`: where the scheduler stopped it."""
    status = str(row.get("status"))
    if status == "pruned" and pd.notna(row.get("epochs_run")):
        return f"pruned (epoch {int(row['epochs_run'])})"
    return status


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def compare_table(
    frame: pd.DataFrame,
    *,
    split: str,
    sort: str,
    hyperparameters: list[str],
    classes: list[str],
    baseline: tuple[str, float] | None = None,
    comparisons: pd.DataFrame | None = None,
) -> str:
    """The leaderboard: rows as given (already sorted and cut), the knobs that differ, headline
    metrics, the delta to the baseline, per-class F1, best epoch, duration and status. Per-class
    columns are left out when the terminal is too narrow for them (--per-class shows them)."""
    options = dict(split=split, sort=sort, hyperparameters=hyperparameters, baseline=baseline, comparisons=comparisons)
    table = _leaderboard(frame, classes=classes, **options)
    if classes and natural_width(table) > terminal_width():
        table = _leaderboard(frame, classes=[], **options)
        table.caption = "per-class F1 left out to fit the terminal: --per-class shows it"
    return render(table)


def _leaderboard(frame, *, split, sort, hyperparameters, classes, baseline, comparisons) -> Table:
    title = f"{len(frame)} experiment(s), {split} split, sorted by {sort}"
    if classes:
        title += f"; per-class columns are F1 ({', '.join(classes)})"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("experiment", overflow="fold", min_width=10)
    for key in hyperparameters:
        table.add_column(key, overflow="fold")
    table.add_column("accuracy", justify="right", no_wrap=True)
    table.add_column("macro F1", justify="right", no_wrap=True)
    if baseline is not None:
        table.add_column(f"Δ vs {baseline[0]}", justify="right", no_wrap=True)
    if comparisons is not None:
        _add_comparison_columns(table)
    for cls in classes:
        table.add_column(cls[:5], justify="right", no_wrap=True)  # 5 letters tell FER's classes apart
    table.add_column("best epoch", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for rank, (_, row) in enumerate(frame.iterrows(), start=1):
        macro = row.get(f"{split}/macro_f1")
        cells = [str(rank), str(row["experiment"]), *(_short(row.get(k)) for k in hyperparameters)]
        cells += [_number(row.get(f"{split}/accuracy")), _number(macro)]
        if baseline is not None:
            name, reference = baseline
            cells.append("-" if row["experiment"] == name else _signed(macro - reference))
        if comparisons is not None:
            cells += _comparison_cells(comparisons, row["group"])
        cells += [_number(row.get(f"{split}/f1/{cls}")) for cls in classes]
        cells += [_short(row.get("best_epoch")), _duration(row.get("duration_s")), status_text(row)]
        table.add_row(*cells)
    return table


def repeats_table(
    summary: pd.DataFrame,
    *,
    split: str,
    hyperparameters: pd.DataFrame,
    classes: list[str],
    baseline: str | None = None,
    comparisons: pd.DataFrame | None = None,
) -> str:
    """Experiments with repeats: one row per group, mean ± std over its seeds, the 95% t-interval,
    and against the baseline the paired difference with its interval and Holm-adjusted p."""
    title = f"{len(summary)} experiment(s) over their seeds, {split} split, mean ± std and 95% interval"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("experiment", overflow="fold", min_width=10)
    table.add_column("n", justify="right", no_wrap=True)
    for key in hyperparameters.columns:
        table.add_column(key, overflow="fold")
    table.add_column("macro F1", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    table.add_column("accuracy", justify="right", no_wrap=True)
    if comparisons is not None:
        _add_comparison_columns(table, title=f"Δ macro F1 vs {baseline}")
    for cls in classes:
        table.add_column(cls[:5], justify="right", no_wrap=True)
    for rank, (_, row) in enumerate(summary.iterrows(), start=1):
        group = row["group"]
        cells = [str(rank), str(group), str(row["n"]), *(_short(v) for v in hyperparameters.loc[group])]
        cells += [
            f"{_number(row['macro_f1/mean'])} ± {_number(row['macro_f1/std'])}",
            f"[{_number(row['macro_f1/low'])}, {_number(row['macro_f1/high'])}]",
            _number(row["accuracy/mean"]),
        ]
        if comparisons is not None:
            cells += _comparison_cells(comparisons, group) if group != baseline else ["baseline", "", ""]
        cells += [_number(row[f"f1/{cls}/mean"]) for cls in classes]
        table.add_row(*cells)
    table.caption = "ns: not significant at 5% after Holm correction across the compared experiments"
    return render(table)


def _add_comparison_columns(table: Table, title: str = "paired Δ") -> None:
    table.add_column(title, justify="right", no_wrap=True)
    table.add_column("Δ 95% interval", justify="right", no_wrap=True)
    table.add_column("p (Holm)", justify="right", no_wrap=True)


def _comparison_cells(comparisons: pd.DataFrame, group: str) -> list[str]:
    from raytrain.analysis import format_p

    match = comparisons[comparisons["group"] == group] if len(comparisons) else comparisons
    if match.empty:
        return ["-", "-", "-"]
    c = match.iloc[0]
    if c["p_holm"] is None or pd.isna(c["p_holm"]):
        return [_signed(c["diff"]), "-", "n<2"]
    marker = "" if c["significant"] else " ns"
    return [_signed(c["diff"]), f"[{_signed(c['low'])}, {_signed(c['high'])}]", format_p(c["p_holm"]) + marker]


def per_class_table(frame: pd.DataFrame, *, split: str, classes: list[str]) -> str:
    """Class x experiment matrix of F1, one column per experiment (in the frame's order)."""
    table = Table(title=f"per-class F1, {split} split", title_justify="left")
    table.add_column("class")
    for name in frame["experiment"]:
        table.add_column(str(name), justify="right", overflow="fold")
    for cls in classes:
        table.add_row(cls, *(_number(v) for v in frame[f"{split}/f1/{cls}"]))
    table.add_row("macro", *(_number(v) for v in frame[f"{split}/macro_f1"]))
    return render(table)


def _number(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


def _signed(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:+.3f}"


def _duration(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
