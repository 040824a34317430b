"""The HTML report: one self-contained page (`page`) of HTML tables (`html_tables`) and matplotlib
figures (`figures`; the plots against hyperparameters and search knobs in `knob_figures`; what
mattered, from results.importance, in `importance_figures`) drawn from the results DataFrames.

A reader, as results/ is: no torch, ray or pydantic (`make lint` checks).
"""

from raytrain.report.page import ReportError, render_report, write_report

__all__ = ["ReportError", "render_report", "write_report"]
