"""The HTML report: one self-contained page (leaderboard, learning curves, per-class F1, confusion
matrices, hyperparameter plots) built from results' DataFrames and the confusion-matrix files. With
repeats (one trial per seed) it adds a per-group summary and intervals, and draws groups, not trials.

Reads files and DataFrames only: must not import torch, ray, or the training and sweep code.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

# Figure + the Agg canvas, not pyplot: nothing registers in pyplot's global figure list (so nothing can
# leak or need closing) and a notebook that imports this module keeps its own backend.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator
from matplotlib.transforms import offset_copy

from raytrain import artifacts, results
from raytrain.errors import UserError
from raytrain.formatting import format_duration, is_missing
from raytrain.naming import search_of
from raytrain.results import analysis
from raytrain.results.tables import status_text

METRIC = results.METRIC
TOP_ROWS = 50  # leaderboard rows; the rest are counted, and all are in the CSV beside the page
TOP_DETAIL = 10  # experiments with learning curves, per-class F1 rows and confusion matrices
MANY_POINTS = 50  # past this a scatter's points are drawn small and see-through
NAMED_POINTS = 12  # up to this many points are named on a hyperparameter plot; more would be an unreadable blot
MAX_SEARCH_PLOTS = 10  # searches that get a plot against their knobs, the best first
MAX_INTERVALS = 10  # groups drawn with their interval and seeds in a hyperparameter plot; the rest as means
MAX_CONFUSION = 6  # confusion matrices, however many --detail asks for: past a few they stop being compared
MAX_NAMED = 10  # names listed in a header note (pruned, damaged, unfinished); the rest are counted
MAX_COLOURED = 10  # tab10 has 10 colours, and a legend past ~10 lines is unreadable: the rest go grey
LOG_SPAN = 10.0  # a positive hyperparameter whose max/min exceeds this is plotted on a log axis
DPI = 100  # 1 inch of figure = 100 px on the page
MAX_SIDE_BY_SIDE = 6  # groups per interval panel before macro F1 and accuracy stack instead of sitting side by side
INTERVALS_TITLE = "Mean and 95% interval over seeds"
# Margins in inches (left, right, bottom, top) of a plot whose every label is a number or one line of
# fixed text: they are known in advance, so its layout is set rather than solved. Constrained layout
# measures every tick label before the draw measures them again, which doubles the time to draw such
# a plot, and a 1,000-experiment page has a dozen of them. A plot with names or categories on it keeps
# constrained layout, which sizes its margins to whatever the names are.
FIXED_MARGINS = (0.75, 0.25, 0.6, 0.4)
PANEL_GAPS = (
    0.15,
    0.75,
)  # inches between fixed-layout panels: side by side (a shared y axis) and stacked (x labels between)


class ReportError(UserError):
    """There is nothing to report on (no runs folder, or no experiment in it)."""


def write_report(runs_dir: str | Path, out_path: str | Path, *, top: int = TOP_ROWS, detail: int = TOP_DETAIL) -> Path:
    """Write the report for `runs_dir` to `out_path` (atomically) and return that path. Every row
    of the leaderboard, however many, goes to a CSV beside it (report.csv for report.html)."""
    runs_dir, out_path = Path(runs_dir), Path(out_path)
    frame = _load(runs_dir)
    csv_path = out_path.with_suffix(".csv")
    results.write_table(frame, csv_path)
    os.chmod(csv_path, 0o644)
    page = render_report(runs_dir, frame=frame, top=top, detail=detail, csv_name=csv_path.name)
    with artifacts.atomic_path(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
        os.chmod(tmp, 0o644)  # mkstemp makes files owner-only; a report is made to be shared
    return out_path


def _load(runs_dir: Path) -> pd.DataFrame:
    if not runs_dir.is_dir():
        raise ReportError(
            f"{runs_dir}: no such folder; run a sweep first (raytrain sweep --data-root DATA --runs-dir {runs_dir})"
        )
    frame = results.load(runs_dir)
    if frame.empty:
        raise ReportError(
            f"{runs_dir}: no experiments to report on (no finished <experiment>/ folder and no trial under "
            f"{artifacts.TUNE_DIR}/); run a sweep first (raytrain sweep --data-root DATA --runs-dir {runs_dir})"
        )
    return frame.sort_values(METRIC, ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def render_report(
    runs_dir: Path,
    now: datetime | None = None,
    *,
    frame: pd.DataFrame | None = None,
    top: int = TOP_ROWS,
    detail: int = TOP_DETAIL,
    csv_name: str | None = None,
) -> str:
    """The whole page as one HTML string. The leaderboard shows the best `top` rows and counts the
    rest (all of them are in `csv_name`); learning curves, per-class F1 and confusion matrices are
    drawn for the best `detail`: past ten lines or matrices a page stops being read, and past a few
    hundred it takes seconds and gigabytes to draw."""
    runs_dir = Path(runs_dir)
    frame = _load(runs_dir) if frame is None else frame
    varying = results.varying_hyperparameters(frame)
    # (anchor, nav link, heading, content)
    if analysis.has_repeats(frame):
        summary = group_summary(frame)
        # the seed is the repeat axis, not a hyperparameter a group chose
        group_varying = [c for c in varying if c != analysis.SEED_COLUMN]
        order = _group_order(frame, summary)[:detail]
        history = results.load_history(runs_dir, list(frame.loc[frame["group"].isin(order), "experiment"]))
        leaderboard = (
            "<h3>Groups, over their seeds</h3>\n"
            + group_table_html(frame, summary.head(top), group_varying)
            + _more_line(len(summary) - top, "groups", csv_name)
            + "\n<h3>Every run</h3>\n"
            + leaderboard_html(frame.head(top), varying)
            + _more_line(len(frame) - top, "runs", csv_name)
        )
        sections = [
            ("leaderboard", "Leaderboard", "Leaderboard", leaderboard),
            (
                "intervals",
                "Intervals",
                INTERVALS_TITLE,
                intervals_html(frame, summary.head(detail), total=len(summary)),
            ),
            ("curves", "Learning curves", "Learning curves", group_curves_html(frame, history, summary, order=order)),
        ]
        hyperparameters = group_hyperparameters_html(frame, summary.head(top), group_varying, total=len(summary))
    else:
        history = results.load_history(runs_dir, list(frame["experiment"].head(detail)))
        sections = [
            (
                "leaderboard",
                "Leaderboard",
                "Leaderboard",
                leaderboard_html(frame.head(top), varying) + _more_line(len(frame) - top, "experiments", csv_name),
            ),
            (
                "curves",
                "Learning curves",
                "Learning curves",
                learning_curves_html(frame.head(detail), history, total=len(frame)),
            ),
        ]
        hyperparameters = hyperparameters_html(frame, varying)
    if frame["experiment"].map(search_of).notna().any():
        sections.append(
            (
                "search",
                "Search progress",
                "Search progress: best val macro F1 so far",
                search_progress_html(frame) + search_knobs_html(frame),
            )
        )
    sections += [
        ("per-class", "Per-class F1", "Per-class F1 (val)", per_class_html(frame.head(detail), total=len(frame))),
        ("confusion", "Confusion matrices", "Confusion matrices", confusion_html(runs_dir, frame, detail)),
        ("hyperparameters", "Hyperparameters", "Hyperparameters vs val macro F1", hyperparameters),
    ]
    links = [(anchor, link) for anchor, link, _, _ in sections]
    body = [header_html(runs_dir, frame, now or datetime.now(timezone.utc), links)]
    body += [_section(anchor, title, content) for anchor, _, title, content in sections]
    return _PAGE.format(title=_esc(f"raytrain report: {runs_dir.resolve().name}"), css=_CSS, body="\n".join(body))


def _more_line(count: int, what: str, csv_name: str | None) -> str:
    if count <= 0:
        return ""
    where = f" (all in <code>{_esc(csv_name)}</code>, beside this page)" if csv_name else ""
    return f'\n<p class="more">and {count} more {what}{where}</p>'


def group_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """analysis.summarize_repeats on val, best mean macro F1 first: the order of every group plot."""
    summary = analysis.summarize_repeats(frame, "val")
    return summary.sort_values("macro_f1/mean", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


# --- sections: each takes DataFrames and returns escaped HTML --------------------------------------


def header_html(runs_dir: Path, frame: pd.DataFrame, now: datetime, links: list[tuple[str, str]] | None = None) -> str:
    n = len(frame)
    groups = ""
    if "group" in frame.columns and analysis.has_repeats(frame):
        groups = f" in {frame['group'].nunique()} groups of seeds"
    parts = [
        "<h1>raytrain report</h1>",
        f'<p class="meta">Runs folder <code>{_esc(runs_dir.resolve())}</code> &middot; {n} experiment{"s" if n != 1 else ""}{_esc(groups)}'
        f" &middot; generated {_esc(now.strftime('%Y-%m-%d %H:%M %Z').strip())}</p>",
    ]
    damaged = frame[frame["status"] == results.DAMAGED]
    if len(damaged):
        problems = _some(
            [f"{name}: {problem}" for name, problem in zip(damaged["experiment"], damaged["problem"])], "; "
        )
        parts.append(
            f'<p class="note">{len(damaged)} of {n} experiments {"is" if len(damaged) == 1 else "are"} damaged and left out of '
            f"the plots: {_esc(problems)}. Run {'its' if len(damaged) == 1 else 'their'} config again to repair it.</p>"
        )
    pruned = frame[frame["status"] == "pruned"]
    if len(pruned):
        parts.append(
            f'<p class="note">{len(pruned)} of {n} experiments {"was" if len(pruned) == 1 else "were"} pruned: the scheduler (ASHA) '
            f"stopped {'it' if len(pruned) == 1 else 'them'} early ({_esc(_some(list(pruned['experiment'])))}). Their numbers are "
            "from the epochs they ran (see epochs run); they have no test metrics.</p>"
        )
    unfinished = frame[~frame["status"].isin(["completed", "pruned", results.DAMAGED])]
    if len(unfinished):
        names = _some([f"{name} ({status})" for name, status in zip(unfinished["experiment"], unfinished["status"])])
        parts.append(
            f'<p class="note">{len(unfinished)} of {n} experiments {"is" if len(unfinished) == 1 else "are"} not finished: {_esc(names)}. '
            "Their numbers are from the best epoch so far; they have no confusion matrix or test metrics yet.</p>"
        )
    links = links or [
        ("leaderboard", "Leaderboard"),
        ("curves", "Learning curves"),
        ("per-class", "Per-class F1"),
        ("confusion", "Confusion matrices"),
        ("hyperparameters", "Hyperparameters"),
    ]
    parts.append("<nav>" + " &middot; ".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t in links) + "</nav>")
    return "\n".join(parts)


def _some(names: list[str], sep: str = ", ") -> str:
    """The first MAX_NAMED names, and how many more: a note naming 400 pruned trials is a wall."""
    shown = sep.join(names[:MAX_NAMED])
    return shown + (f"{sep}and {len(names) - MAX_NAMED} more (see the CSV)" if len(names) > MAX_NAMED else "")


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
        name = _esc(row["experiment"])
        if isinstance(description, str) and description.strip():
            name += f'<div class="desc">{_esc(description)}</div>'
        cells = [f'<td class="num">{position}</td>', f"<td>{name}</td>", f"<td>{_esc(status_text(row))}</td>"]
        cells += [f"<td>{_esc(_format_value(row.get(c)))}</td>" for c in hyperparameters]
        cells += [f'<td class="num">{_esc(_format_metric(row.get(c)))}</td>' for c, _ in metrics]
        cells += [f'<td class="num">{_esc(_format_value(row.get(c)))}</td>' for c in ("best_epoch", "epochs_run")]
        cells.append(f'<td class="num">{_esc(_format_duration(row.get("duration_s")))}</td>')
        mark = ' class="best"' if i == best else ""
        rows.append(f"<tr{mark}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_esc(h)}</th>" for h in heads)
    caption = "Sorted by val macro F1; the highlighted row is the best. " + (
        "Hyperparameter columns are the config keys that differ between experiments."
        if hyperparameters
        else "No config key differs between the experiments."
    )
    return (
        f'<p class="caption">{caption}</p>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def group_table_html(frame: pd.DataFrame, summary: pd.DataFrame, hyperparameters: list[str]) -> str:
    """One row per group in `summary`'s order (best mean val macro F1 first, marked class="best"): n,
    the hyperparameters that differ between groups, macro F1 mean ± std and its 95% t interval, and
    mean accuracy. Every value is escaped."""
    heads = ["#", "group", "n", *hyperparameters, "val macro F1 (mean ± std)", "95% interval", "val acc (mean)"]
    settings = frame.groupby("group", sort=False)[hyperparameters].first() if hyperparameters else None
    rows = []
    for position, (_, row) in enumerate(summary.iterrows(), start=1):
        group = row["group"]
        cells = [f'<td class="num">{position}</td>', f"<td>{_esc(group)}</td>", f'<td class="num">{int(row["n"])}</td>']
        cells += [f"<td>{_esc(_format_value(settings.loc[group, c]))}</td>" for c in hyperparameters]
        spread = f"{_format_metric(row['macro_f1/mean'])} ± {_format_metric(row['macro_f1/std'])}"
        cells += [
            f'<td class="num">{_esc(spread)}</td>',
            f'<td class="num">{_esc(_format_interval(row["macro_f1/low"], row["macro_f1/high"]))}</td>',
            f'<td class="num">{_esc(_format_metric(row["accuracy/mean"]))}</td>',
        ]
        mark = ' class="best"' if position == 1 else ""
        rows.append(f"<tr{mark}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_esc(h)}</th>" for h in heads)
    left_out = sorted(set(frame["group"]) - set(summary["group"]))
    caption = (
        "One row per experiment repeated over seeds, sorted by mean val macro F1; n is its finished seeds, and "
        "unfinished or failed ones are left out. The interval is the 95% Student t interval of the mean "
        "(n − 1 degrees of freedom): with 2–3 seeds it is wide, and with one seed there is none. "
        "To test a group against a baseline seed by seed: <code>raytrain compare --baseline NAME</code>."
    )
    if left_out:
        caption += f" No seed finished yet: {_esc(', '.join(left_out))}."
    return (
        f'<p class="caption">{caption}</p>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def intervals_html(frame: pd.DataFrame, summary: pd.DataFrame, total: int | None = None) -> str:
    if summary.empty:
        return "<p>No group has a finished seed yet.</p>"
    fig, clipped = intervals_figure(frame, summary)
    caption = (
        f"The best {len(summary)} of {total} experiments by mean val macro F1. "
        if total and total > len(summary)
        else ""
    )
    caption += (
        "Each point is an experiment's mean over its finished seeds and the bar its 95% Student t interval; "
        "the faint dots beside it are the seeds one by one. Bars that overlap do not show two experiments are "
        "equal: with seeds shared, <code>raytrain compare --baseline NAME</code> tests the paired differences."
    )
    if clipped:
        caption += (
            " Where the t interval runs past the metric's range it is drawn cut at 0 or 1; the table has it whole."
        )
    return (
        _img(fig, "val macro F1 and accuracy by experiment, mean and 95% interval over seeds")
        + f'\n<p class="caption">{caption}</p>'
    )


def intervals_figure(frame: pd.DataFrame, summary: pd.DataFrame) -> tuple[Figure, bool]:
    """Val macro F1 and accuracy per group (summary's order on the axis): mean, 95% t interval as an
    error bar, seeds as faint dots. Also returns whether any bar was cut at 0 or 1."""
    done = frame[frame["status"] == "completed"]
    panels = [("macro_f1", "val macro F1"), ("accuracy", "val accuracy")]
    n_groups = len(summary)
    side_by_side = n_groups <= MAX_SIDE_BY_SIDE
    fig = Figure(figsize=(12, 4.2) if side_by_side else (12, 8.4), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0] if side_by_side else fig.subplots(2, 1, squeeze=False)[:, 0]
    clipped = False
    ticks = [f"{group}\n(n={int(n)})" for group, n in zip(summary["group"], summary["n"])]
    for ax, (metric, label) in zip(axes, panels):
        for rank, group in enumerate(summary["group"]):
            seeds = done.loc[done["group"] == group, f"val/{metric}"].to_numpy(dtype=float)
            clipped |= _draw_interval(ax, rank, summary.iloc[rank], metric, seeds, _line_style(rank)["color"])
        ax.set_xticks(
            range(n_groups), ticks, rotation=30 if n_groups > 4 else 0, ha="right" if n_groups > 4 else "center"
        )
        ax.set_xlim(-0.6, n_groups - 0.4)
        ax.set_ylabel(label)
        ax.set_title(f"{label} by experiment, mean and 95% interval over seeds", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return fig, clipped


def group_curves_html(
    frame: pd.DataFrame, history: pd.DataFrame, summary: pd.DataFrame, order: list[str] | None = None
) -> str:
    if history.empty or METRIC not in history.columns:
        return "<p>No per-epoch history yet.</p>"
    total = frame["group"].nunique()
    order = order if order is not None else _group_order(frame, summary)
    caption = (
        "One line per experiment: its mean over seeds at each epoch. The shaded band runs from the lowest to the "
        "highest seed (min–max), not a confidence interval. An epoch only some seeds reached (stopped early, "
        "still running) is the mean of those seeds."
    )
    if len(order) > MAX_COLOURED:
        caption += f" The best {MAX_COLOURED} of {len(order)} by mean val macro F1 are in colour, the rest grey."
    if total > len(order):
        caption += f" Drawn for the best {len(order)} of {total} experiments."
    return (
        _img(group_curves_figure(frame, history, order), "learning curves, mean over seeds")
        + f'\n<p class="caption">{caption}</p>'
    )


def group_curves_figure(frame: pd.DataFrame, history: pd.DataFrame, order: list[str] | None = None) -> Figure:
    """Val macro F1 (and val loss) per epoch: for each group in `order` (default: best mean val macro
    F1 first) the mean over its seeds as a line, labelled `group (n=seeds)`, with a min–max band."""
    order = order if order is not None else _group_order(frame, group_summary(frame))
    panels = [(METRIC, "val macro F1")] + ([("val/loss", "val loss")] if "val/loss" in history.columns else [])
    columns = [column for column, _ in panels]
    history = history.assign(group=history["experiment"].map(dict(zip(frame["experiment"], frame["group"]))))
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for rank, group in enumerate(order):
        epochs = history[history["group"] == group]
        if epochs.empty:
            continue
        by_epoch = epochs.groupby("epoch")[columns]
        mean, low, high = by_epoch.mean(), by_epoch.min(), by_epoch.max()
        style = _line_style(rank)
        label = f"{group} (n={epochs['experiment'].nunique()})" if rank < MAX_COLOURED else None
        for ax, column in zip(axes, columns):
            # label the first panel's lines only: fig.legend gathers every axis and would list each twice
            ax.plot(mean.index, mean[column], marker="o", markersize=3, label=label if ax is axes[0] else None, **style)
            ax.fill_between(
                mean.index,
                low[column],
                high[column],
                color=style["color"],
                alpha=0.18 if rank < MAX_COLOURED else 0.08,
                linewidth=0,
                zorder=style["zorder"] - 1,
            )
    _finish_curve_axes(
        fig, axes, panels, history, title="{} per epoch, mean and min–max over seeds", legend="experiment (seeds)"
    )
    return fig


def _finish_curve_axes(fig, axes, panels, history: pd.DataFrame, *, title: str, legend: str) -> None:
    """Labels, scales and the shared legend of the learning-curve panels."""
    for ax, (column, label) in zip(axes, panels):
        if column == "val/loss" and use_log_axis(history[column]):
            _log_scale(ax, "y")  # one diverging run (loss in the hundreds) would flatten every other line
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title.format(label))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9, title=legend)


def learning_curves_html(frame: pd.DataFrame, history: pd.DataFrame, total: int | None = None) -> str:
    if history.empty or METRIC not in history.columns:
        return "<p>No per-epoch history yet.</p>"
    panels = [(METRIC, "val macro F1")] + ([("val/loss", "val loss")] if "val/loss" in history.columns else [])
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for rank, (_, row) in enumerate(frame.iterrows()):
        epochs = history[history["experiment"] == row["experiment"]].sort_values("epoch")
        if epochs.empty:
            continue
        style = _line_style(rank)
        best = epochs[epochs["epoch"] == row.get("best_epoch")]
        label = row["experiment"] if rank < MAX_COLOURED else None
        for ax, (column, _) in zip(axes, panels):
            # label the first panel's lines only: fig.legend gathers every axis and would list each twice
            ax.plot(
                epochs["epoch"],
                epochs[column],
                marker="o",
                markersize=3,
                label=label if ax is axes[0] else None,
                **style,
            )
            ax.plot(
                best["epoch"],
                best[column],
                linestyle="none",
                marker="*",
                markersize=13,
                color=style["color"],
                markeredgecolor="black",
                markeredgewidth=0.6,
                zorder=style["zorder"] + 1,
            )
    _finish_curve_axes(fig, axes, panels, history, title="{} per epoch", legend="experiment")
    caption = "One line per experiment; the star marks its best epoch (the weights it kept)."
    if len(frame) > MAX_COLOURED:
        caption += f" The best {MAX_COLOURED} of {len(frame)} are in colour, the rest grey."
    if total and total > len(frame):
        caption += f" Drawn for the best {len(frame)} of {total} experiments by val macro F1."
    return _img(fig, "learning curves") + f'\n<p class="caption">{caption}</p>'


def search_progress_html(frame: pd.DataFrame) -> str:
    """For each adaptive search, the best val macro F1 found so far against the number of trials
    finished (in the order proposed): a curve that has flattened says more trials will not help."""
    trials = frame.assign(search=frame["experiment"].map(search_of)).dropna(subset=["search", METRIC])
    fig = _figure((7, 4), fixed=True)  # numbers on both axes; the legend sits inside
    ax = fig.subplots()
    for rank, (search, group) in enumerate(trials.groupby("search", sort=True)):
        group = group.sort_values("experiment")  # t001, t002, ...: the order the searcher proposed them
        x = np.arange(1, len(group) + 1)
        style = _line_style(rank)
        ax.step(x, group[METRIC].cummax(), where="post", label=f"{search} (best so far)", color=style["color"])
        pruned = (group["status"] == "pruned").to_numpy()
        ax.plot(x[~pruned], group[METRIC][~pruned], linestyle="none", marker="o", color=style["color"], alpha=0.6)
        ax.plot(x[pruned], group[METRIC][pruned], linestyle="none", marker="x", color=style["color"], alpha=0.6)
    ax.set_xlabel("trials finished")
    ax.set_ylabel("val macro F1")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="lower right", fontsize=8)
    caption = (
        "The line is the best val macro F1 among the trials so far, in the order the searcher proposed them; "
        "dots are single trials, crosses trials the scheduler pruned (scored by the epochs they ran)."
    )
    return _img(fig, "best val macro F1 so far against trials finished") + f'\n<p class="caption">{caption}</p>'


def search_knobs_html(frame: pd.DataFrame) -> str:
    """For each adaptive search, val macro F1 against each knob it searched, one small panel per
    knob, the best trial a gold star: with hundreds of trials, where the good region lies is read
    off at a glance. The knobs are the config columns that differ between the search's trials."""
    trials = frame.assign(search=frame["experiment"].map(search_of)).dropna(subset=["search", METRIC])
    best_first = trials.groupby("search")[METRIC].max().sort_values(ascending=False, kind="stable").index
    parts = []
    for search in best_first[:MAX_SEARCH_PLOTS]:
        group = trials[trials["search"] == search]
        knobs = [c for c in results.varying_hyperparameters(group) if c != analysis.SEED_COLUMN]
        if len(group) < 2 or not knobs:
            continue
        best = group.loc[group[METRIC].astype(float).idxmax()]
        parts.append(f"<h3>{_esc(search)}: val macro F1 against each searched knob</h3>")
        parts.append(
            _img(search_knobs_figure(group, knobs, search), f"{search}: val macro F1 against each searched knob")
        )
        parts.append(
            f'<p class="caption">{len(group)} trials. The gold star is the best, {_esc(best["experiment"])} '
            f"(val macro F1 {_format_metric(best[METRIC])}); crosses are trials the scheduler pruned.</p>"
        )
    if len(best_first) > MAX_SEARCH_PLOTS:
        parts.append(
            f'<p class="more">and {len(best_first) - MAX_SEARCH_PLOTS} more searches, not drawn '
            f"(the best {MAX_SEARCH_PLOTS} by their best trial are)</p>"
        )
    return "\n" + "\n".join(parts) if parts else ""


def search_knobs_figure(trials: pd.DataFrame, knobs: list[str], search: str) -> Figure:
    """Small multiples: one panel per knob, val macro F1 on a shared y axis."""
    columns = min(len(knobs), 4)
    rows = -(-len(knobs) // columns)
    numbers = {knob: _as_numbers(trials[knob]) for knob in knobs}  # None for a categorical knob
    all_numbers = all(values is not None for values in numbers.values())
    fig = _figure((3.0 * columns + 0.6, 2.8 * rows + 0.4), fixed=all_numbers, top=0.6, grid=(rows, columns))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax in axes[len(knobs) :]:
        ax.set_axis_off()
    pruned = (trials["status"] == "pruned").to_numpy()
    y = trials[METRIC].astype(float)
    for ax, knob in zip(axes, knobs):
        numeric = numbers[knob]
        if numeric is None:
            labels = trials[knob].map(_format_value)
            categories = sorted(labels.unique())
            x = _category_positions(labels, categories)
            ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0, fontsize=8)
        else:
            x = numeric
            if use_log_axis(x):
                _log_scale(ax, "x")
        style = _points_style(len(trials))
        ax.scatter(x[~pruned], y[~pruned], **style)
        ax.scatter(
            x[pruned], y[pruned], **(style | {"marker": "x", "color": "0.45", "linewidth": 1.0, "edgecolor": None})
        )
        _mark_best(ax, x, y)
        ax.set_xlabel(knob, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("val macro F1")
    fig.suptitle(f"{search}: val macro F1 against each searched knob", fontsize=11)
    return fig


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


def confusion_html(runs_dir: Path, frame: pd.DataFrame, detail: int = TOP_DETAIL) -> str:
    shown = []
    for _, row in frame.iterrows():
        folder = artifacts.experiment_dir(runs_dir, row["experiment"])
        # results.load checked the folder: a damaged one (or one half published) is not shown
        if row["status"] != results.DAMAGED and (folder / artifacts.BEST_CONFUSION).is_file():
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
    return f'<figure class="matrix"><figcaption>{_esc(title)}</figcaption>\n{table}</figure>'


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
    heads = f"<th>{_esc(corner)}</th>" + "".join(f"<th{head_class}><span>{_esc(c)}</span></th>" for c in column_labels)
    rows = []
    for label_text, row, row_colours in zip(row_labels, values, colours):
        cells = []
        for value, colour in zip(row, row_colours):
            if np.isnan(value):
                cells.append('<td class="missing">–</td>')
                continue
            ink = "#fff" if white_text(value) else "#000"
            cells.append(f'<td style="background:{to_hex(colour)};color:{ink}">{value:.2f}</td>')
        rows.append(f"<tr><th>{_esc(label_text)}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="heat" aria-label="{_esc(label)}">\n<thead><tr>{heads}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table>"
    )


def hyperparameters_html(frame: pd.DataFrame, hyperparameters: list[str]) -> str:
    if len(frame) < 2:
        return "<p>Only one experiment: there is nothing to compare it with.</p>"
    if not hyperparameters:
        return f"<p>No hyperparameter varies between the {len(frame)} experiments, so there is nothing to plot.</p>"
    scored = frame[frame[METRIC].notna()]
    images, skipped = [], []
    for column in hyperparameters:
        values = scored[column]
        if values.dropna().astype(str).nunique() < 2:
            skipped.append(column)  # it only varies through experiments with no score or no value
            continue
        numeric = _as_numbers(values)
        fig = _numeric_plot(scored, column, numeric) if numeric is not None else _categorical_plot(scored, column)
        images.append(_img(fig, f"val macro F1 against {column}"))
    parts = ['<div class="row">' + "\n".join(images) + "</div>"] if images else []
    if skipped:
        parts.append(f"<p>Not plotted (one value among the scored experiments): {_esc(', '.join(skipped))}.</p>")
    parts.append(
        f'<p class="caption">Each point is one experiment; the gold star is the best. A positive numeric '
        f"hyperparameter spanning more than {LOG_SPAN:g}x is on a log axis; for a categorical one the bar is the mean.</p>"
    )
    return "\n".join(parts)


def group_hyperparameters_html(
    frame: pd.DataFrame, summary: pd.DataFrame, hyperparameters: list[str], total: int | None = None
) -> str:
    """hyperparameters_html for repeats: one point per group (its mean over seeds, 95% t interval as
    the error bar), the seeds as faint dots."""
    if len(summary) < 2:
        return "<p>Only one experiment has a finished seed: there is nothing to compare it with.</p>"
    if not hyperparameters:
        return f"<p>No hyperparameter varies between the {len(summary)} experiments, so there is nothing to plot.</p>"
    settings = frame.groupby("group", sort=False)[hyperparameters].first().loc[summary["group"]]
    done = frame[frame["status"] == "completed"]
    seeds = [done.loc[done["group"] == group, METRIC].to_numpy(dtype=float) for group in summary["group"]]
    images, skipped, clipped = [], [], False
    for column in hyperparameters:
        values = settings[column].reset_index(drop=True)
        if values.dropna().astype(str).nunique() < 2:
            skipped.append(column)  # it only varies through groups with no finished seed
            continue
        numeric = _as_numbers(values)
        if numeric is not None:
            fig, cut = _numeric_group_plot(summary, seeds, column, numeric)
        else:
            fig, cut = _categorical_group_plot(summary, seeds, column, values)
        clipped |= cut
        images.append(_img(fig, f"val macro F1 against {column}, mean over seeds"))
    parts = ['<div class="row">' + "\n".join(images) + "</div>"] if images else []
    if skipped:
        parts.append(
            f"<p>Not plotted (one value among the groups with a finished seed): {_esc(', '.join(skipped))}.</p>"
        )
    caption = (
        "Each point is one experiment's mean over its finished seeds, the bar its 95% Student t interval, the faint "
        f"dots its seeds. A positive numeric hyperparameter spanning more than {LOG_SPAN:g}x is on a log axis; for a "
        "categorical one the bar is the mean of the experiments' means."
    )
    if clipped:
        caption += " An interval running past 0 or 1 is drawn cut there."
    if len(summary) > MAX_INTERVALS:
        caption += f" Past the best {MAX_INTERVALS}, experiments are drawn as their mean alone (small, faint)."
    if total and total > len(summary):
        caption += (
            f" Drawn for the best {len(summary)} of {total} experiments by mean val macro F1 (the leaderboard's)."
        )
    parts.append(f'<p class="caption">{caption}</p>')
    return "\n".join(parts)


# --- plots -------------------------------------------------------------------------------------------


def use_log_axis(values) -> bool:
    """True when numbers are all positive and the largest exceeds LOG_SPAN times the smallest
    (learning rates 1e-4..3e-3, weight decay 1e-5..1e-1): a linear axis would crowd the small ones."""
    values = np.asarray(pd.Series(values).dropna(), dtype=float)
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > LOG_SPAN)


def _log_scale(ax, axis: str) -> None:
    """A log axis with minor ticks at 2 and 5 of each decade, not matplotlib's 2 to 9: a learning rate
    still reads off it, and each tick is an object made on every draw, half the time of a panel with
    four decades."""
    ax.set(**{f"{axis}scale": "log"})
    getattr(ax, f"{axis}axis").set_minor_locator(LogLocator(subs=(2.0, 5.0)))


def _numeric_plot(scored: pd.DataFrame, column: str, x: pd.Series) -> Figure:
    keep = x.notna()
    fig = _figure((4.6, 3.4), fixed=keep.sum() > NAMED_POINTS)
    ax = fig.subplots()
    ax.scatter(x[keep], scored.loc[keep, METRIC], **_points_style(int(keep.sum())))
    _mark_best(ax, x, scored[METRIC])
    _name_points_and_scale(ax, x, scored[METRIC], scored["experiment"], offset=(4, 4))
    return _finish_hp_axes(fig, ax, column)


def _points_style(n: int) -> dict:
    """Few points: big, outlined. Hundreds: small and see-through, so where they crowd reads as dark."""
    if n <= MANY_POINTS:
        return {"s": 36, "color": "tab:blue", "edgecolor": "black", "linewidth": 0.5, "zorder": 3}
    return {"s": 12, "color": "tab:blue", "alpha": 0.35, "linewidth": 0, "zorder": 3}


def _mark_best(ax, x: pd.Series, y: pd.Series) -> None:
    """The best experiment's point as a gold star on top of the others."""
    scored = y.notna() & x.notna()
    if scored.any():
        best = y[scored].astype(float).idxmax()
        ax.scatter(
            [x[best]],
            [y[best]],
            marker="*",
            s=220,
            color="gold",
            edgecolor="black",
            linewidth=0.8,
            zorder=5,
            label="best",
        )


def _name_points_and_scale(ax, x: pd.Series, y: pd.Series, names: pd.Series, *, offset: tuple[int, int]) -> None:
    """Name the points when there are few, and pick the x scale (log for wide ranges, integer ticks)."""
    keep = x.notna()
    if keep.sum() <= NAMED_POINTS:
        points = pd.DataFrame({"x": x[keep], "y": y[keep], "name": names[keep].astype(str)})
        # experiments that land on the same point share one label instead of overprinting each other
        for (value, score), named in points.groupby(["x", "y"], sort=False)["name"]:
            ax.annotate(", ".join(named), (value, score), textcoords="offset points", xytext=offset, fontsize=7)
    ax.margins(x=0.15)  # room for the names beside the outermost points
    if use_log_axis(x):
        _log_scale(ax, "x")
    elif x[keep].apply(float.is_integer).all():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, batch size: no 1.2 epochs on the axis


def _categorical_plot(scored: pd.DataFrame, column: str) -> Figure:
    labels = scored[column].map(_format_value)
    categories = sorted(labels.unique())
    fig = Figure(figsize=(max(4.6, 0.9 * len(categories) + 1.5), 3.4), layout="constrained")
    ax = fig.subplots()
    for i, category in enumerate(categories):
        scores = scored.loc[labels == category, METRIC].to_numpy(dtype=float)
        ax.bar(i, scores.mean(), width=0.6, color="tab:blue", alpha=0.25, zorder=1)
        # spread points sideways deterministically (not random jitter): the same runs draw the same page
        offsets = np.linspace(-0.15, 0.15, len(scores)) if len(scores) > 1 else [0.0]
        ax.scatter(i + np.asarray(offsets), scores, **_points_style(len(scored)))
    _mark_best(ax, _category_positions(labels, categories), scored[METRIC])
    ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 4 else 0)
    return _finish_hp_axes(fig, ax, column)


def _category_positions(labels: pd.Series, categories: list[str]) -> pd.Series:
    """Each point's x in a category plot: its category's slot plus its place in the sideways spread."""
    x = pd.Series(np.nan, index=labels.index)
    for i, category in enumerate(categories):
        members = labels.index[labels == category]
        x[members] = i + (np.linspace(-0.15, 0.15, len(members)) if len(members) > 1 else np.zeros(1))
    return x


def _numeric_group_plot(
    summary: pd.DataFrame, seeds: list[np.ndarray], column: str, x: pd.Series
) -> tuple[Figure, bool]:
    fig = _figure((4.6, 3.4), fixed=x.notna().sum() > NAMED_POINTS)
    ax = fig.subplots()
    clipped = False
    plain = []
    for i, value in enumerate(x):
        if np.isnan(value):
            continue
        if i < MAX_INTERVALS:
            clipped |= _draw_interval(ax, value, summary.iloc[i], "macro_f1", seeds[i], "tab:blue")
        else:
            plain.append((value, summary.iloc[i]["macro_f1/mean"]))
    _plain_means(ax, plain)
    _name_points_and_scale(ax, x, summary["macro_f1/mean"], summary["group"], offset=(6, 4))
    return _finish_hp_axes(fig, ax, column), clipped


def _categorical_group_plot(
    summary: pd.DataFrame, seeds: list[np.ndarray], column: str, values: pd.Series
) -> tuple[Figure, bool]:
    labels = values.map(_format_value)
    categories = sorted(labels.unique())
    fig = Figure(figsize=(max(4.6, 0.9 * len(categories) + 1.5), 3.4), layout="constrained")
    ax = fig.subplots()
    clipped, plain = False, []
    for i, category in enumerate(categories):
        members = np.flatnonzero(labels.to_numpy() == category)
        ax.bar(i, summary.loc[members, "macro_f1/mean"].mean(), width=0.7, color="tab:blue", alpha=0.2, zorder=1)
        # groups of one category side by side, deterministically: the same runs draw the same page
        offsets = np.linspace(-0.2, 0.2, len(members)) if len(members) > 1 else [0.0]
        for offset, member in zip(offsets, members):
            if member < MAX_INTERVALS:
                clipped |= _draw_interval(ax, i + offset, summary.iloc[member], "macro_f1", seeds[member], "tab:blue")
            else:
                plain.append((i + offset, summary.iloc[member]["macro_f1/mean"]))
    _plain_means(ax, plain)
    ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 4 else 0)
    return _finish_hp_axes(fig, ax, column), clipped


def _plain_means(ax, points: list[tuple[float, float]]) -> None:
    """Groups past the best MAX_INTERVALS: their means only, one scatter call. Dozens of error bars
    with their seeds beside them take seconds to draw and hide each other anyway."""
    if points:
        x, y = zip(*points)
        ax.scatter(x, y, s=18, color="tab:blue", alpha=0.5, linewidth=0, zorder=2)


def _draw_interval(ax, x: float, row: pd.Series, metric: str, seeds: np.ndarray, colour) -> bool:
    """One group at x: its mean as a point, its 95% t interval as an error bar, its seeds as faint dots
    just right of the bar. The bar is cut to [0, 1], the metric's range: a t interval from 2-3 seeds
    easily runs past it. Returns whether it was cut."""
    mean, low, high = row[f"{metric}/mean"], row[f"{metric}/low"], row[f"{metric}/high"]
    # offsets in points, not data units, so they are the same on a linear axis, a log one or a category
    # axis; seeds with equal scores sit side by side instead of hiding each other
    for k, score in enumerate(seeds):
        beside = offset_copy(ax.transData, fig=ax.figure, x=9 + 4 * k, units="points")
        ax.plot(
            [x],
            [score],
            linestyle="none",
            marker="o",
            markersize=4,
            color=colour,
            alpha=0.4,
            markeredgewidth=0,
            zorder=2,
            transform=beside,
        )
    if len(seeds):
        # a line drawn through an offset transform does not count towards autoscaling: a seed outside the
        # interval (likely with many seeds) would fall off the axes without this
        ax.update_datalim(np.column_stack([np.full(len(seeds), x), seeds]))
    clipped = False
    error = None
    if not (pd.isna(low) or pd.isna(high)):  # one seed: no interval to draw
        shown_low, shown_high = max(float(low), 0.0), min(float(high), 1.0)
        clipped = shown_low != low or shown_high != high
        error = [[mean - shown_low], [shown_high - mean]]
    ax.errorbar(
        [x],
        [mean],
        yerr=error,
        fmt="o",
        color=colour,
        markersize=7,
        markeredgecolor="black",
        markeredgewidth=0.6,
        capsize=5,
        elinewidth=1.6,
        zorder=3,
    )
    return clipped


def _group_order(frame: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The groups in summary's order (best mean val macro F1 first), then those with no finished seed."""
    order = list(summary["group"]) if len(summary) else []
    return order + [group for group in frame["group"].unique() if group not in order]


def _figure(
    size: tuple[float, float], *, fixed: bool, top: float = FIXED_MARGINS[3], grid: tuple[int, int] = (1, 1)
) -> Figure:
    """A figure of `size` inches: with FIXED_MARGINS (and `top` for a title) when `fixed`, for a plot
    of numbers and fixed words only; else with constrained layout, which fits any label."""
    if not fixed:
        return Figure(figsize=size, layout="constrained")
    fig = Figure(figsize=size)
    (width, height), (rows, columns) = size, grid
    left, right, bottom, _ = FIXED_MARGINS
    panel_width = (width - left - right - (columns - 1) * PANEL_GAPS[0]) / columns
    panel_height = (height - bottom - top - (rows - 1) * PANEL_GAPS[1]) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=PANEL_GAPS[0] / panel_width,
        hspace=PANEL_GAPS[1] / panel_height,
    )
    return fig


def _finish_hp_axes(fig: Figure, ax, column: str) -> Figure:
    ax.set_xlabel(column)
    ax.set_ylabel("val macro F1")
    ax.set_title(f"val macro F1 vs {column}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def _line_style(rank: int) -> dict:
    if rank < MAX_COLOURED:
        return {"color": f"C{rank}", "linewidth": 1.8, "alpha": 1.0, "zorder": 3}
    return {"color": "0.6", "linewidth": 0.8, "alpha": 0.6, "zorder": 1}


def _img(fig: Figure, alt: str) -> str:
    """The figure as an <img> with the PNG inline (base64), so the page needs no other file."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


# --- formatting --------------------------------------------------------------------------------------


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """The column as floats when every present value is a number (a bool is a category), else None."""
    present = values.dropna()
    if not len(present) or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)) for v in present
    ):
        return None
    return values.astype(float)


def _format_value(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _format_metric(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):.3f}"


def _format_interval(low, high) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "–"
    return f"[{float(low):.3f}, {float(high):.3f}]"


def _format_duration(seconds) -> str:
    return "–" if is_missing(seconds) else format_duration(seconds)


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_esc(title)}</h2>\n{content}\n</section>'


# Local fonts only (no web fonts): the page must render offline.
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; line-height: 1.45; }
h1 { margin-bottom: 4px; } h3 { margin: 20px 0 4px; font-size: 1.05em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 36px; }
.meta, .caption { color: #57606a; } .caption { font-size: 0.9em; }
.more { color: #57606a; font-style: italic; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 8px 12px; border-radius: 6px; }
nav a { color: #0969da; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best, tr.best:nth-child(even) { background: #dafbe1; font-weight: 600; }
.desc { font-weight: normal; color: #57606a; font-size: 0.85em; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
img { max-width: 100%; height: auto; }
table.heat td { text-align: center; font-variant-numeric: tabular-nums; min-width: 2.6em; padding: 3px 4px; border-color: #fff; }
table.heat td.missing { background: #dddddd; color: #57606a; }
table.heat th { font-weight: normal; white-space: nowrap; }
table.heat th.vertical { vertical-align: bottom; padding: 4px 2px; }
table.heat th.vertical span { writing-mode: vertical-rl; transform: rotate(180deg); }
figure.matrix { margin: 0 0 8px; } figure.matrix figcaption { font-size: 0.9em; margin-bottom: 4px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""
