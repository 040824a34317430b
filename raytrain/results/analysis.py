"""Repeats and baseline comparisons on the results DataFrame: seeds grouped into one experiment with
intervals, and each experiment against a baseline with a paired, Holm-corrected test.

The arithmetic lives in stats.py; this module picks the rows, pairs the seeds or the images, and
returns DataFrames. Reads runs/ files only (per-image predictions); no torch, no ray.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from raytrain import artifacts
from raytrain.naming import COMPLETED, SEED_KNOB
from raytrain.provenance import DATA_FINGERPRINT, SHORT_FINGERPRINT
from raytrain.results import stats
from raytrain.results.load import class_names, varying_hyperparameters

CONFIDENCE, ALPHA = 0.95, 0.05
LOG_SPAN = 10.0  # a positive knob whose max/min exceeds this is read on a log scale: plots' axes, fANOVA's input


def use_log_axis(values) -> bool:
    """True when numbers are all positive and the largest exceeds LOG_SPAN times the smallest
    (learning rates 1e-4..3e-3, weight decay 1e-5..1e-1): a linear axis would crowd the small ones."""
    values = np.asarray(pd.Series(values).dropna(), dtype=float)
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > LOG_SPAN)


DATA_COLUMN = "data"  # the short data fingerprint that compare and the report show when rows differ in data


def short_fingerprints(frame: pd.DataFrame) -> pd.Series:
    """Per row, the data it was trained on as the first hex digits of its data fingerprint (as git
    shortens a commit); None for runs from before raytrain recorded provenance."""
    if DATA_FINGERPRINT not in frame:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame[DATA_FINGERPRINT].map(lambda f: f[:SHORT_FINGERPRINT] if isinstance(f, str) else None)


def mixed_data(frame: pd.DataFrame) -> str | None:
    """What to warn of when the rows were trained on two or more different datasets (by their data
    fingerprints), each named with its number of rows; None when one dataset (or none known)."""
    short = short_fingerprints(frame)
    counts = short.value_counts()
    if len(counts) < 2:
        return None
    said = "; ".join(f"data {fingerprint}: {n} run{'s' if n != 1 else ''}" for fingerprint, n in counts.items())
    unknown = int(short.isna().sum())
    if unknown:
        said += f"; {unknown} from before raytrain recorded it"
    return (
        f"these runs were trained on {len(counts)} different datasets ({said}): a comparison across different data "
        "is not a comparison"
    )


def has_repeats(frame: pd.DataFrame) -> bool:
    """Whether some experiment ran with more than one seed (a frame without groups has none)."""
    return "group" in frame and bool((frame.groupby("group").size() > 1).any())


def distinguishing_knobs(frame: pd.DataFrame) -> list[str]:
    """The knobs whose values differ between the frame's experiments. With repeats the seed varies
    inside each group and tells no two groups apart, so it is left out."""
    knobs = varying_hyperparameters(frame)
    return [k for k in knobs if k != SEED_KNOB] if has_repeats(frame) else knobs


def summarize_repeats(frame: pd.DataFrame, split: str = "val", metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per group: n, then mean, std and the 95% t-interval of each of `metrics` (names
    within the split, `precision/happy`; default accuracy, macro F1 and each class's F1) over the
    group's seeds. Unfinished or failed members are left out; a missing value leaves out only itself."""
    if metrics is None:
        metrics = ["accuracy", "macro_f1", *(f"f1/{c}" for c in class_names(frame, split))]
    done = frame[frame["status"] == COMPLETED]
    # whole columns per statistic: a Python loop over groups and metrics took seconds at 1,000 groups
    values = pd.DataFrame(done[[f"{split}/{metric}" for metric in metrics]].to_numpy(float), columns=metrics)
    grouped = values.groupby(done["group"].to_numpy(), sort=False)
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    low, high = stats.t_intervals(mean, std, count, CONFIDENCE)
    columns = {"group": mean.index.to_numpy(), "n": grouped.size().to_numpy()}
    for position, metric in enumerate(metrics):
        columns |= {
            f"{metric}/mean": mean[metric].to_numpy(),
            f"{metric}/std": std[metric].to_numpy(),
            f"{metric}/low": low[:, position],
            f"{metric}/high": high[:, position],
        }
    return pd.DataFrame(columns)


def compare_with_baseline(frame: pd.DataFrame, runs_dir: Path, baseline: str, split: str = "val") -> pd.DataFrame:
    """Each group's macro F1 minus the baseline group's: mean difference, 95% interval, p-value and
    Holm-adjusted p, and whether it is significant at 5%.

    With repeats, a paired t-test over the seeds both ran (same seed, same images). With one run
    each, a paired bootstrap over the split's images from the saved per-image predictions.
    """
    done = frame[frame["status"] == COMPLETED]
    groups = {
        group: dict(zip(members[SEED_KNOB], members[f"{split}/macro_f1"]))
        for group, members in done.groupby("group", sort=False)
    }
    if baseline not in groups:
        raise KeyError(baseline)
    if len(groups[baseline]) > 1:
        rows = [
            {
                "group": c.experiment,
                "n_pairs": c.n_pairs,
                "diff": c.mean_diff,
                "low": c.low,
                "high": c.high,
                "p_value": c.p_value,
                "p_holm": c.p_holm,
                "significant": c.significant,
                "method": "paired t over seeds",
            }
            for c in stats.compare_to_baseline(groups, baseline, CONFIDENCE, ALPHA)
        ]
        return pd.DataFrame(rows)
    return _bootstrap_against(done, runs_dir, baseline, split)


def _bootstrap_against(done: pd.DataFrame, runs_dir: Path, baseline: str, split: str) -> pd.DataFrame:
    """One run per experiment: resample the split's images, the same ones for both runs (paired)."""
    name = artifacts.TEST_PREDICTIONS if split == "test" else artifacts.VAL_PREDICTIONS
    columns = ["group", "n_pairs", "diff", "low", "high", "p_value", "p_holm", "significant", "method"]
    reference_path = artifacts.experiment_dir(runs_dir, _only_member(done, baseline)) / name
    if not reference_path.is_file():
        return pd.DataFrame(columns=columns)  # trained before per-image predictions were saved
    reference = artifacts.read_predictions(reference_path)
    num_classes = len(class_names(done, split))
    tested = []
    for group in done["group"].unique():
        if group == baseline:
            continue
        path = artifacts.experiment_dir(runs_dir, _only_member(done, group)) / name
        if not path.is_file():
            continue  # trained before per-image predictions were saved: nothing to pair
        candidate = artifacts.read_predictions(path)
        if not np.array_equal(candidate["label"], reference["label"]):
            continue  # scored on other images (another dataset or split): not a paired comparison
        r = stats.paired_bootstrap(
            reference["label"], reference["predicted"], candidate["predicted"], "macro_f1", num_classes=num_classes
        )
        tested.append(
            {"group": group, "n_pairs": r.n, "diff": r.mean_diff, "low": r.low, "high": r.high, "p_value": r.p_value}
        )
    adjusted = stats.holm([row["p_value"] for row in tested]) if tested else []
    for row, p in zip(tested, adjusted):
        row |= {"p_holm": float(p), "significant": bool(p <= ALPHA), "method": "paired bootstrap over images"}
    return pd.DataFrame(tested, columns=columns)


def _only_member(done: pd.DataFrame, group: str) -> str:
    return str(done.loc[done["group"] == group, "experiment"].iloc[0])


def format_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
