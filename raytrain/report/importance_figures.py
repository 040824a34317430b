"""The report's "What mattered" section: results.importance's answer as bars with their 95% intervals
and a table, one marginal plot per knob that matters (val macro F1 against the knob, with the 95%
band), and a parallel-coordinates plot of the knobs, each run a line coloured by its score. Too few
runs for an answer: the reason, as the terminal gives it. Must not import torch, ray or pydantic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from raytrain.naming import METRIC, lower_is_better
from raytrain.report.figures import img_tag, log_scale
from raytrain.report.html_tables import esc, format_metric
from raytrain.results import importance, stats
from raytrain.results.analysis import CONFIDENCE, format_p

MAX_MARGINALS = 6  # marginal plots, the most important knobs first: past a few, the table says the rest
MARGINAL_BINS = 8  # a knob searched over a range is drawn as the mean of up to this many equal-count bins
MATTERS, NOISE = "tab:blue", "0.65"  # a knob that matters, and one not distinguishable from noise


def importance_html(frame: pd.DataFrame, metric: str = METRIC) -> str:
    """The section: what importance.analyze finds for `metric` across the frame's runs."""
    found = importance.analyze(frame, metric)
    if found.too_few:
        return f"<p>Too few experiments for an answer: {esc(found.reason)}.</p>"
    table = found.table
    shown = _marginal_knobs(found)
    parts = [
        f'<p class="caption">{esc(len(found.runs))} finished runs, {esc(found.design)}; '
        f"method: {esc(found.assumes)}.</p>",
        img_tag(bars_figure(found), f"importance of each knob for {metric}, with 95% intervals"),
        _table_html(found),
        '<div class="row">'
        + "\n".join(img_tag(marginal_figure(found, knob), f"{metric} against {knob.name}") for knob in shown)
        + "</div>",
    ]
    caption = (
        "Each marginal plot is the metric against one knob: the mean at each value with its 95% interval (on a "
        "grid, the ANOVA's mean over the other knobs' levels alike, as in the table; for a knob searched over a "
        "range, the mean of each of a few equal-count bins of its values), the dots the runs."
    )
    if not table["matters"].any():
        caption += " No knob is distinguishable from noise; the plot is of the knob ranked first."
    parts.append(f'<p class="caption">{caption}</p>')
    if len(found.knobs) >= 2:
        parts.append(img_tag(parallel_figure(found), f"the runs across their knobs, coloured by {metric}"))
        parts.append(
            '<p class="caption">Each line is one setting, through its value of each knob (the most important on the '
            f"left), coloured by its runs' mean {esc(metric)}: where the best lines gather, the good settings lie.</p>"
        )
    return "\n".join(parts)


def _marginal_knobs(found: importance.Importance) -> list[importance.Knob]:
    """The knobs that matter, most important first; the first-ranked alone when none does."""
    by_name = {knob.name: knob for knob in found.knobs}
    names = list(found.table.loc[found.table["matters"], "knob"]) or [found.table["knob"].iloc[0]]
    return [by_name[name] for name in names[:MAX_MARGINALS]]


def _table_html(found: importance.Importance) -> str:
    heads = ["#", "knob", "importance", "95% interval", "p (Holm)", "effect: mean [95% interval]"]
    rows = []
    for rank, row in enumerate(found.table.itertuples(index=False), start=1):
        p = format_p(row.p_holm) + ("" if row.matters else " ns")
        cells = [
            f'<td class="num">{rank}</td>',
            f"<td>{esc(row.knob)}</td>",
            f'<td class="num">{esc(format_metric(row.importance))}</td>',
            f'<td class="num">[{esc(format_metric(row.low))}, {esc(format_metric(row.high))}]</td>',
            f'<td class="num">{esc(p)}</td>',
            f"<td>{esc(row.effect)}</td>",
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = found.notes(format_metric)
    if found.left_out:
        notes.append("left out: " + ", ".join(f"{count} {reason}" for reason, count in found.left_out.items()))
    # sentences on a page; "ns" keeps the case the table writes it in
    notes = [(note if note.startswith("ns:") else note[0].upper() + note[1:]) + "." for note in notes]
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    caption = "".join(f'<p class="caption">{esc(note)}</p>' for note in notes)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + f"\n</tbody>\n</table>\n{caption}"


# --- the figures ---------------------------------------------------------------------------------------


def bars_figure(found: importance.Importance) -> Figure:
    """One horizontal bar per knob, the most important at the top: its importance, its 95% interval as an
    error bar, blue when it matters and grey when it is not distinguishable from noise."""
    table = found.table
    n = len(table)
    fig = Figure(figsize=(7.5, max(2.4, 1.2 + 0.45 * n)), layout="constrained")  # one knob still gets a readable bar
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    colours = [MATTERS if matters else NOISE for matters in table["matters"]]
    ax.barh(y, table["importance"], color=colours, height=0.6, zorder=2)
    low, high = table["low"].to_numpy(float), table["high"].to_numpy(float)
    point = table["importance"].to_numpy(float)
    ax.errorbar(
        point,
        y,
        xerr=[np.maximum(point - low, 0), np.maximum(high - point, 0)],
        fmt="none",
        ecolor="black",
        capsize=3,
        linewidth=1,
        zorder=3,
    )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [_short(name) for name in table["knob"]])
    ax.set_xlabel(f"share of {found.metric}'s variance beyond noise ({found.method})")
    ax.set_title(f"What mattered to {found.metric}: importance and 95% interval", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def marginal_figure(found: importance.Importance, knob: importance.Knob) -> Figure:
    """The metric against one knob, the runs as faint dots. A category or a short grid: the table's
    mean at each level with its 95% interval (on a grid, the ANOVA's marginal mean), as a band along
    a numeric knob and a bar for a category. A range: the mean of equal-count bins with its band."""
    y = found.runs[found.metric].to_numpy(float)
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.subplots()
    if knob.as_range:
        centres, means, lows, highs = _binned(knob.numbers, y, log=knob.log_scaled)
    else:
        levels = found.levels[knob.name]  # in the order of knob.levels
        means, lows, highs = (np.array([level[i] for level in levels], dtype=float) for i in (1, 2, 3))
        lows, highs = np.where(np.isnan(lows), means, lows), np.where(np.isnan(highs), means, highs)  # one run
        centres = np.arange(len(levels), dtype=float)
        if knob.numbers is not None:
            centres = np.array([knob.numbers[knob.codes == code][0] for code in range(len(levels))], dtype=float)
    if knob.numbers is None:
        x = knob.codes.astype(float)
        ax.scatter(x, y, s=12, color="0.5", alpha=0.5, zorder=2)
        error = [np.maximum(means - lows, 0), np.maximum(highs - means, 0)]
        ax.errorbar(centres, means, yerr=error, fmt="o", color=MATTERS, capsize=4, zorder=3)
        ax.set_xticks(centres, knob.levels, rotation=20 if len(knob.levels) > 4 else 0)
        ax.set_xlim(-0.6, len(knob.levels) - 0.4)
    else:
        order = np.argsort(centres)
        ax.scatter(knob.numbers, y, s=12, color="0.5", alpha=0.5, zorder=2)
        ax.plot(centres[order], means[order], color=MATTERS, marker="o", zorder=3)
        ax.fill_between(centres[order], lows[order], highs[order], color=MATTERS, alpha=0.2, zorder=1, linewidth=0)
        if knob.log_scaled:
            log_scale(ax, "x")
    ax.set_xlabel(_short(knob.name))
    ax.set_ylabel(found.metric)
    ax.set_title(f"{found.metric} vs {_short(knob.name)}", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def _binned(x: np.ndarray, y: np.ndarray, *, log: bool) -> tuple[np.ndarray, ...]:
    """Per value of x (a grid's few), or per equal-count bin of its values (a search's many): the
    bin's centre (geometric on a log scale), the mean of y and its 95% t interval (the mean itself
    where a bin has one run)."""
    values = np.unique(x)
    bins = [np.array([v]) for v in values] if len(values) <= MARGINAL_BINS else np.array_split(values, MARGINAL_BINS)
    centres, means, lows, highs = [], [], [], []
    for members in bins:
        inside = (x >= members[0]) & (x <= members[-1])
        spread = stats.t_interval(y[inside], CONFIDENCE)
        centre = np.exp(np.mean(np.log(x[inside]))) if log else np.mean(x[inside])
        centres.append(centre)
        means.append(spread.mean)
        lows.append(spread.mean if np.isnan(spread.low) else spread.low)
        highs.append(spread.mean if np.isnan(spread.high) else spread.high)
    return tuple(np.array(v) for v in (centres, means, lows, highs))


def parallel_figure(found: importance.Importance) -> Figure:
    """One vertical axis per knob (the table's order, most important on the left), each setting a line
    through its values, coloured by the mean of its runs' metric (the best on top). A number spanning
    decades is on a log scale; a category's levels are spread evenly up its axis."""
    by_name = {knob.name: knob for knob in found.knobs}
    knobs = [by_name[name] for name in found.table["knob"]]
    # one line per setting (its runs' mean): a grid's seeds would draw over each other
    settings = importance.settings_of(found.knobs, len(found.runs))
    first = np.array([np.flatnonzero(settings == s)[0] for s in range(int(settings.max()) + 1)])
    scores = found.runs[found.metric].to_numpy(float)
    y = np.bincount(settings, weights=scores) / np.bincount(settings)
    positions = np.stack([_unit(knob)[first] for knob in knobs], axis=1)  # (settings, knobs) in [0, 1]
    lower = lower_is_better(found.metric)
    order = np.argsort(-y if lower else y)  # the best drawn last, on top
    colour = Normalize(vmin=float(np.min(y)), vmax=float(np.max(y)))
    cmap = colormaps["viridis_r" if lower else "viridis"]
    fig = Figure(figsize=(max(6.0, 1.9 * len(knobs) + 2.0), 4.2), layout="constrained")
    ax = fig.subplots()
    xs = np.arange(len(knobs), dtype=float)
    segments = [np.column_stack([xs, positions[run]]) for run in order]
    alpha = 0.8 if len(y) <= 100 else 0.4  # hundreds of lines: see-through, so where they crowd reads as dark
    ax.add_collection(LineCollection(segments, colors=cmap(colour(y[order])), linewidths=1.2, alpha=alpha))
    for i, knob in enumerate(knobs):
        ax.axvline(i, color="black", linewidth=0.8)
        for value, label in _axis_labels(knob):
            ax.annotate(label, (i, value), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
    ax.set_xlim(-0.2, len(knobs) - 0.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [_short(knob.name) for knob in knobs], fontsize=8)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=colour, cmap=cmap), ax=ax, label=found.metric)
    ax.set_title(f"The runs across their knobs, coloured by {found.metric}", fontsize=10)
    return fig


def _unit(knob: importance.Knob) -> np.ndarray:
    """Each run's value of the knob on [0, 1] up its axis."""
    if knob.numbers is None:
        return knob.codes / max(len(knob.levels) - 1, 1)
    x = np.log10(knob.numbers) if knob.log_scaled else knob.numbers
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.full(len(x), 0.5)


def _axis_labels(knob: importance.Knob) -> list[tuple[float, str]]:
    """Where to name values up a knob's axis: every level of a category or a short grid, else the
    lowest, middle and highest value."""
    if knob.numbers is None or len(knob.levels) <= importance.MANY_LEVELS:
        unit = _unit(knob)
        return [(float(unit[knob.codes == code][0]), level) for code, level in enumerate(knob.levels)]
    x = np.log10(knob.numbers) if knob.log_scaled else knob.numbers
    middle = 10 ** ((x.min() + x.max()) / 2) if knob.log_scaled else (x.min() + x.max()) / 2
    return [(0.0, f"{knob.numbers.min():.3g}"), (0.5, f"{middle:.3g}"), (1.0, f"{knob.numbers.max():.3g}")]


def _short(name: str, limit: int = 40) -> str:
    """A knob's name for an axis: merged knobs' long names cut, with the rest counted."""
    parts = name.split(importance.TOGETHER)
    return name if len(name) <= limit else f"{parts[0]} + {len(parts) - 1} more"
