"""Val macro F1 against the knobs: a plot per hyperparameter that differs between experiments (a point
per run, or per group of seeds with its interval) and, for each adaptive search, a panel per knob it
searched and its best score so far. Must not import torch, ray or pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from raytrain.naming import METRIC, PRUNED, search_of
from raytrain.report.figures import draw_interval, img_tag, line_style, log_scale, new_figure, seed_scores
from raytrain.report.html_tables import esc, format_metric, format_value
from raytrain.results import analysis
from raytrain.results.analysis import LOG_SPAN, use_log_axis

MANY_POINTS = 50  # past this a scatter's points are drawn small and see-through
NAMED_POINTS = 12  # up to this many points are named on a hyperparameter plot; more would be an unreadable blot
MAX_SEARCH_PLOTS = 10  # searches that get a plot against their knobs, the best first
MAX_INTERVALS = 10  # groups drawn with their interval and seeds in a hyperparameter plot; the rest as means
SPREAD = 0.15  # how far either side of its category's slot a category plot spreads that category's points
LOG_AXIS_NOTE = (
    f"A positive numeric hyperparameter spanning more than {LOG_SPAN:g}x is on a log axis; "
    "for a categorical one the bar is the mean"
)

# A plot for _plot_each: given a hyperparameter and its values (one per point), the figure and whether it
# cut an interval at 0 or 1.
Plot = Callable[[str, pd.Series], tuple[Figure, bool]]


# --- hyperparameters: a point per run, or per group of seeds ------------------------------------------


def hyperparameters_html(frame: pd.DataFrame, hyperparameters: list[str]) -> str:
    """A plot of val macro F1 against each of `hyperparameters`: a point per scored experiment, the
    best a gold star."""
    note = _nothing_to_plot(len(frame), hyperparameters, "Only one experiment")
    if note:
        return note
    scored = frame[frame[METRIC].notna()]
    parts, _ = _plot_each(
        hyperparameters,
        scored,
        partial(_run_plot, scored),
        alt="val macro F1 against {}",
        among="the scored experiments",
    )
    parts.append(f'<p class="caption">Each point is one experiment; the gold star is the best. {LOG_AXIS_NOTE}.</p>')
    return "\n".join(parts)


def group_hyperparameters_html(
    frame: pd.DataFrame, summary: pd.DataFrame, hyperparameters: list[str], total: int | None = None
) -> str:
    """hyperparameters_html for repeats: one point per group (its mean over seeds, 95% t interval as
    the error bar), the seeds as faint dots."""
    note = _nothing_to_plot(len(summary), hyperparameters, "Only one experiment has a finished seed")
    if note:
        return note
    # a row per group of summary, in its order, as the plots' points are
    settings = frame.groupby("group", sort=False)[hyperparameters].first().loc[summary["group"]]
    seeds = seed_scores(frame, summary["group"], METRIC)
    parts, clipped = _plot_each(
        hyperparameters,
        settings.reset_index(drop=True),
        partial(_group_plot, summary, seeds),
        alt="val macro F1 against {}, mean over seeds",
        among="the groups with a finished seed",
    )
    caption = (
        "Each point is one experiment's mean over its finished seeds, the bar its 95% Student t interval, the faint "
        f"dots its seeds. {LOG_AXIS_NOTE} of the experiments' means."
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


def _nothing_to_plot(count: int, hyperparameters: list[str], only_one: str) -> str:
    """What the section says instead of plots when there is nothing to compare; "" when there is."""
    if count < 2:
        return f"<p>{only_one}: there is nothing to compare it with.</p>"
    if not hyperparameters:
        return f"<p>No hyperparameter varies between the {count} experiments, so there is nothing to plot.</p>"
    return ""


def _plot_each(
    hyperparameters: list[str], points: pd.DataFrame, plot: Plot, *, alt: str, among: str
) -> tuple[list[str], bool]:
    """A row of plots, one per hyperparameter with two or more values among `points` (a row per point),
    and a line naming those left out. Returns the HTML parts and whether any plot cut an interval."""
    images, skipped, clipped = [], [], False
    for column in hyperparameters:
        values = points[column]
        if values.dropna().astype(str).nunique() < 2:
            skipped.append(column)  # it only varies through experiments that are not points (no score, no seed)
            continue
        fig, cut = plot(column, values)
        clipped |= cut
        images.append(img_tag(fig, alt.format(column)))
    parts = ['<div class="row">' + "\n".join(images) + "</div>"] if images else []
    if skipped:
        parts.append(f"<p>Not plotted (one value among {among}): {esc(', '.join(skipped))}.</p>")
    return parts, clipped


def _run_plot(scored: pd.DataFrame, column: str, values: pd.Series) -> tuple[Figure, bool]:
    numbers = _as_numbers(values)
    fig = _numeric_plot(scored, column, numbers) if numbers is not None else _categorical_plot(scored, column)
    return fig, False  # a run has no interval to cut


def _group_plot(summary: pd.DataFrame, seeds: list[np.ndarray], column: str, values: pd.Series) -> tuple[Figure, bool]:
    numbers = _as_numbers(values)
    if numbers is not None:
        return _numeric_group_plot(summary, seeds, column, numbers)
    return _categorical_group_plot(summary, seeds, column, values)


def _numeric_plot(scored: pd.DataFrame, column: str, x: pd.Series) -> Figure:
    keep = x.notna()
    fig, ax = _numeric_axes(x)
    ax.scatter(x[keep], scored.loc[keep, METRIC], **_points_style(int(keep.sum())))
    _mark_best(ax, x, scored[METRIC])
    _name_points_and_scale(ax, x, scored[METRIC], scored["experiment"], offset=(4, 4))
    return _finish_hp_axes(fig, ax, column)


def _numeric_group_plot(
    summary: pd.DataFrame, seeds: list[np.ndarray], column: str, x: pd.Series
) -> tuple[Figure, bool]:
    fig, ax = _numeric_axes(x)
    clipped = _draw_groups(ax, summary, seeds, [(i, value) for i, value in enumerate(x) if not np.isnan(value)])
    _name_points_and_scale(ax, x, summary["macro_f1/mean"], summary["group"], offset=(6, 4))
    return _finish_hp_axes(fig, ax, column), clipped


def _categorical_plot(scored: pd.DataFrame, column: str) -> Figure:
    labels, categories, fig, ax = _category_axes(scored[column])
    x = _category_positions(labels, categories)
    for i, category in enumerate(categories):
        members = labels == category
        scores = scored.loc[members, METRIC].to_numpy(dtype=float)
        ax.bar(i, scores.mean(), width=0.6, color="tab:blue", alpha=0.25, zorder=1)
        ax.scatter(x[members].to_numpy(), scores, **_points_style(len(scored)))
    _mark_best(ax, x, scored[METRIC])
    return _finish_category_axes(fig, ax, column, categories)


def _categorical_group_plot(
    summary: pd.DataFrame, seeds: list[np.ndarray], column: str, values: pd.Series
) -> tuple[Figure, bool]:
    labels, categories, fig, ax = _category_axes(values)
    x = _category_positions(labels, categories, spread=0.2)
    placed = []  # (group's row in summary, its x), category by category
    for i, category in enumerate(categories):
        members = np.flatnonzero(labels.to_numpy() == category)
        ax.bar(i, summary.loc[members, "macro_f1/mean"].mean(), width=0.7, color="tab:blue", alpha=0.2, zorder=1)
        placed += [(member, x.iloc[member]) for member in members]
    clipped = _draw_groups(ax, summary, seeds, placed)
    return _finish_category_axes(fig, ax, column, categories), clipped


def _draw_groups(ax, summary: pd.DataFrame, seeds: list[np.ndarray], placed: list[tuple[int, float]]) -> bool:
    """Each (group's row in summary, x) of `placed`: the best MAX_INTERVALS with their interval and seeds,
    the rest as their means alone, in one scatter call: dozens of error bars with their seeds beside them
    take seconds to draw and hide each other anyway. Returns whether an interval was cut at 0 or 1."""
    clipped, plain = False, []
    for member, x in placed:
        if member < MAX_INTERVALS:
            clipped |= draw_interval(ax, x, summary.iloc[member], "macro_f1", seeds[member], "tab:blue")
        else:
            plain.append((x, summary.iloc[member]["macro_f1/mean"]))
    if plain:
        x, y = zip(*plain)
        ax.scatter(x, y, s=18, color="tab:blue", alpha=0.5, linewidth=0, zorder=2)
    return clipped


# --- axes of the hyperparameter plots ------------------------------------------------------------------


def _numeric_axes(x: pd.Series) -> tuple[Figure, Axes]:
    # past NAMED_POINTS no point is named, so only numbers are on it: fixed margins fit
    fig = new_figure((4.6, 3.4), fixed=x.notna().sum() > NAMED_POINTS)
    return fig, fig.subplots()


def _category_axes(values: pd.Series) -> tuple[pd.Series, list[str], Figure, Axes]:
    """The values as labels, the categories in order, and a figure wide enough for them all."""
    labels, categories = _categories(values)
    fig = Figure(figsize=(max(4.6, 0.9 * len(categories) + 1.5), 3.4), layout="constrained")
    return labels, categories, fig, fig.subplots()


def _finish_category_axes(fig: Figure, ax, column: str, categories: list[str]) -> Figure:
    ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 4 else 0)
    return _finish_hp_axes(fig, ax, column)


def _finish_hp_axes(fig: Figure, ax, column: str) -> Figure:
    ax.set_xlabel(column)
    ax.set_ylabel("val macro F1")
    ax.set_title(f"val macro F1 vs {column}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def _categories(values: pd.Series) -> tuple[pd.Series, list[str]]:
    labels = values.map(format_value)
    return labels, sorted(labels.unique())


def _category_positions(labels: pd.Series, categories: list[str], spread: float = SPREAD) -> pd.Series:
    """Each point's x in a category plot: its category's slot, spread up to `spread` either side. The
    spread is even, not random jitter: the same runs draw the same page."""
    x = pd.Series(np.nan, index=labels.index)
    for i, category in enumerate(categories):
        members = labels.index[labels == category]
        x[members] = i + (np.linspace(-spread, spread, len(members)) if len(members) > 1 else np.zeros(1))
    return x


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
        log_scale(ax, "x")
    elif x[keep].apply(float.is_integer).all():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, batch size: no 1.2 epochs on the axis


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """The column as floats when every present value is a number (a bool is a category), else None."""
    present = values.dropna()
    if not len(present) or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)) for v in present
    ):
        return None
    return values.astype(float)


# --- adaptive searches -----------------------------------------------------------------------------------


def _search_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The scored trials of adaptive searches, each with its search's name in `search`."""
    return frame.assign(search=frame["experiment"].map(search_of)).dropna(subset=["search", METRIC])


def search_progress_html(frame: pd.DataFrame) -> str:
    """For each adaptive search, the best val macro F1 found so far against the number of trials
    finished (in the order proposed): a curve that has flattened says more trials will not help."""
    trials = _search_trials(frame)
    fig = new_figure((7, 4), fixed=True)  # numbers on both axes; the legend sits inside
    ax = fig.subplots()
    for rank, (search, group) in enumerate(trials.groupby("search", sort=True)):
        group = group.sort_values("experiment")  # t001, t002, ...: the order the searcher proposed them
        x = np.arange(1, len(group) + 1)
        style = line_style(rank)
        ax.step(x, group[METRIC].cummax(), where="post", label=f"{search} (best so far)", color=style["color"])
        pruned = (group["status"] == PRUNED).to_numpy()
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
    return img_tag(fig, "best val macro F1 so far against trials finished") + f'\n<p class="caption">{caption}</p>'


def search_knobs_html(frame: pd.DataFrame) -> str:
    """For each adaptive search, val macro F1 against each knob it searched, one small panel per
    knob, the best trial a gold star: with hundreds of trials, where the good region lies is read
    off at a glance. The knobs are the config columns that differ between the search's trials."""
    trials = _search_trials(frame)
    best_first = trials.groupby("search")[METRIC].max().sort_values(ascending=False, kind="stable").index
    parts = []
    for search in best_first[:MAX_SEARCH_PLOTS]:
        group = trials[trials["search"] == search]
        knobs = analysis.distinguishing_knobs(group)
        if len(group) < 2 or not knobs:
            continue
        best = group.loc[group[METRIC].astype(float).idxmax()]
        parts.append(f"<h3>{esc(search)}: val macro F1 against each searched knob</h3>")
        parts.append(
            img_tag(search_knobs_figure(group, knobs, search), f"{search}: val macro F1 against each searched knob")
        )
        parts.append(
            f'<p class="caption">{len(group)} trials. The gold star is the best, {esc(best["experiment"])} '
            f"(val macro F1 {format_metric(best[METRIC])}); crosses are trials the scheduler pruned.</p>"
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
    fig = new_figure((3.0 * columns + 0.6, 2.8 * rows + 0.4), fixed=all_numbers, top=0.6, grid=(rows, columns))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax in axes[len(knobs) :]:
        ax.set_axis_off()
    pruned = (trials["status"] == PRUNED).to_numpy()
    y = trials[METRIC].astype(float)
    for ax, knob in zip(axes, knobs):
        numeric = numbers[knob]
        if numeric is None:
            labels, categories = _categories(trials[knob])
            x = _category_positions(labels, categories)
            ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0, fontsize=8)
        else:
            x = numeric
            if use_log_axis(x):
                log_scale(ax, "x")
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
