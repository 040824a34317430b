"""Repeats and comparisons: Student t intervals over seeds, paired t-tests against a baseline with Holm's
correction, a paired bootstrap over images for experiments that ran with one seed, and the F tests
and noncentral-F intervals of a knob's importance.

Plain numpy and scipy on arrays and dicts. Must not import torch,
ray, or the modules that train or load runs, so results, report and notebooks can call it on saved numbers.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass

# What the image bootstrap can recompute from (true class, predicted class) pairs alone.
BOOTSTRAP_METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class Interval:
    """The mean of n values and its two-sided Student t interval.

    std is the sample standard deviation of the values (ddof=1), not the standard error. With n=1,
    std, low and high are nan, not None: one value says nothing about the spread, and nan keeps them
    float columns in a table.
    """

    mean: float
    low: float
    high: float
    std: float
    n: int


@dataclass(frozen=True)
class PairedResult:
    """Candidate minus baseline: the difference, its two-sided interval, a two-sided p-value, n pairs.

    From paired_t_test: mean_diff is the mean over n matched seeds. From paired_bootstrap: mean_diff is
    the metric's difference on all n images (the quantity the bootstrap resamples).
    """

    mean_diff: float
    low: float
    high: float
    p_value: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """One experiment against the baseline over the seeds both ran (candidate minus baseline).

    With fewer than 2 matched seeds there is no test: low, high, p_value and p_holm are None and
    significant is False; mean_diff is the one difference if there is one pair, else None.
    """

    experiment: str
    n_pairs: int
    mean_diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    p_holm: float | None
    significant: bool


# ---------------------------------------------------------------------------------------------------
# Repeats over seeds


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean, sample std and the Student t interval of the mean (scipy.stats.t.interval with
    df = n-1, scale = std/sqrt(n)). n=1 gives nan std and interval; n=0 raises ValueError.
    Identical values give a zero-width interval (scipy's t.interval would give nan for scale 0)."""
    _check_confidence(confidence)
    x = _finite_1d(values, "t_interval: values")
    n = len(x)
    if n == 0:
        raise ValueError("t_interval: no values; pass one value per seed (at least 2 for an interval)")
    mean = float(np.mean(x))
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = float(np.std(x, ddof=1))
    half_width = _t_critical(confidence, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half_width, mean + half_width, std, n)


def t_intervals(
    mean: np.ndarray, std: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """t_interval's (low, high) for many means at once, from each one's mean, sample std (ddof=1)
    and count: one array operation for a whole table, however many groups and metrics. nan where
    n < 2, as t_interval gives for one value; a zero std gives a zero-width interval."""
    _check_confidence(confidence)
    mean, std, n = (np.asarray(x, dtype=np.float64) for x in (mean, std, n))
    from scipy import special  # see _t_critical

    with np.errstate(invalid="ignore", divide="ignore"):
        critical = special.stdtrit(np.where(n > 1, n - 1, np.nan), (1 + confidence) / 2)
        half_width = critical * std / np.sqrt(n)
    return mean - half_width, mean + half_width


def t_half_width(standard_error: float, degrees_of_freedom: int, confidence: float = 0.95) -> float:
    """Half the width of the two-sided Student t interval of an estimate with this standard error."""
    _check_confidence(confidence)
    return _t_critical(confidence, int(degrees_of_freedom)) * standard_error


def paired_t_test(
    baseline: Sequence[float] | np.ndarray, candidate: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> PairedResult:
    """Paired t-test on matched samples (element i of each from the same seed): candidate - baseline.

    p is two-sided and equals scipy.stats.ttest_rel(candidate, baseline).pvalue; the interval is the t
    interval of the mean difference. When every difference is the same, t is 0/0 or ±inf and scipy
    gives nan or warns, so: all differences 0 -> p = 1.0; all equal and non-zero -> p = 0.0; the
    interval is then [d, d]. Needs at least 2 pairs (ValueError otherwise).
    """
    _check_confidence(confidence)
    a = _finite_1d(baseline, "paired_t_test: baseline")
    b = _finite_1d(candidate, "paired_t_test: candidate")
    if len(a) != len(b):
        raise ValueError(
            f"paired_t_test: baseline has {len(a)} values and candidate {len(b)}; pass one value per "
            "matched seed in the same order (compare_to_baseline matches them by seed)"
        )
    n = len(a)
    if n < 2:
        raise ValueError(
            f"paired_t_test: needs at least 2 matched pairs, got {n}; "
            "with one seed per experiment use paired_bootstrap over the images instead"
        )
    diffs = b - a
    if np.all(diffs == diffs[0]):
        d = float(diffs[0])
        return PairedResult(d, d, d, 1.0 if d == 0 else 0.0, n)
    mean_diff = float(np.mean(diffs))
    std_error = float(np.std(diffs, ddof=1)) / math.sqrt(n)
    from scipy import special  # see _t_critical

    # scipy.stats.t.sf(x, df) is special.stdtr(df, -x): the same function, without importing scipy.stats
    p_value = float(2 * special.stdtr(n - 1, -abs(mean_diff / std_error)))
    half_width = _t_critical(confidence, n - 1) * std_error
    return PairedResult(mean_diff, mean_diff - half_width, mean_diff + half_width, min(p_value, 1.0), n)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    Sort ascending, multiply the i-th smallest (0-based) by m - i, take the running maximum so the
    adjusted values keep the raw order, cap at 1. [0.01, 0.04, 0.03] -> [0.03, 0.06, 0.06].
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm: expected a 1-D list of p-values, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):  # also catches nan
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def compare_to_baseline(
    groups: Mapping[str, Mapping[Hashable, float]],
    baseline: str,
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> list[Comparison]:
    """Each experiment against `baseline` over the seeds both ran, Holm-corrected across experiments.

    groups: experiment name -> {seed: metric value}, e.g. {"baseline": {1: 0.61, 2: 0.60}, "lr_high": ...}.
    A nan value (a failed trial) drops that seed from the pairs. Rows come in the order of `groups`,
    the baseline left out. The Holm family is the experiments that got a p-value.
    """
    _check_confidence(confidence)
    _check_alpha(alpha)
    if baseline not in groups:
        close = difflib.get_close_matches(baseline, list(groups), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; experiments: {', '.join(map(repr, groups))}"
        raise ValueError(f"compare_to_baseline: no experiment named {baseline!r}{hint}")
    base = _finite_by_seed(groups[baseline])

    untested: dict[str, Comparison] = {}
    tested: dict[str, PairedResult] = {}
    for name, by_seed in groups.items():
        if name == baseline:
            continue
        values = _finite_by_seed(by_seed)
        seeds = [seed for seed in base if seed in values]
        if len(seeds) < 2:
            # One pair gives a difference but no seed-to-seed spread to judge it against (df = 0), so
            # no p-value and no claim; it also stays out of the Holm family, which counts only tests.
            single = values[seeds[0]] - base[seeds[0]] if seeds else None
            untested[name] = Comparison(name, len(seeds), single, None, None, None, None, False)
            continue
        tested[name] = paired_t_test([base[s] for s in seeds], [values[s] for s in seeds], confidence)

    adjusted = dict(zip(tested, holm([r.p_value for r in tested.values()]).tolist()))
    rows = []
    for name in groups:
        if name in untested:
            rows.append(untested[name])
        elif name in tested:
            r = tested[name]
            rows.append(
                Comparison(name, r.n, r.mean_diff, r.low, r.high, r.p_value, adjusted[name], adjusted[name] <= alpha)
            )
    return rows


# ---------------------------------------------------------------------------------------------------
# F tests of an ANOVA, and the interval of an effect's noncentrality


def f_test_p(f: np.ndarray | float, df_effect, df_error) -> np.ndarray:
    """P(F >= f) when the effect is 0: scipy.stats.f.sf(f, df_effect, df_error), vectorised."""
    from scipy import special  # see _t_critical

    return special.fdtrc(df_effect, df_error, f)


def noncentrality_interval(
    f: np.ndarray | float, df_effect, df_error, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided interval for the noncentrality lambda of an observed F (Steiger 2004, "Beyond the
    F test"): the lambdas at which f sits at the (1 + c)/2 and (1 - c)/2 quantiles of the noncentral
    F(df_effect, df_error, lambda). A bound is 0 where even lambda = 0 puts f below its quantile, so
    the lower bound is above 0 exactly when the F test's p < (1 - c)/2. Vectorised over f.

    scipy's ncfdtrinc stops at lambda = 10,000 (an F of ~1,000 on a few df), which a sweep with little
    noise passes; this bisects ncfdtr (decreasing in lambda) with no such cap."""
    _check_confidence(confidence)
    from scipy import special  # see _t_critical

    f = np.asarray(f, dtype=np.float64)
    bounds = []
    for quantile in ((1 + confidence) / 2, (1 - confidence) / 2):
        low = np.zeros_like(f)
        high = np.maximum(2 * f * df_effect + 10.0, 10.0)
        # the upper end of the bracket: double until f sits below the quantile there
        for _ in range(60):
            short = special.ncfdtr(df_effect, df_error, high, f) > quantile
            if not short.any():
                break
            high = np.where(short, 2 * high, high)
        for _ in range(60):  # 2^-60 of the bracket: far past the precision of a share of variance
            middle = (low + high) / 2
            above = special.ncfdtr(df_effect, df_error, middle, f) > quantile
            low, high = np.where(above, middle, low), np.where(above, high, middle)
        no_solution = special.ncfdtr(df_effect, df_error, 0.0, f) <= quantile
        bounds.append(np.where(no_solution, 0.0, (low + high) / 2))
    return bounds[0], bounds[1]


# ---------------------------------------------------------------------------------------------------
# Metrics from per-image predictions, and the bootstrap over images


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | np.ndarray:
    """Share of y_pred equal to y_true. Integer class indices, shape (N,) -> float, or (B, N) -> (B,)
    (one row per resample, e.g. y[idx] for an index matrix idx)."""
    t, p = _check_label_arrays(y_true, y_pred, num_classes=None)
    scores = np.mean(t == p, axis=-1)
    return float(scores) if t.ndim == 1 else scores


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | np.ndarray:
    """Unweighted mean over ALL num_classes of f1_c = 2 tp_c / (support_c + predicted_c), 0 where that
    denominator is 0: sklearn's f1_score(average="macro", labels=range(num_classes), zero_division=0)
    and metrics.EpochMetrics' convention. Shape (N,) -> float, or (B, N) -> (B,) (one row per resample)."""
    t, p = _check_label_arrays(y_true, y_pred, num_classes)
    rows_t, rows_p = np.atleast_2d(t), np.atleast_2d(p)
    tp, support, predicted = _confusion_totals(rows_t, rows_p, np.ones(rows_t.shape), num_classes)
    scores = _f1_per_class(tp, support, predicted).mean(axis=-1)
    return float(scores[0]) if t.ndim == 1 else scores


def paired_bootstrap(
    y_true: np.ndarray,
    pred_baseline: np.ndarray,
    pred_candidate: np.ndarray,
    metric: str = "macro_f1",
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    num_classes: int | None = None,
) -> PairedResult:
    """Candidate minus baseline on the same images, resampling images together for both (paired).

    mean_diff is the difference on all images; low/high the percentile interval of the resampled
    differences; p is bootstrap_p_value of the resampled differences. Identical predictions give
    diff 0 and p = 1.
    num_classes: pass len(class_names) so that a class neither present nor predicted still counts in
    macro F1 as it does in best_metrics.json; None means 1 + the largest index seen.
    """
    _check_confidence(confidence)
    _check_bootstrap_args(metric, n_resamples)
    t, (a, b), k = _check_image_predictions(y_true, [pred_baseline, pred_candidate], num_classes)
    resampled_a, resampled_b = _resampled_scores(t, [a, b], metric, k, n_resamples, seed)
    diffs = resampled_b - resampled_a
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    observed = _score(metric, t, b, k) - _score(metric, t, a, k)
    return PairedResult(observed, float(low), float(high), bootstrap_p_value(diffs), len(t))


def bootstrap_p_value(resampled: np.ndarray) -> float:
    """Two-sided p for "the resampled quantity is 0": 2 * (1 + k) / (1 + n), capped at 1, where k is
    the number of the n resampled values on the smaller side of 0 (<= 0 or >= 0, so ties count
    against an effect). The percentile interval turned around, with the usual +1 so that p is never
    0 and cannot claim more than n resamples can resolve."""
    values = np.asarray(resampled, dtype=np.float64)
    on_smaller_side = min(int(np.sum(values <= 0)), int(np.sum(values >= 0)))
    return min(1.0, 2 * (1 + on_smaller_side) / (1 + len(values)))


def _resampled_scores(
    y_true: np.ndarray, predictions: list[np.ndarray], metric: str, num_classes: int, n_resamples: int, seed: int
) -> list[np.ndarray]:
    """The metric of each prediction array on n_resamples bootstrap resamples of the images; every
    array is scored on the same resamples, which is what makes the comparison paired."""
    n = len(y_true)
    # A metric sees a resample only through how many copies of each (true, pred, pred...) combination it
    # holds, so draw those counts directly: N draws with replacement from N images, grouped by combination,
    # are Multinomial(N, images per combination / N). Same distribution as resampling image indices, but
    # (B, combinations) instead of (B, N): at most 7^3 = 343 columns for FER's paired test.
    combos, images_per_combo = np.unique(np.stack([y_true, *predictions], axis=1), axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    copies = rng.multinomial(n, images_per_combo / n, size=n_resamples).astype(np.float64)
    true_labels = combos[:, 0]
    scores = []
    for column in range(1, combos.shape[1]):
        tp, support, predicted = _confusion_totals(true_labels, combos[:, column], copies, num_classes)
        if metric == "accuracy":
            scores.append(tp.sum(axis=1) / n)
        else:
            scores.append(_f1_per_class(tp, support, predicted).mean(axis=1))
    return scores


def _confusion_totals(
    y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row, per-class (tp, support, predicted), each (rows, K). weights (rows, items) says how many
    times each item counts in each row; labels are (items,) shared by all rows or (rows, items)."""
    hits = weights * (y_true == y_pred)
    return (
        _per_class_totals(y_true, hits, num_classes),
        _per_class_totals(y_true, weights, num_classes),
        _per_class_totals(y_pred, weights, num_classes),
    )


def _per_class_totals(labels: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    # one bincount for all rows: row r's classes go to bins r*K .. r*K + K-1
    rows = weights.shape[0]
    bins = np.arange(rows)[:, None] * num_classes + labels
    totals = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=rows * num_classes)
    return totals.reshape(rows, num_classes)


def _f1_per_class(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    # training.metrics.EpochMetrics' formula, restated: a reader must not import the training code (torch)
    denominator = support + predicted
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=np.float64), where=denominator > 0)


def _score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    return accuracy(y_true, y_pred) if metric == "accuracy" else macro_f1(y_true, y_pred, num_classes)


# ---------------------------------------------------------------------------------------------------
# Checks at the edge: each names the argument, the bad value and what to pass instead


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (e.g. 0.05), got {alpha}")


def _check_bootstrap_args(metric: str, n_resamples: int) -> None:
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"metric must be one of {', '.join(BOOTSTRAP_METRICS)}, got {metric!r}")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer (2000 is usual), got {n_resamples!r}")


@functools.cache  # a few distinct (confidence, n) pairs, asked for once per group and metric
def _t_critical(confidence: float, degrees_of_freedom: int) -> float:
    # scipy.special, imported here: scipy.stats takes twice as long to import (~1 s, most of a `compare`),
    # and its t.ppf(q, df) is this same special.stdtrit(df, q)
    from scipy import special

    # two-sided: the interval leaves (1 - confidence) / 2 in each tail
    return float(special.stdtrit(degrees_of_freedom, (1 + confidence) / 2))


def _finite_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D list of numbers, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise ValueError(
            f"{what}: {len(bad)} value(s) not finite at positions {bad.tolist()}; drop failed trials first"
        )
    return x


def _finite_by_seed(by_seed: Mapping[Hashable, float]) -> dict[Hashable, float]:
    # a failed trial reports nan (or None); its seed has no value to pair
    return {seed: float(v) for seed, v in by_seed.items() if v is not None and math.isfinite(v)}


def _check_label_arrays(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim not in (1, 2) or t.shape[-1] == 0:
        raise ValueError(
            f"y_true and y_pred must have the same shape, (N,) or (B, N) with N > 0; got {t.shape} and {p.shape}"
        )
    for name, labels in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
        if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
            raise ValueError(
                f"{name}: class indices must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
                if num_classes is not None
                else f"{name}: class indices must be >= 0, got {labels.min()}"
            )
    return t, p


def _check_image_predictions(
    y_true: np.ndarray, predictions: list[np.ndarray], num_classes: int | None
) -> tuple[np.ndarray, list[np.ndarray], int]:
    t = np.asarray(y_true)
    if t.ndim != 1:
        raise ValueError(f"y_true must be one class index per image, shape (N,), got {t.shape}")
    checked = [_check_label_arrays(t, p, None)[1] for p in predictions]
    if num_classes is None:
        num_classes = 1 + int(max(t.max(), *(p.max() for p in checked)))
    elif num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (pass len(class_names)), got {num_classes}")
    for p in (t, *checked):
        if p.max() >= num_classes:
            raise ValueError(
                f"class index {p.max()} is out of range for num_classes={num_classes}; pass len(class_names)"
            )
    return t, checked, num_classes
