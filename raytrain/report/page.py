"""The HTML report: one self-contained page (leaderboard, learning curves, search progress, a
population's knobs against epoch, what mattered, per-class F1, confusion matrices, hyperparameter
plots) built from results' DataFrames and the confusion-matrix files, laid out here from the
tables of `html_tables` and the plots of `figures`, `knob_figures`, `population_figures` and
`importance_figures`. With repeats (one trial per seed) it adds a per-group summary and intervals.
Must not import torch, ray or pydantic.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from raytrain import artifacts, lineage, results
from raytrain.errors import UserError
from raytrain.naming import DAMAGED, FINISHED_STATUSES, METRIC, PRUNED, search_of
from raytrain.report.figures import group_curves_html, group_order, group_summary, intervals_html, learning_curves_html
from raytrain.report.html_tables import confusion_html, esc, group_table_html, leaderboard_html, per_class_html
from raytrain.report.importance_figures import importance_html
from raytrain.report.knob_figures import (
    group_hyperparameters_html,
    hyperparameters_html,
    search_knobs_html,
    search_progress_html,
)
from raytrain.report.population_figures import population_html
from raytrain.results import analysis

TOP_ROWS = 50  # leaderboard rows; the rest are counted, and all are in the CSV beside the page
TOP_DETAIL = 10  # experiments with learning curves, per-class F1 rows and confusion matrices
MAX_NAMED = 10  # names listed in a header note (pruned, damaged, unfinished); the rest are counted
INTERVALS_TITLE = "Mean and 95% interval over seeds"


class ReportError(UserError):
    """There is nothing to report on (no runs folder, or no experiment in it)."""


def write_report(runs_dir: str | Path, out_path: str | Path, *, top: int = TOP_ROWS, detail: int = TOP_DETAIL) -> Path:
    """Write the report for `runs_dir` to `out_path` (atomically) and return that path. Every row
    of the leaderboard, however many, goes to a CSV beside it (report.csv for report.html)."""
    runs_dir, out_path = Path(runs_dir), Path(out_path)
    frame = _load(runs_dir)
    csv_path = out_path.with_suffix(".csv")
    results.write_table(frame, csv_path)
    page = render_report(runs_dir, frame=frame, top=top, detail=detail, csv_name=csv_path.name)
    with artifacts.atomic_path(out_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
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
    # rows trained on different data: the leaderboards say which data each row had (the header warns)
    shown = varying
    if analysis.mixed_data(frame):
        frame = frame.assign(**{analysis.DATA_COLUMN: analysis.short_fingerprints(frame)})
        shown = [analysis.DATA_COLUMN, *varying]
    # (anchor, nav link, heading, content)
    if analysis.has_repeats(frame):
        summary = group_summary(frame)
        group_varying = analysis.distinguishing_knobs(frame)  # the seed is the repeat axis, not a knob
        order = group_order(frame, summary)[:detail]
        history = results.load_history(runs_dir, list(frame.loc[frame["group"].isin(order), "experiment"]))
        leaderboard = (
            "<h3>Groups, over their seeds</h3>\n"
            + group_table_html(frame, summary.head(top), group_varying)
            + _more_line(len(summary) - top, "groups", csv_name)
            + "\n<h3>Every run</h3>\n"
            + leaderboard_html(frame.head(top), shown)
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
                leaderboard_html(frame.head(top), shown) + _more_line(len(frame) - top, "experiments", csv_name),
            ),
            (
                "curves",
                "Learning curves",
                "Learning curves",
                learning_curves_html(frame.head(detail), history, total=len(frame)),
            ),
        ]
        hyperparameters = hyperparameters_html(frame, varying)
    members = _population_members(frame)
    # a population's members are not proposed one after another: no progress curve for them
    proposed = frame[~frame["experiment"].isin(members)]
    if proposed["experiment"].map(search_of).notna().any():
        sections.append(
            (
                "search",
                "Search progress",
                "Search progress: best val macro F1 so far",
                search_progress_html(proposed) + search_knobs_html(proposed),
            )
        )
    if members:
        sections.append(
            (
                "population",
                "Population based training",
                "Population based training: each knob against epoch",
                population_html(frame, results.load_history(runs_dir, members)),
            )
        )
    sections += [
        ("mattered", "What mattered", "What mattered: each knob's share of val macro F1", importance_html(frame)),
        ("per-class", "Per-class F1", "Per-class F1 (val)", per_class_html(frame.head(detail), total=len(frame))),
        ("confusion", "Confusion matrices", "Confusion matrices", confusion_html(runs_dir, frame, detail)),
        ("hyperparameters", "Hyperparameters", "Hyperparameters vs val macro F1", hyperparameters),
    ]
    links = [(anchor, link) for anchor, link, _, _ in sections]
    body = [header_html(runs_dir, frame, now or datetime.now(timezone.utc), links)]
    body += [_section(anchor, title, content) for anchor, _, title, content in sections]
    return _PAGE.format(title=esc(f"raytrain report: {runs_dir.resolve().name}"), css=_CSS, body="\n".join(body))


def _population_members(frame: pd.DataFrame) -> list[str]:
    """Members of a pbt/pb2 search: the rows with a knob's value at their end (lineage.final_values)."""
    columns = lineage.final_value_columns(frame.columns)
    if not columns:
        return []
    return list(frame.loc[frame[columns].notna().any(axis=1), "experiment"])


def _more_line(count: int, what: str, csv_name: str | None) -> str:
    if count <= 0:
        return ""
    where = f" (all in <code>{esc(csv_name)}</code>, beside this page)" if csv_name else ""
    return f'\n<p class="more">and {count} more {what}{where}</p>'


# --- the header and the sections around the tables and plots ------------------------------------------


def header_html(runs_dir: Path, frame: pd.DataFrame, now: datetime, links: list[tuple[str, str]] | None = None) -> str:
    n = len(frame)
    groups = ""
    if "group" in frame.columns and analysis.has_repeats(frame):
        groups = f" in {frame['group'].nunique()} groups of seeds"
    experiments = f"{n} experiment{'s' if n != 1 else ''}{esc(groups)}"
    generated = esc(now.strftime("%Y-%m-%d %H:%M %Z").strip())
    parts = [
        "<h1>raytrain report</h1>",
        f'<p class="meta">Runs folder <code>{esc(runs_dir.resolve())}</code> &middot; {experiments}'
        f" &middot; generated {generated}</p>",
    ]
    mixed = analysis.mixed_data(frame)
    if mixed:
        parts.append(f'<p class="note">Warning: {esc(mixed)}. The data column says which run had which.</p>')
    damaged = frame[frame["status"] == DAMAGED]
    if len(damaged):
        one = len(damaged) == 1
        problems = _some(
            [f"{name}: {problem}" for name, problem in zip(damaged["experiment"], damaged["problem"])], "; "
        )
        parts.append(
            f"{_note_start(damaged, n)}{'is' if one else 'are'} damaged and left out of the plots: {esc(problems)}. "
            f"Run {'its' if one else 'their'} config again to repair it.</p>"
        )
    pruned = frame[frame["status"] == PRUNED]
    if len(pruned):
        one = len(pruned) == 1
        parts.append(
            f"{_note_start(pruned, n)}{'was' if one else 'were'} pruned: the scheduler (ASHA) stopped "
            f"{'it' if one else 'them'} early ({esc(_some(list(pruned['experiment'])))}). Their numbers are "
            "from the epochs they ran (see epochs run); they have no test metrics.</p>"
        )
    unfinished = frame[~frame["status"].isin([*FINISHED_STATUSES, DAMAGED])]
    if len(unfinished):
        names = _some([f"{name} ({status})" for name, status in zip(unfinished["experiment"], unfinished["status"])])
        parts.append(
            f"{_note_start(unfinished, n)}{'is' if len(unfinished) == 1 else 'are'} not finished: {esc(names)}. "
            "Their numbers are from the best epoch so far; they have no confusion matrix or test metrics yet.</p>"
        )
    links = links or [
        ("leaderboard", "Leaderboard"),
        ("curves", "Learning curves"),
        ("per-class", "Per-class F1"),
        ("confusion", "Confusion matrices"),
        ("hyperparameters", "Hyperparameters"),
    ]
    parts.append("<nav>" + " &middot; ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in links) + "</nav>")
    return "\n".join(parts)


def _note_start(rows: pd.DataFrame, n: int) -> str:
    """The opening of a header note on some of the `n` experiments: "<p class="note">2 of 9 experiments "."""
    return f'<p class="note">{len(rows)} of {n} experiments '


def _some(names: list[str], sep: str = ", ") -> str:
    """The first MAX_NAMED names, and how many more: a note naming 400 pruned trials is a wall."""
    shown = sep.join(names[:MAX_NAMED])
    return shown + (f"{sep}and {len(names) - MAX_NAMED} more (see the CSV)" if len(names) > MAX_NAMED else "")


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n{content}\n</section>'


# Local fonts only (no web fonts): the page must render offline. A backslash ends a line of code, not of
# the CSS: the style sheet is unchanged, and no line runs past 120 characters.
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; line-height: 1.45; }
h1 { margin-bottom: 4px; } h3 { margin: 20px 0 4px; font-size: 1.05em; } \
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 36px; }
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
table.heat td { text-align: center; font-variant-numeric: tabular-nums; min-width: 2.6em; padding: 3px 4px; \
border-color: #fff; }
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
