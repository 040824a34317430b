"""Terminal tables (rich), rendered to text so the CLI prints them and tests read them.

Presentation only: takes plans and DataFrames, computes nothing. No Ray, no torch.
"""

from __future__ import annotations

import shutil

from rich.console import Console
from rich.table import Table

from raytrain.plan import SweepPlan

STATUS_TEXT = {"new": "to run", "done": "done (skipped)", "changed": "done, config changed (skipped)"}


def render(table: Table) -> str:
    # the real terminal width where there is one; 120 columns in pipes and tests
    width = shutil.get_terminal_size((120, 24)).columns
    console = Console(width=width, record=True, file=_Discard(), color_system=None)
    console.print(table)
    return console.export_text().rstrip()


def plan_table(plan: SweepPlan) -> str:
    table = Table(title=f"sweep {plan.name}: {len(plan.to_run)} of {len(plan.trials)} to run", title_justify="left")
    for column in ("experiment", "status", "differs from baseline", "per trial"):
        table.add_column(column, overflow="fold")
    for trial in plan.trials:
        status = "to run (--force)" if plan.force and trial.status != "new" else STATUS_TEXT[trial.status]
        changes = ", ".join(f"{key}={_short(new)}" for key, (_, new) in trial.changes.items() if not key.startswith("resources."))
        resources = trial.config.resources
        gpu = "auto" if resources.gpu is None else f"{resources.gpu:g}"
        table.add_row(trial.name, status, changes or "-", f"{resources.cpu:g} CPU, {gpu} GPU")
    return render(table)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
