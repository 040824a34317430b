"""The report's "Population based training" section: for each population (search.algorithm pbt or
pb2), each knob against epoch, a line per member, and where members copied one another.

A member's line is its lineage (raytrain/lineage.py): the epochs its final weights went through,
with the knob values in force at each, so where it copied another member its line takes that
member's earlier epochs. Must not import torch, ray or pydantic.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from raytrain import lineage
from raytrain.naming import METRIC, search_of
from raytrain.report.figures import img_tag, line_style, log_scale, new_figure
from raytrain.report.html_tables import esc, format_metric, format_value
from raytrain.results.analysis import use_log_axis

MAX_POPULATIONS = 5  # populations drawn, the best first
COPY_MARKER = {"marker": "D", "markersize": 6, "markeredgecolor": "black", "markeredgewidth": 0.6, "zorder": 5}


def populations(frame: pd.DataFrame, history: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{population: its members' lineage rows}, the best population first. `history` is
    results.load_history's frame for (at least) the members."""
    if history.empty or lineage.MEMBER not in history.columns:
        return {}
    rows = history[history[lineage.MEMBER].notna()]
    rows = rows.assign(population=rows["experiment"].map(search_of)).dropna(subset=["population"])
    best = frame.assign(population=frame["experiment"].map(search_of)).groupby("population")[METRIC].max()
    order = best.reindex(rows["population"].unique()).sort_values(ascending=False, na_position="last").index
    return {population: rows[rows["population"] == population] for population in order}


def population_html(frame: pd.DataFrame, history: pd.DataFrame) -> str:
    found = populations(frame, history)
    parts = []
    for population, rows in list(found.items())[:MAX_POPULATIONS]:
        knobs = [k for k in lineage.knobs_in(rows.to_dict("records")) if lineage.knob_column(k) in rows]
        members = sorted(rows["experiment"].unique())
        parts.append(f"<h3>{esc(population)}: {len(members)} members, each knob against epoch</h3>")
        parts.append(img_tag(population_figure(rows, knobs, population), f"{population}: each knob against epoch"))
        parts.append(
            '<p class="caption">A line per member: the epochs its final weights went through, with the value in '
            "force at each. A diamond is where it went on from another member's checkpoint (copied its weights "
            "and took new values); before it, the line is that member's.</p>"
        )
        parts.append(copies_table(rows, members))
    if len(found) > MAX_POPULATIONS:
        parts.append(f'<p class="more">and {len(found) - MAX_POPULATIONS} more populations, not drawn</p>')
    return "\n".join(parts)


def population_figure(rows: pd.DataFrame, knobs: list[str], population: str) -> Figure:
    """One panel per knob (and val macro F1 last): value against epoch, a line per member."""
    panels = [*knobs, METRIC]
    columns = min(len(panels), 3)
    grid = (-(-len(panels) // columns), columns)
    fig = new_figure((4.0 * columns, 3.0 * grid[0] + 0.6), fixed=False)
    axes = fig.subplots(*grid, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for rank, (member, line) in enumerate(rows.groupby("experiment", sort=True)):
        line = line.sort_values("epoch")
        style = line_style(rank)
        copies = {e["epoch"] + 1 for e in lineage.exploits(line.to_dict("records"))}
        for ax, panel in zip(axes, panels):
            column = panel if panel == METRIC else lineage.knob_column(panel)
            values = line[column]
            numeric = pd.to_numeric(values, errors="coerce")
            y = numeric if numeric.notna().all() else values.astype(str)
            ax.plot(line["epoch"], y, drawstyle="steps-mid", label=member.rsplit("/", 1)[-1], **style)
            copied = line["epoch"].isin(copies).to_numpy()
            if copied.any():
                ax.plot(line["epoch"][copied], y[copied], linestyle="none", color=style["color"], **COPY_MARKER)
    for ax, panel in zip(axes, panels):
        column = METRIC if panel == METRIC else lineage.knob_column(panel)
        numeric = pd.to_numeric(rows[column], errors="coerce")
        if numeric.notna().all() and use_log_axis(numeric):
            log_scale(ax, "y")
        ax.set_title("val macro F1" if panel == METRIC else panel, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, title="member", title_fontsize=7)
    fig.suptitle(f"{population}: each knob against epoch", fontsize=11)
    return fig


def copies_table(rows: pd.DataFrame, members: list[str]) -> str:
    """Per member: each copy along its lineage (who went on from whom, as of which epoch) and the
    values it ended with."""
    body = []
    for member in members:
        line = rows[rows["experiment"] == member].sort_values("epoch").to_dict("records")
        copies = lineage.exploits(line)
        said = "; ".join(f"{c['into']} went on from {c['from']} as of epoch {c['epoch']}" for c in copies) or "none"
        last = line[-1]
        ended = ", ".join(
            f"{knob} {format_value(last.get(lineage.knob_column(knob)))}" for knob in lineage.knobs_in(line)
        )
        body.append(
            f"<tr><td>{esc(member)}</td><td>{esc(said)}</td><td>{esc(ended)}</td>"
            f'<td class="num">{format_metric(max(r.get(METRIC) or 0.0 for r in line))}</td></tr>'
        )
    return (
        "<table><thead><tr><th>member</th><th>copies along its line of weights</th><th>values at its last epoch</th>"
        "<th>best val macro F1</th></tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table>"
    )
