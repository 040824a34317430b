"""Readers of runs/: experiments as DataFrames (`load`, cached by `index`), repeats and baseline
comparisons (`analysis`, arithmetic in `stats`), which knobs mattered (`importance`), the compare
leaderboard as data (`leaderboard`) and as terminal text (`tables`).

Pandas, numpy and scipy only: no torch, ray or pydantic (`make lint` checks), so a notebook reads
results without a cluster and `compare` starts fast. The notebook API:

    from raytrain import results
    df = results.load("runs")
    results.knob_importance("runs")   # or a frame: one row per knob, most important first
"""

from raytrain.naming import DAMAGED, METRIC, SPLITS
from raytrain.results.importance import knob_importance
from raytrain.results.load import (
    FINGERPRINT,
    HISTORY_PARQUET,
    PER_CLASS_PARQUET,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SCHEMA_VERSION,
    class_names,
    export,
    hyperparameter_columns,
    load,
    load_history,
    load_per_class,
    per_class_rows,
    split_metrics,
    varying_hyperparameters,
    write_table,
)

__all__ = [
    "DAMAGED",
    "FINGERPRINT",
    "HISTORY_PARQUET",
    "METRIC",
    "PER_CLASS_PARQUET",
    "RESULTS_CSV",
    "RESULTS_PARQUET",
    "SCHEMA_VERSION",
    "SPLITS",
    "class_names",
    "export",
    "hyperparameter_columns",
    "knob_importance",
    "load",
    "load_history",
    "load_per_class",
    "per_class_rows",
    "split_metrics",
    "varying_hyperparameters",
    "write_table",
]
