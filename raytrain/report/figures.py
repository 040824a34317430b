"""The report's matplotlib figures: how a figure is laid out, styled and embedded as an inline PNG,
the learning curves (per run, or per group of seeds with its band) and the per-group interval plot.

Draws from DataFrames only: must not import torch, ray or pydantic.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
import pandas as pd

# Figure + the Agg canvas, not pyplot: nothing registers in pyplot's global figure list (so nothing can
# leak or need closing) and a notebook that imports this module keeps its own backend.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator
from matplotlib.transforms import offset_copy

from raytrain.naming import COMPLETED, METRIC
from raytrain.report.html_tables import esc
from raytrain.results import analysis
from raytrain.results.analysis import use_log_axis

MAX_COLOURED = 10  # tab10 has 10 colours, and a legend past ~10 lines is unreadable: the rest go grey
DPI = 100  # 1 inch of figure = 100 px on the page
MAX_SIDE_BY_SIDE = 6  # groups per interval panel before macro F1 and accuracy stack instead of sitting side by side
NO_HISTORY = "<p>No per-epoch history yet.</p>"
# Margins in inches (left, right, bottom, top) of a plot whose every label is a number or one line of
# fixed text: they are known in advance, so its layout is set rather than solved. Constrained layout
# measures every tick label before the draw measures them again, which doubles the time to draw such
# a plot, and a 1,000-experiment page has a dozen of them. A plot with names or categories on it keeps
# constrained layout, which sizes its margins to whatever the names are.
FIXED_MARGINS = (0.75, 0.25, 0.6, 0.4)
# inches between fixed-layout panels: side by side (a shared y axis) and stacked (x labels between)
PANEL_GAPS = (0.15, 0.75)

# One line of the learning curves: its rank (which picks its colour), its legend label (None: not in the
# legend), its values indexed by epoch, and what to draw with it in each panel, called as mark(ax, column, style).
Curve = tuple[int, str | None, pd.DataFrame, Callable[..., None]]


# --- groups of seeds: the order and the numbers every group plot draws --------------------------------


def group_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """analysis.summarize_repeats on val, best mean macro F1 first: the order of every group plot."""
    summary = analysis.summarize_repeats(frame, "val")
    return summary.sort_values("macro_f1/mean", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def group_order(frame: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The groups in summary's order (best mean val macro F1 first), then those with no finished seed."""
    order = list(summary["group"]) if len(summary) else []
    return order + [group for group in frame["group"].unique() if group not in order]


def seed_scores(frame: pd.DataFrame, groups: Iterable[str], column: str) -> list[np.ndarray]:
    """For each of `groups`, its finished seeds' `column`: the faint dots beside an interval."""
    done = frame[frame["status"] == COMPLETED]
    return [done.loc[done["group"] == group, column].to_numpy(dtype=float) for group in groups]


# --- the per-group interval plot ---------------------------------------------------------------------


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
        img_tag(fig, "val macro F1 and accuracy by experiment, mean and 95% interval over seeds")
        + f'\n<p class="caption">{caption}</p>'
    )


def intervals_figure(frame: pd.DataFrame, summary: pd.DataFrame) -> tuple[Figure, bool]:
    """Val macro F1 and accuracy per group (summary's order on the axis): mean, 95% t interval as an
    error bar, seeds as faint dots. Also returns whether any bar was cut at 0 or 1."""
    panels = [("macro_f1", "val macro F1"), ("accuracy", "val accuracy")]
    n_groups = len(summary)
    side_by_side = n_groups <= MAX_SIDE_BY_SIDE
    fig = Figure(figsize=(12, 4.2) if side_by_side else (12, 8.4), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0] if side_by_side else fig.subplots(2, 1, squeeze=False)[:, 0]
    clipped = False
    ticks = [f"{group}\n(n={int(n)})" for group, n in zip(summary["group"], summary["n"])]
    for ax, (metric, label) in zip(axes, panels):
        seeds = seed_scores(frame, summary["group"], f"val/{metric}")
        for rank in range(n_groups):
            clipped |= draw_interval(ax, rank, summary.iloc[rank], metric, seeds[rank], line_style(rank)["color"])
        ax.set_xticks(
            range(n_groups), ticks, rotation=30 if n_groups > 4 else 0, ha="right" if n_groups > 4 else "center"
        )
        ax.set_xlim(-0.6, n_groups - 0.4)
        ax.set_ylabel(label)
        ax.set_title(f"{label} by experiment, mean and 95% interval over seeds", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return fig, clipped


def draw_interval(ax, x: float, row: pd.Series, metric: str, seeds: np.ndarray, colour) -> bool:
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


# --- learning curves: one line per run, or per group of seeds ------------------------------------------


def learning_curves_html(frame: pd.DataFrame, history: pd.DataFrame, total: int | None = None) -> str:
    if history.empty or METRIC not in history.columns:
        return NO_HISTORY
    caption = "One line per experiment; the star marks its best epoch (the weights it kept)."
    if len(frame) > MAX_COLOURED:
        caption += f" The best {MAX_COLOURED} of {len(frame)} are in colour, the rest grey."
    if total and total > len(frame):
        caption += f" Drawn for the best {len(frame)} of {total} experiments by val macro F1."
    return img_tag(learning_curves_figure(frame, history), "learning curves") + f'\n<p class="caption">{caption}</p>'


def learning_curves_figure(frame: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """Val macro F1 (and val loss) per epoch: a line per experiment of `frame`, in its order, with a
    star at the experiment's best epoch."""
    curves: list[Curve] = []
    for rank, (_, row) in enumerate(frame.iterrows()):
        epochs = history[history["experiment"] == row["experiment"]].sort_values("epoch")
        if epochs.empty:
            continue
        best = epochs[epochs["epoch"] == row.get("best_epoch")]
        label = row["experiment"] if rank < MAX_COLOURED else None
        curves.append((rank, label, epochs.set_index("epoch"), partial(_best_epoch_star, best=best)))
    return _curves_figure(history, curves, title="{} per epoch", legend="experiment")


def group_curves_html(
    frame: pd.DataFrame, history: pd.DataFrame, summary: pd.DataFrame, order: list[str] | None = None
) -> str:
    if history.empty or METRIC not in history.columns:
        return NO_HISTORY
    total = frame["group"].nunique()
    order = order if order is not None else group_order(frame, summary)
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
        img_tag(group_curves_figure(frame, history, order), "learning curves, mean over seeds")
        + f'\n<p class="caption">{caption}</p>'
    )


def group_curves_figure(frame: pd.DataFrame, history: pd.DataFrame, order: list[str] | None = None) -> Figure:
    """Val macro F1 (and val loss) per epoch: for each group in `order` (default: best mean val macro
    F1 first) the mean over its seeds as a line, labelled `group (n=seeds)`, with a min–max band."""
    order = order if order is not None else group_order(frame, group_summary(frame))
    columns = [column for column, _ in _curve_panels(history)]
    history = history.assign(group=history["experiment"].map(dict(zip(frame["experiment"], frame["group"]))))
    curves: list[Curve] = []
    for rank, group in enumerate(order):
        epochs = history[history["group"] == group]
        if epochs.empty:
            continue
        by_epoch = epochs.groupby("epoch")[columns]
        label = f"{group} (n={epochs['experiment'].nunique()})" if rank < MAX_COLOURED else None
        band = partial(_seed_band, low=by_epoch.min(), high=by_epoch.max(), alpha=0.18 if rank < MAX_COLOURED else 0.08)
        curves.append((rank, label, by_epoch.mean(), band))
    return _curves_figure(
        history, curves, title="{} per epoch, mean and min–max over seeds", legend="experiment (seeds)"
    )


def _curves_figure(history: pd.DataFrame, curves: list[Curve], *, title: str, legend: str) -> Figure:
    """The learning-curve panels, val macro F1 and (where the history has it) val loss per epoch, with
    a line for each of `curves` in each panel and one legend for them all."""
    panels = _curve_panels(history)
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for rank, label, values, mark in curves:
        style = line_style(rank)
        for ax, (column, _) in zip(axes, panels):
            # label the first panel's lines only: fig.legend gathers every axis and would list each twice
            first = ax is axes[0]
            ax.plot(values.index, values[column], marker="o", markersize=3, label=label if first else None, **style)
            mark(ax, column, style)
    for ax, (column, label) in zip(axes, panels):
        if column == "val/loss" and use_log_axis(history[column]):
            log_scale(ax, "y")  # one diverging run (loss in the hundreds) would flatten every other line
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title.format(label))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9, title=legend)
    return fig


def _curve_panels(history: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, label) of each learning-curve panel: val macro F1, and val loss where it was recorded."""
    return [(METRIC, "val macro F1")] + ([("val/loss", "val loss")] if "val/loss" in history.columns else [])


def _best_epoch_star(ax, column: str, style: dict, *, best: pd.DataFrame) -> None:
    """A run's best epoch (the weights it kept) as a star on its line."""
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


def _seed_band(ax, column: str, style: dict, *, low: pd.DataFrame, high: pd.DataFrame, alpha: float) -> None:
    """A group's lowest to highest seed at each epoch, shaded under its mean line."""
    ax.fill_between(
        low.index, low[column], high[column], color=style["color"], alpha=alpha, linewidth=0, zorder=style["zorder"] - 1
    )


# --- shared by every figure --------------------------------------------------------------------------


def new_figure(
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


def img_tag(fig: Figure, alt: str) -> str:
    """The figure as an <img> with the PNG inline (base64), so the page needs no other file."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def line_style(rank: int) -> dict:
    """The rank-th line's look: one of tab10's colours for the best MAX_COLOURED, thin grey after."""
    if rank < MAX_COLOURED:
        return {"color": f"C{rank}", "linewidth": 1.8, "alpha": 1.0, "zorder": 3}
    return {"color": "0.6", "linewidth": 0.8, "alpha": 0.6, "zorder": 1}


def log_scale(ax, axis: str) -> None:
    """A log axis with minor ticks at 2 and 5 of each decade, not matplotlib's 2 to 9: a learning rate
    still reads off it, and each tick is an object made on every draw, half the time of a panel with
    four decades."""
    ax.set(**{f"{axis}scale": "log"})
    getattr(ax, f"{axis}axis").set_minor_locator(LogLocator(subs=(2.0, 5.0)))
