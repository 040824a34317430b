"""Terminal tables (rich), rendered to text so the CLI prints them and tests read them.

Presentation only: takes DataFrames already filtered and sorted. No Ray, no torch, no pydantic.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.table import Table

from raytrain.formatting import format_duration
from raytrain.naming import PRUNED


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


def short_value(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def status_text(row: pd.Series) -> str:
    """`completed`, or `pruned (epoch 2)`: where the scheduler stopped it."""
    status = str(row.get("status"))
    if status == PRUNED and pd.notna(row.get("epochs_run")):
        return f"pruned (epoch {int(row['epochs_run'])})"
    return status


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def compare_table(
    table: pd.DataFrame, *, split: str, sort: str, classes: list[str], baseline: str | None = None
) -> str:
    """The leaderboard of leaderboard.experiments_table: rank, name, the knobs that differ, headline
    metrics, the difference to the baseline, per-class F1, best epoch, duration and status."""
    title = f"{len(table)} experiment(s), {split} split, sorted by {sort}"
    paired = "delta/low" in table
    columns = [
        _Column("#", _strings(table["rank"])),
        _Column("experiment", _strings(table["experiment"]), justify="left"),
        *_data_column(table),
        *_knob_columns(table),
        _Column("accuracy", [_number(v) for v in table[f"{split}/accuracy"]], drop_as="accuracy"),
        _Column("macro F1", [_number(v) for v in table[f"{split}/macro_f1"]]),
    ]
    if "delta" in table and not paired:
        columns.append(
            _Column(
                f"Δ vs {baseline}",
                ["-" if n == baseline else _signed(d) for n, d in zip(table["experiment"], table["delta"])],
            )
        )
    if paired:
        columns += _delta_columns(table, baseline=None)
    columns += _class_columns(table, [f"{split}/f1/{c}" for c in classes], classes)
    columns += [
        _Column("best epoch", [short_value(v) for v in table["best_epoch"]], drop_as="best epoch"),
        _Column("duration", [_duration(v) for v in table["duration_s"]], drop_as="duration"),
        _Column("status", [status_text(row) for _, row in table.iterrows()], justify="left"),
    ]
    drop_order = ["per-class F1", "duration", "best epoch", "Δ 95% interval", "accuracy", *_knob_drop_order(table)]
    return _fit(title, columns, drop_order, per_class_note=bool(classes))


def repeats_table(table: pd.DataFrame, *, split: str, classes: list[str], baseline: str | None = None) -> str:
    """Experiments with repeats (leaderboard.repeats_table): one row per group, mean ± std over its
    seeds, the 95% t-interval, and against the baseline the paired difference with its interval and
    Holm-adjusted p."""
    title = f"{len(table)} experiment(s) over their seeds, {split} split, mean ± std and 95% interval"
    mean, std, low, high = (table[f"{split}/macro_f1/{s}"] for s in ("mean", "std", "low", "high"))
    columns = [
        _Column("#", _strings(table["rank"])),
        _Column("experiment", _strings(table["experiment"]), justify="left"),
        *_data_column(table),
        _Column("n", _strings(table["n"])),
        *_knob_columns(table),
        _Column("macro F1", [f"{_number(m)} ± {_number(s)}" for m, s in zip(mean, std)]),
        _Column("95% interval", [f"[{_number(a)}, {_number(b)}]" for a, b in zip(low, high)], drop_as="95% interval"),
        _Column("accuracy", [_number(v) for v in table[f"{split}/accuracy/mean"]], drop_as="accuracy"),
    ]
    if "delta" in table:
        columns += _delta_columns(table, baseline=baseline, title=f"Δ vs {baseline}")
    columns += _class_columns(table, [f"{split}/f1/{c}/mean" for c in classes], classes)
    drop_order = ["per-class F1", "accuracy", "Δ 95% interval", "95% interval", *_knob_drop_order(table)]
    note = "ns: not significant at 5% after Holm correction across the compared experiments"
    return _fit(title, columns, drop_order, per_class_note=bool(classes), notes=[note])


@dataclass
class _Column:
    header: str
    cells: list[str]
    justify: str = "right"
    drop_as: str | None = None  # its name in the "left out to fit" note; None: always shown


def _fit(title: str, columns: list[_Column], drop_order: list[str], *, per_class_note: bool, notes=()) -> str:
    """The table at the terminal's width: while it is too wide, the next group in `drop_order` is
    left out, and a note says which. Names and the headline metric always show, unsqueezed."""
    width = terminal_width()
    left_out: list[str] = []
    for group in drop_order:
        if natural_width(_table("", columns, ())) <= width:  # the title and notes wrap; columns do not
            break
        if any(c.drop_as == group for c in columns):
            columns = [c for c in columns if c.drop_as != group]
            left_out.append(group)
    if per_class_note and "per-class F1" not in left_out:
        notes = [*notes, "per-class columns are F1"]
    if left_out:
        hint = "--per-class shows per-class F1; " if per_class_note and "per-class F1" in left_out else ""
        notes = [*notes, f"left out to fit {width} columns: {', '.join(left_out)} ({hint}--export writes every column)"]
    return render(_table(title, columns, notes))


def _table(title: str, columns: list[_Column], notes) -> Table:
    table = Table(title=title, title_justify="left", caption="\n".join(notes) or None, caption_justify="left")
    for column in columns:
        # no column wraps: a name or value folded over lines is what made narrow tables unreadable
        table.add_column(column.header, justify=column.justify, no_wrap=True, min_width=len(column.header))
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


def _data_column(table: pd.DataFrame) -> list[_Column]:
    """Which data each row was trained on, where the rows differ in it (leaderboard.compare adds it):
    never left out, since the rows cannot be compared without it."""
    if "data" not in table:
        return []
    return [_Column("data", [short_value(v) for v in table["data"]], justify="left")]


def _knob_columns(table: pd.DataFrame) -> list[_Column]:
    return [_Column(key, [short_value(v) for v in table[key]], justify="left", drop_as=key) for key in _knobs(table)]


def _knobs(table: pd.DataFrame) -> list[str]:
    """The knob columns of a leaderboard frame: the dotted config keys that differ between rows."""
    return [c for c in table.columns if "." in c and "/" not in c]


def _knob_drop_order(table: pd.DataFrame) -> list[str]:
    return list(reversed(_knobs(table)))  # the last knob first: the config's own order ranks them


def _delta_columns(table: pd.DataFrame, *, baseline: str | None, title: str = "paired Δ") -> list[_Column]:
    cells = [
        _delta_cells(row, is_baseline=baseline is not None and row["experiment"] == baseline)
        for _, row in table.iterrows()
    ]
    delta, interval, p = (list(column) for column in zip(*cells)) if cells else ([], [], [])
    return [
        _Column(title, delta),
        _Column("Δ 95% interval", interval, drop_as="Δ 95% interval"),
        _Column("p (Holm)", p),
    ]


def _delta_cells(row: pd.Series, *, is_baseline: bool) -> tuple[str, str, str]:
    """One row's paired difference, its interval and its Holm-adjusted p, as text."""
    from raytrain.results.analysis import format_p

    if is_baseline:
        return "baseline", "", ""
    if row["delta"] is None or pd.isna(row["delta"]):
        return "-", "-", "-"
    if row["p_holm"] is None or pd.isna(row["p_holm"]):
        return _signed(row["delta"]), "-", "n<2"
    interval = f"[{_signed(row['delta/low'])}, {_signed(row['delta/high'])}]"
    return _signed(row["delta"]), interval, format_p(row["p_holm"]) + ("" if row["significant"] else " ns")


def _class_columns(table: pd.DataFrame, names: list[str], classes: list[str]) -> list[_Column]:
    # 5 letters tell FER's classes apart
    return [
        _Column(cls[:5], [_number(v) for v in table[name]], drop_as="per-class F1") for name, cls in zip(names, classes)
    ]


def _strings(values) -> list[str]:
    return [str(v) for v in values]


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
    return "-" if pd.isna(seconds) else format_duration(seconds)


def importance_table(found) -> str:
    """`raytrain importance`: importance.analyze's Importance as one row per knob, most important first:
    its share of the metric's variance beyond noise with the 95% interval, the Holm-corrected p (`ns`:
    not distinguishable from noise), and its effect; then the strongest interaction and what the
    method assumes. With too few runs, why there is no table."""
    from raytrain.results.analysis import format_p

    header = f"what mattered to {found.metric}: {len(found.runs)} finished runs, {found.design}"
    left_out = ", ".join(f"{count} {reason}" for reason, count in found.left_out.items())
    left_out_line = f"left out: {left_out} (only completed runs with {found.metric} count)" if left_out else None
    if found.too_few:
        lines = [header, f"too few experiments for an answer: {found.reason}", left_out_line]
        return "\n".join(line for line in lines if line)
    table = found.table
    columns = [
        _Column("#", [str(i) for i in range(1, len(table) + 1)]),
        _Column("knob", _strings(table["knob"]), justify="left"),
        _Column("importance", [_number(v) for v in table["importance"]]),
        _Column("95% interval", [f"[{_number(a)}, {_number(b)}]" for a, b in zip(table["low"], table["high"])]),
        _Column(
            "p (Holm)",
            [format_p(p) + ("" if matters else " ns") for p, matters in zip(table["p_holm"], table["matters"])],
        ),
        _Column("effect: mean [95% interval]", _strings(table["effect"]), justify="left", drop_as="effect"),
    ]
    notes = [*found.notes(_number), f"method: {found.assumes}"]
    if left_out_line:
        notes.append(left_out_line)
    return _fit(f"{header}; {found.method}", columns, ["effect"], per_class_note=False, notes=notes)
