"""Experiment names: what a repeat and an adaptive search's trial are called, and how the readers
tell them apart again without loading the config schema."""

from __future__ import annotations

import sys

from raytrain.naming import adaptive_trial_name, group_of, repeat_name, search_of
from tests.conftest import PROJECT_ROOT


def test_a_repeat_belongs_to_its_experiment_and_a_trial_to_its_search():
    assert group_of(repeat_name("baseline", 2)) == "baseline" and search_of(repeat_name("baseline", 2)) is None
    assert adaptive_trial_name("lr_search", 7) == "lr_search/t007" and search_of("lr_search/t007") == "lr_search"
    assert group_of(adaptive_trial_name("lr_search", 7)) == "lr_search/t007", "each searched point is its own group"
    for plain in ("baseline", "t001", "a/b/t001", "run/tx01", "lr_search/t"):
        assert search_of(plain) is None, plain
        assert group_of(plain) == plain


def test_compare_and_report_read_runs_without_importing_the_config_schema(subprocesses):
    """pydantic and the schema cost ~0.2 s of a `compare` that should take about one second."""
    code = (
        "import sys, raytrain.report, raytrain.results.tables, raytrain.results; "
        "print(sorted(m for m in ('pydantic', 'raytrain.config', 'torch', 'ray') if m in sys.modules))"
    )
    shown = subprocesses.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
