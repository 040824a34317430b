"""The report's HTML tables: the leaderboard, the per-group summary, per-class F1 and the confusion
matrices (those two as colour-coded heat tables), and the cell formatters the figures' captions share.

Reads files and DataFrames only: must not import torch, ray or pydantic.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex

from raytrain import artifacts, results
from raytrain.formatting import format_duration
from raytrain.naming import DAMAGED, METRIC
from raytrain.results.tables import status_text

MAX_CONFUSION = 6  # confusion matrices, however many --detail asks for: past a few they stop being compared
MISSING = "–"  # what a cell shows for a value that is not there


def leaderboard_html(frame: pd.DataFrame, hyperparameters: list[str]) -> str:
    """The experiments as an HTML table in the frame's order; the row with the best val macro F1 is
    marked class="best". Every value is escaped."""
    metrics = [("val/accuracy", "val acc"), (METRIC, "val macro F1")]
    if "test/macro_f1" in frame.columns and frame["test/macro_f1"].notna().any():
        metrics += [("test/accuracy", "test acc"), ("test/macro_f1", "test macro F1")]
    heads = [
        "#",
        "experiment",
        "status",
        *hyperparameters,
        *(label for _, label in metrics),
        "best epoch",
        "epochs run",
        "duration",
    ]
    best = frame[METRIC].astype(float).idxmax() if frame[METRIC].notna().any() else None
    rows = []
    for position, (i, row) in enumerate(frame.iterrows(), start=1):
        description = row.get("description")
        name = esc(row["experiment"])
        if isinstance(description, str) and description.strip():
            name += f'<div class="desc">{esc(description)}</div>'
        cells = [_number_cell(position), f"<td>{name}</td>", _text_cell(status_text(row))]
        cells += [_text_cell(format_value(row.get(c))) for c in hyperparameters]
        cells += [_number_cell(format_metric(row.get(c))) for c, _ in metrics]
        cells += [_number_cell(format_value(row.get(c))) for c in ("best_epoch", "epochs_run")]
        cells.append(_number_cell(_format_duration(row.get("duration_s"))))
        rows.append(_row(cells, best=i == best))
    caption = "Sorted by val macro F1; the highlighted row is the best. " + (
        "Hyperparameter columns are the config keys that differ between experiments."
        if hyperparameters
        else "No config key differs between the experiments."
    )
    return _captioned_table(caption, heads, rows)


def group_table_html(frame: pd.DataFrame, summary: pd.DataFrame, hyperparameters: list[str]) -> str:
    """One row per group in `summary`'s order (best mean val macro F1 first, marked class="best"): n,
    the hyperparameters that differ between groups, macro F1 mean ± std and its 95% t interval, and
    mean accuracy. Every value is escaped."""
    heads = ["#", "group", "n", *hyperparameters, "val macro F1 (mean ± std)", "95% interval", "val acc (mean)"]
    settings = frame.groupby("group", sort=False)[hyperparameters].first() if hyperparameters else None
    rows = []
    for position, (_, row) in enumerate(summary.iterrows(), start=1):
        group = row["group"]
        cells = [_number_cell(position), _text_cell(group), _number_cell(int(row["n"]))]
        cells += [_text_cell(format_value(settings.loc[group, c])) for c in hyperparameters]
        spread = f"{format_metric(row['macro_f1/mean'])} ± {format_metric(row['macro_f1/std'])}"
        cells += [
            _number_cell(spread),
            _number_cell(_format_interval(row["macro_f1/low"], row["macro_f1/high"])),
            _number_cell(format_metric(row["accuracy/mean"])),
        ]
        rows.append(_row(cells, best=position == 1))
    left_out = sorted(set(frame["group"]) - set(summary["group"]))
    caption = (
        "One row per experiment repeated over seeds, sorted by mean val macro F1; n is its finished seeds, and "
        "unfinished or failed ones are left out. The interval is the 95% Student t interval of the mean "
        "(n − 1 degrees of freedom): with 2–3 seeds it is wide, and with one seed there is none. "
        "To test a group against a baseline seed by seed: <code>raytrain compare --baseline NAME</code>."
    )
    if left_out:
        caption += f" No seed finished yet: {esc(', '.join(left_out))}."
    return _captioned_table(caption, heads, rows)


def per_class_html(frame: pd.DataFrame, total: int | None = None) -> str:
    classes = results.class_names(frame, "val")
    if not classes:
        return "<p>No per-class val metrics yet.</p>"
    values = frame[[f"val/f1/{c}" for c in classes]].to_numpy(dtype=float)
    # viridis is dark at the low end: white text there
    table = heat_table(
        values,
        list(frame["experiment"]),
        classes,
        cmap="viridis",
        white_text=lambda v: v < 0.55,
        corner="experiment",
        label="val F1 per class at each experiment's best epoch",
    )
    caption = (
        "Val F1 per class at each experiment's best epoch, rows in leaderboard order. A class with F1 near 0 is "
        "one the model never gets right."
    )
    if total and total > len(values):
        caption += f" The best {len(values)} of {total} experiments; the CSV has every one's per-class columns."
    return table + f'\n<p class="caption">{caption}</p>'


def confusion_html(runs_dir: Path, frame: pd.DataFrame, detail: int) -> str:
    """The val confusion matrices of the best `detail` finished experiments (MAX_CONFUSION at most),
    side by side."""
    shown = []
    for _, row in frame.iterrows():
        folder = artifacts.experiment_dir(runs_dir, row["experiment"])
        # results.load checked the folder: a damaged one (or one half published) is not shown
        if row["status"] != DAMAGED and (folder / artifacts.BEST_CONFUSION).is_file():
            shown.append((row["experiment"], folder))
        if len(shown) == min(detail, MAX_CONFUSION):
            break
    if not shown:
        return "<p>No finished experiment has a confusion matrix yet.</p>"
    caption = (
        f"The best {len(shown)} finished experiment{'s' if len(shown) != 1 else ''} by val macro F1, on the val "
        "split at the best epoch. Rows are the true class and sum to 1, so the diagonal is each class's recall; "
        "n is the number of val images of that class."
    )
    matrices = [_confusion_table(name, folder) for name, folder in shown]
    return '<div class="row">\n' + "\n".join(matrices) + f'\n</div>\n<p class="caption">{caption}</p>'


def _confusion_table(name: str, folder: Path) -> str:
    """One experiment's best-epoch val confusion matrix, rows normalised, as a heat table."""
    matrix = np.load(folder / artifacts.BEST_CONFUSION).astype(float)
    metrics = artifacts.read_json(folder / artifacts.BEST_METRICS)
    classes = metrics["class_names"]
    support = matrix.sum(axis=1, keepdims=True)
    # a class with no val images has an all-zero row: show zeros rather than divide by zero
    normed = np.divide(matrix, support, out=np.zeros_like(matrix), where=support > 0)
    rows = [f"{c} (n={int(n)})" for c, n in zip(classes, support[:, 0])]
    title = f"{name}: epoch {metrics['epoch']}, val macro F1 {metrics['macro_f1']:.3f}"
    # Blues is dark at the high end: white text there
    table = heat_table(
        normed,
        rows,
        classes,
        cmap="Blues",
        white_text=lambda v: v > 0.6,
        corner="true \\ predicted",
        label=f"confusion matrix of {name}",
        vertical_heads=True,
    )
    return f'<figure class="matrix"><figcaption>{esc(title)}</figcaption>\n{table}</figure>'


def heat_table(
    values: np.ndarray,
    row_labels: list[str],
    column_labels: list[str],
    *,
    cmap: str,
    white_text,
    corner: str,
    label: str,
    vertical_heads: bool = False,
) -> str:
    """A matrix of numbers in [0, 1] as an HTML table whose cells are coloured by `cmap`, with the
    number written in each (white where `white_text(value)` says the colour is dark, "–" on grey where
    it is missing). A table, not a picture: the numbers stay exact and selectable at any zoom, and it
    costs nothing to make, where drawing the same heatmaps with matplotlib took a second."""
    colours = colormaps[cmap](np.clip(np.nan_to_num(values), 0.0, 1.0))
    head_class = ' class="vertical"' if vertical_heads else ""
    heads = f"<th>{esc(corner)}</th>" + "".join(f"<th{head_class}><span>{esc(c)}</span></th>" for c in column_labels)
    rows = []
    for label_text, row, row_colours in zip(row_labels, values, colours):
        cells = []
        for value, colour in zip(row, row_colours):
            if np.isnan(value):
                cells.append(f'<td class="missing">{MISSING}</td>')
                continue
            ink = "#fff" if white_text(value) else "#000"
            cells.append(f'<td style="background:{to_hex(colour)};color:{ink}">{value:.2f}</td>')
        rows.append(f"<tr><th>{esc(label_text)}</th>{''.join(cells)}</tr>")
    return f'<table class="heat" aria-label="{esc(label)}">\n<thead><tr>{heads}</tr></thead>\n' + _table_body(rows)


# --- table parts: the leaderboard and the group table are built alike ----------------------------------


def _captioned_table(caption: str, heads: list[str], rows: list[str]) -> str:
    """A caption (HTML, already escaped) over a table with a header row of `heads` (plain text)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    return f'<p class="caption">{caption}</p>\n<table>\n<thead><tr>{head}</tr></thead>\n' + _table_body(rows)


def _table_body(rows: list[str]) -> str:
    return "<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def _row(cells: list[str], *, best: bool) -> str:
    mark = ' class="best"' if best else ""
    return f"<tr{mark}>{''.join(cells)}</tr>"


def _text_cell(value) -> str:
    return f"<td>{esc(value)}</td>"


def _number_cell(value) -> str:
    """A right-aligned cell, so that the digits of a column line up."""
    return f'<td class="num">{esc(value)}</td>'


# --- formatting --------------------------------------------------------------------------------------


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def format_metric(value) -> str:
    if value is None or pd.isna(value):
        return MISSING
    return f"{float(value):.3f}"


def _format_interval(low, high) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return MISSING
    return f"[{float(low):.3f}, {float(high):.3f}]"


def _format_duration(seconds) -> str:
    return MISSING if pd.isna(seconds) else format_duration(seconds)


def esc(value) -> str:
    """`value` as text safe inside HTML, attribute values included."""
    return html.escape(str(value), quote=True)
