"""Stats: t intervals and paired t-tests equal scipy's; a two-point shift over five seeds is found and an
identical config is not; Holm matches a hand-computed example and compare_to_baseline applies it; macro F1
matches hand counts and sklearn; the image bootstrap narrows with more images, is paired, and repeats
for a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from raytrain.results.stats import (
    accuracy,
    compare_to_baseline,
    holm,
    macro_f1,
    paired_bootstrap,
    paired_t_test,
    t_interval,
    t_intervals,
)

# the test_metrics example: class 3 present twice and never predicted, class 4 neither present nor predicted
TARGETS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
PREDS = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
# f1_c = 2 tp / (support + predicted): angry 4/6, happy 2/5, sad 4/7, fearful 0, neutral 0 (still in the mean)
HAND_MACRO_F1 = (4 / 6 + 2 / 5 + 4 / 7 + 0 + 0) / 5


# ---------------------------------------------------------------------------------------------------
# Repeats over seeds


def test_t_interval_matches_hand_numbers_and_scipy():
    # 1..5: mean 3, std sqrt(2.5), t(0.975, df=4) = 2.7764451051977987
    got = t_interval([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)
    assert (got.mean, got.std, got.n) == (pytest.approx(3.0), pytest.approx(math.sqrt(2.5)), 5)
    assert (got.low, got.high) == (pytest.approx(3 - half), pytest.approx(3 + half))

    values = np.array([0.612, 0.604, 0.619, 0.598, 0.611, 0.607])
    for confidence in (0.9, 0.95, 0.99):
        got = t_interval(values, confidence)
        low, high = scipy_stats.t.interval(
            confidence, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values)
        )
        assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_t_interval_with_one_or_no_values():
    one = t_interval([0.61])
    assert one.mean == 0.61 and one.n == 1
    assert math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(ValueError, match="no values"):
        t_interval([])
    with pytest.raises(ValueError, match="not finite"):
        t_interval([0.6, float("nan")])
    same = t_interval([0.6, 0.6, 0.6])
    assert (same.low, same.high, same.std) == (pytest.approx(0.6), pytest.approx(0.6), 0.0)


def test_paired_t_test_matches_scipy_and_is_candidate_minus_baseline():
    baseline = np.array([0.601, 0.611, 0.596, 0.605, 0.608])
    candidate = np.array([0.612, 0.615, 0.609, 0.611, 0.624])
    got = paired_t_test(baseline, candidate)
    reference = scipy_stats.ttest_rel(candidate, baseline)
    diffs = candidate - baseline
    low, high = scipy_stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=scipy_stats.sem(diffs))
    assert got.mean_diff == pytest.approx(diffs.mean()) and got.mean_diff > 0
    assert got.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.n == 5
    # swapping the arguments flips the sign and keeps p
    swapped = paired_t_test(candidate, baseline)
    assert swapped.mean_diff == pytest.approx(-got.mean_diff) and swapped.p_value == pytest.approx(got.p_value)


def test_paired_t_test_without_spread_and_bad_input():
    same = paired_t_test([0.6, 0.61, 0.62], [0.6, 0.61, 0.62])
    assert (same.mean_diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_t_test([0.5, 0.25, 0.75], [0.625, 0.375, 0.875])  # exactly +0.125 each, binary-exact
    assert (shifted.mean_diff, shifted.low, shifted.high, shifted.p_value) == (0.125, 0.125, 0.125, 0.0)
    with pytest.raises(ValueError, match="paired_bootstrap"):
        paired_t_test([0.6], [0.62])
    with pytest.raises(ValueError, match="3 values and candidate 2"):
        paired_t_test([0.6, 0.61, 0.62], [0.6, 0.61])


def _five_seeds(rng, shift):
    # seed-to-seed noise sd 0.005, part shared by both configs (same seed, same split, same init)
    seed_effect = rng.normal(0, 0.004, size=5)
    baseline = 0.60 + seed_effect + rng.normal(0, 0.003, size=5)
    candidate = 0.60 + shift + seed_effect + rng.normal(0, 0.003, size=5)
    return baseline, candidate


def test_two_point_shift_over_five_seeds_is_significant_and_identical_configs_are_not():
    rng = np.random.default_rng(7)
    baseline, shifted = _five_seeds(rng, shift=0.02)
    noise_only = baseline + rng.normal(0, 0.004, size=5)  # a config that changes nothing but the noise
    groups = {
        "baseline": dict(zip(range(1, 6), baseline)),
        "lr_high": dict(zip(range(1, 6), shifted)),
        "same_config": dict(zip(range(1, 6), baseline)),
        "noise_only": dict(zip(range(1, 6), noise_only)),
    }
    rows = {r.experiment: r for r in compare_to_baseline(groups, "baseline")}
    assert list(rows) == ["lr_high", "same_config", "noise_only"]

    found = rows["lr_high"]
    assert found.significant and found.p_holm < 0.01
    assert found.low > 0 and found.mean_diff == pytest.approx(0.02, abs=0.006)

    same = rows["same_config"]
    assert (same.mean_diff, same.p_value, same.p_holm, same.significant) == (0.0, 1.0, 1.0, False)
    assert not rows["noise_only"].significant


# ---------------------------------------------------------------------------------------------------
# Holm


def test_holm_matches_hand_computed_example():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # 0.02*3 = 0.06, 0.4*2 = 0.8, 0.7*1 = 0.7 raised to 0.8 so the order of the raw values is kept
    assert holm([0.4, 0.7, 0.02]) == pytest.approx([0.8, 0.8, 0.06])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped
    assert len(holm([])) == 0
    assert (holm([0.01, 0.04, 0.03]) <= 0.05).tolist() == [True, False, False]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.01, float("nan")])


def _diffs_with_p(p_value, n=5, spread=0.001):
    """n differences whose paired t-test gives exactly this two-sided p-value."""
    pattern = np.arange(n) - (n - 1) / 2
    std_error = spread * np.std(pattern, ddof=1) / math.sqrt(n)
    return scipy_stats.t.isf(p_value / 2, n - 1) * std_error + spread * pattern


def test_compare_to_baseline_applies_holm_across_tested_experiments():
    seeds = [1, 2, 3, 4, 5]
    base = np.array([0.60, 0.61, 0.59, 0.605, 0.595])
    groups = {"baseline": dict(zip(seeds, base))}
    for name, p in (("a", 0.01), ("b", 0.04), ("c", 0.03)):
        groups[name] = dict(zip(seeds, base + _diffs_with_p(p)))
    # one matched seed: no test, and it must not enlarge the Holm family (m = 4 would make a's p_holm 0.04)
    groups["one_seed"] = {3: 0.63, 9: 0.64}

    rows = {r.experiment: r for r in compare_to_baseline(groups, "baseline")}
    assert [rows[n].p_value for n in "abc"] == pytest.approx([0.01, 0.04, 0.03], rel=1e-6)
    assert [rows[n].p_holm for n in "abc"] == pytest.approx([0.03, 0.06, 0.06], rel=1e-6)
    # every raw p is below 0.05; after Holm only a is
    assert [rows[n].significant for n in "abc"] == [True, False, False]

    lone = rows["one_seed"]
    assert (lone.n_pairs, lone.p_value, lone.p_holm, lone.low, lone.significant) == (1, None, None, None, False)
    assert lone.mean_diff == pytest.approx(0.63 - 0.59)


def test_compare_to_baseline_drops_failed_seeds_and_names_unknown_baseline():
    groups = {
        "baseline": {1: 0.60, 2: 0.61, 3: 0.59},
        "lr_high": {1: 0.62, 2: float("nan"), 3: 0.60},  # seed 2 failed
    }
    (row,) = compare_to_baseline(groups, "baseline")
    assert row.n_pairs == 2 and row.mean_diff == pytest.approx(0.015)
    with pytest.raises(ValueError, match="did you mean 'baseline'"):
        compare_to_baseline(groups, "basline")


# ---------------------------------------------------------------------------------------------------
# Metrics on per-image predictions


def test_macro_f1_and_accuracy_match_hand_counts():
    assert macro_f1(TARGETS, PREDS, num_classes=5) == pytest.approx(HAND_MACRO_F1)
    assert accuracy(TARGETS, PREDS) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="integer class indices"):
        macro_f1(TARGETS.astype(float), PREDS, num_classes=5)
    with pytest.raises(ValueError, match=r"\[0, 3\), got 0..3"):
        macro_f1(TARGETS, PREDS, num_classes=3)  # TARGETS holds class 3


def test_macro_f1_matches_sklearn_one_run_and_many_resamples():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    rng = np.random.default_rng(0)
    k = 7
    y_true = rng.integers(0, k - 1, size=300)  # class 6 never present
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, k - 2, size=300))  # 5, 6 rarely/never predicted
    expected = f1_score(y_true, y_pred, average="macro", labels=range(k), zero_division=0)
    assert macro_f1(y_true, y_pred, k) == pytest.approx(expected, abs=1e-12)

    resamples = rng.integers(0, 300, size=(20, 300))  # an index matrix: one bootstrap resample per row
    batched = macro_f1(y_true[resamples], y_pred[resamples], k)
    one_by_one = [f1_score(y_true[i], y_pred[i], average="macro", labels=range(k), zero_division=0) for i in resamples]
    assert batched.shape == (20,) and batched == pytest.approx(one_by_one, abs=1e-12)
    hits = y_true[resamples] == y_pred[resamples]
    assert accuracy(y_true[resamples], y_pred[resamples]) == pytest.approx(hits.mean(axis=1))


def _predictions(n_images, correct_share, k=7):
    """n images spread over k classes; the first correct_share of each class right, the rest one class off."""
    y_true = np.arange(n_images) % k
    right = np.arange(n_images) < round(correct_share * n_images)
    return y_true, np.where(right, y_true, (y_true + 1) % k)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_paired_bootstrap_interval_narrows_as_sqrt_of_images(metric):
    def interval(n):
        y_true, y_pred = _predictions(n, 0.7)
        _, better = _predictions(n, 0.75)
        return paired_bootstrap(y_true, y_pred, better, metric=metric, num_classes=7)

    small, large = interval(100), interval(10_000)
    assert small.mean_diff == pytest.approx(large.mean_diff, abs=0.01)
    assert small.low < small.mean_diff < small.high
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 8 < ratio < 12.5  # sqrt(10_000 / 100) = 10


def test_bootstrap_is_deterministic_for_a_seed():
    y_true, y_pred = _predictions(500, 0.65)
    _, other = _predictions(500, 0.7)
    assert paired_bootstrap(y_true, y_pred, other, seed=3) == paired_bootstrap(y_true, y_pred, other, seed=3)
    first, second = paired_bootstrap(y_true, y_pred, other, seed=3), paired_bootstrap(y_true, y_pred, other, seed=4)
    assert (first.low, first.high) != (second.low, second.high)


def test_paired_bootstrap_finds_a_gain_that_single_run_intervals_cannot():
    rng = np.random.default_rng(1)
    n, k = 1000, 7
    y_true = rng.integers(0, k, size=n)
    baseline = np.where(rng.random(n) < 0.65, y_true, (y_true + 1 + rng.integers(0, k - 1, n)) % k)
    candidate = baseline.copy()
    wrong = np.flatnonzero(baseline != y_true)
    candidate[wrong[:30]] = y_true[wrong[:30]]  # the candidate fixes 30 of the baseline's errors: +3 points

    paired = paired_bootstrap(y_true, baseline, candidate, metric="accuracy", n_resamples=2000)
    assert paired.mean_diff == pytest.approx(0.03) and paired.n == n
    assert 0 < paired.low < paired.high
    assert paired.p_value == pytest.approx(2 / 2001)  # no resample reaches 0: the smallest p 2000 resamples give
    # unpaired, the two runs' own intervals overlap: the gain is smaller than either run's image noise
    # (each run's own 95% interval, binomial: accuracy +- 1.96 sqrt(p (1 - p) / n))
    half_width = [
        1.96 * math.sqrt(p * (1 - p) / n) for p in ((baseline == y_true).mean(), (candidate == y_true).mean())
    ]
    assert (baseline == y_true).mean() + half_width[0] > (candidate == y_true).mean() - half_width[1]

    reverse = paired_bootstrap(y_true, candidate, baseline, metric="accuracy", n_resamples=2000)
    assert reverse.mean_diff == pytest.approx(-0.03) and reverse.high < 0

    same = paired_bootstrap(y_true, baseline, baseline.copy())
    assert (same.mean_diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_agrees_with_resampling_image_indices():
    # the bootstrap draws per-combination counts instead of indices; the resampled differences must have
    # the distribution that resampling the same image indices for both runs gives
    rng = np.random.default_rng(2)
    n, k, b = 400, 7, 4000
    y_true = rng.integers(0, k, size=n)
    pred_a = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    pred_b = np.where(rng.random(n) < 0.15, y_true, pred_a)
    got = paired_bootstrap(y_true, pred_a, pred_b, n_resamples=b, num_classes=k)

    idx = rng.integers(0, n, size=(b, n))
    diffs = macro_f1(y_true[idx], pred_b[idx], k) - macro_f1(y_true[idx], pred_a[idx], k)
    low, high = np.quantile(diffs, [0.025, 0.975])
    width = high - low
    assert got.low == pytest.approx(low, abs=0.1 * width)
    assert got.high == pytest.approx(high, abs=0.1 * width)


def test_bootstrap_rejects_unknown_metric_and_bad_labels():
    y_true, y_pred = _predictions(50, 0.7)
    with pytest.raises(ValueError, match="accuracy, macro_f1"):
        paired_bootstrap(y_true, y_pred, y_pred, metric="f1")
    with pytest.raises(ValueError, match="num_classes=5"):
        paired_bootstrap(y_true, y_pred, y_pred, num_classes=5)
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(y_true, y_pred, y_pred[:-1])


def test_t_intervals_are_t_interval_for_a_whole_table_at_once():
    groups = [[0.61, 0.64, 0.58], [0.5, 0.5, 0.5], [0.7], [0.2, 0.9, 0.4, 0.55, 0.61]]
    mean = [np.mean(g) for g in groups]
    std = [np.std(g, ddof=1) if len(g) > 1 else math.nan for g in groups]
    low, high = t_intervals(np.array(mean), np.array(std), np.array([len(g) for g in groups]), 0.9)
    for values, a, b in zip(groups, low, high):
        one = t_interval(values, 0.9)
        if len(values) == 1:
            assert math.isnan(a) and math.isnan(b), "one value: no interval, as t_interval says"
        else:
            assert (a, b) == pytest.approx((one.low, one.high), abs=1e-15)
    assert low[1] == high[1] == 0.5, "identical values: a zero-width interval"
    with pytest.raises(ValueError, match="confidence"):
        t_intervals(np.array(mean), np.array(std), np.array([3, 3, 1, 5]), 95)
