"""What mattered: how much of a metric's spread across a sweep each knob explains, with a 95% interval,
a Holm-corrected p-value and a one-line summary of its effect (`raytrain importance`, the report's
"What mattered" section, `results.knob_importance` in a notebook).

The data choose the method. Knobs set on a grid (each value shared by several runs; seeds are
replicates): an ANOVA of the per-run metric, importance as omega squared (eta squared less what noise
alone gives it) with a noncentral-F interval. Knobs searched over a range (a value per trial): fANOVA
(main effects as optuna's evaluator computes them), importance as the share a knob explains beyond what
it gets when its values are shuffled, a permutation test and a bootstrap over the trials. Too few runs:
the reason, and no table. The arithmetic of tests and intervals is in stats.py. Pandas, numpy and
scipy; scikit-learn's forests for fANOVA, imported there. No torch, ray or pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from raytrain.errors import UserError
from raytrain.naming import COMPLETED, METRIC, SEED_KNOB, SPLITS, lower_is_better
from raytrain.results import stats
from raytrain.results.analysis import ALPHA, CONFIDENCE, format_p, use_log_axis
from raytrain.results.load import load, varying_hyperparameters
from raytrain.results.tables import short_value

ANOVA, FANOVA = "ANOVA", "fANOVA"
MIN_RUNS = 3  # fewer runs than this say nothing about what varies with what
# An F test's noise estimate from 1 degree of freedom is close to a guess (its 95% critical F is 161 on
# one knob of 2 levels): a 2 x 2 grid without seeds has 1, and is told to add seeds.
MIN_RESIDUAL_DF = 2
# fANOVA below this many trials is a table of noise: a learning rate explaining ~80% of the variance
# (tests/test_importance.py's planted search) came out distinguishable in 0 of 16 searches of 10-20
# trials, 1 of 4 at 25, 4 of 4 at 30 and 6 of 6 at 40: on few trials the bootstrap's forests are too
# unsettled for its interval to clear 0.
MIN_TRIALS = 30
RESAMPLES = 200  # bootstrap resamples of the settings: 5 in each 2.5% tail of a 95% interval
PERMUTATIONS_PER_KNOB = 20  # shuffles of each knob for fANOVA's test: see permutations_for
POINT_FITS = 8  # forests on every run averaged into the point estimate
# Trees per fANOVA forest (optuna's default is 64): the test and the interval each take a hundred forests
# or more, and a fit of 8 trees takes ~11 ms on 30 trials, so an answer takes seconds, not minutes.
TREES = 8
# fANOVA's forests, fully grown, have a leaf per trial, and its main effects cost leaves x cuts a tree:
# past this many settings it fits a random sample of them (an answer took 5-7 s from 30 to 1,000 trials
# on a shared 2-core machine)
FANOVA_SETTINGS = 500
MANY_LEVELS = 6  # a numeric knob with more values than this is summarised as a range, not level by level
RANGE_BINS = 4  # a range knob's values are cut into this many equal-count bins for its summary
TOGETHER = " + "  # joins the names of knobs that always changed together: their effects are one

TABLE_COLUMNS = [
    "knob",
    "importance",
    "low",
    "high",
    "p_value",
    "p_holm",
    "matters",
    "effect",
    "summary",
    "best",
    "best_mean",
    "best_low",
    "best_high",
    "worst",
    "worst_mean",
    "worst_low",
    "worst_high",
    "raw_share",
    "levels",
    "method",
    "metric",
]


@dataclass
class Knob:
    """A knob as its runs set it: each run's value as text (its level), and as a number when every
    value is one. Knobs that always changed together are one Knob, their names joined by TOGETHER."""

    name: str
    labels: np.ndarray  # each run's level, as text
    numbers: np.ndarray | None  # each run's value as a float; None for a categorical knob
    codes: np.ndarray = field(init=False)  # each run's level as 0..L-1, in order of first appearance
    levels: list[str] = field(init=False)

    def __post_init__(self) -> None:
        codes, levels = pd.factorize(pd.Series(self.labels), sort=False)
        self.codes, self.levels = codes.astype(np.int64), [str(level) for level in levels]

    @property
    def log_scaled(self) -> bool:
        """Read on a log scale: positive values spanning decades (analysis.use_log_axis) that look
        drawn log-uniformly rather than uniformly: a grid of 1e-4, 1e-3, 1e-2, or a loguniform search;
        not a weight decay drawn uniformly from [0, 0.1], whose smallest draw may be 0.002."""
        return self.numbers is not None and use_log_axis(self.numbers) and _more_likely_log_uniform(self.numbers)

    @property
    def as_range(self) -> bool:
        """Summarised as a direction and a best range (a searched number), not by level (a grid)."""
        return self.numbers is not None and len(self.levels) > MANY_LEVELS

    def subset(self, rows: np.ndarray) -> Knob:
        """The knob as the runs `rows` set it."""
        return Knob(self.name, self.labels[rows], None if self.numbers is None else self.numbers[rows])

    def searched(self, n_settings: int) -> bool:
        """A number searched over a range: a new value in most settings. A grid's or a config's knob has
        a few values, each shared by several settings, and fANOVA's shuffles, which assume knobs drawn
        independently, are no test of configs that each change one knob."""
        return self.as_range and len(self.levels) >= n_settings / 2


@dataclass
class Importance:
    """What `analyze` found. `table` has one row per knob, most important first (TABLE_COLUMNS); with
    too few runs it is empty, `method` is None and `reason` says why."""

    metric: str
    method: str | None
    table: pd.DataFrame
    runs: pd.DataFrame  # the runs used: finished, with a value of the metric
    knobs: list[Knob]
    design: str  # "a 3 x 2 grid, 2 runs (seeds) per setting", "24 trials at 24 settings"
    left_out: dict[str, int]  # why other runs were not used -> how many
    levels: dict[str, list[tuple]] = field(default_factory=dict)  # knob -> level_means: (label, mean, low, high)
    interaction: dict | None = None  # the strongest two-way interaction of a grid, when one can be tested
    interaction_note: str | None = None  # why there is none, when a grid has two knobs or more
    reason: str | None = None

    @property
    def too_few(self) -> bool:
        return self.method is None

    @property
    def importance_meaning(self) -> str:
        """What the importance column measures, for a table's note or a page's caption."""
        if self.method == ANOVA:
            return (
                f"the share of {self.metric}'s variance across the runs the knob explains beyond what noise alone "
                "would give it (omega squared: eta squared less the noise's expected share)"
            )
        return (
            f"the share of {self.metric}'s variance a forest of the runs puts on the knob alone (fANOVA), less "
            "the share it puts there with the knob's values shuffled between the runs"
        )

    def notes(self, number) -> list[str]:
        """The lines a table of this needs beneath it, for the terminal and the report alike (lower case,
        no full stop): what importance measures, what `ns` means, and the strongest interaction or why
        there is none. `number` formats a share as the table does."""
        notes = [
            f"importance: {self.importance_meaning}",
            "ns: not distinguishable from noise (Holm-corrected p > 0.05, or a 95% interval that reaches 0)",
        ]
        if self.interaction is not None:
            pair = self.interaction
            notes.append(
                f"strongest interaction: {' x '.join(pair['knobs'])}, {number(pair['importance'])} "
                f"[{number(pair['low'])}, {number(pair['high'])}], p (Holm over pairs) {format_p(pair['p_holm'])}"
                + ("" if pair["matters"] else " ns")
            )
        elif self.interaction_note:
            notes.append(f"interactions: {self.interaction_note}")
        return notes

    @property
    def assumes(self) -> str:
        """What the method assumes, in a line."""
        if self.method == ANOVA:
            seeds = (
                "seeds are replicates"
                if len(self.runs) > len(np.unique(settings_of(self.knobs, len(self.runs))))
                else "without seeds, interactions count as noise"
            )
            return (
                f"ANOVA of each run's score on the knobs' levels (main effects, Type II sums of squares; {seeds}); "
                "assumes noise of about the same spread at every setting, independent between runs, and not far "
                "from normal; p from the F test, interval from the noncentral F"
            )
        return (
            f"fANOVA (main effects as optuna's evaluator computes them, {TREES}-tree random forests); p from "
            f"shuffling each knob ({permutations_for(len(self.knobs))} times), interval from {RESAMPLES} bootstrap "
            "resamples of the settings; assumes the knobs were drawn independently of each other (a grid or a random "
            "search; an adaptive search's proposals are not, so its p-values are a guide)"
        )


# --- choosing the runs and the metric ------------------------------------------------------------------


def metric_column(split: str | None = None, metric: str | None = None) -> str:
    """--split and --metric as a results column: `val/macro_f1` by default; `accuracy` on `--split
    test` is `test/accuracy`; a metric that names its split must agree with --split."""
    named = next((s for s in SPLITS if metric and metric.startswith(f"{s}/")), None)
    if named and split and named != split:
        raise UserError(f"--metric {metric} is a {named} metric but --split is {split}; give one of them")
    if named:
        return metric
    return f"{split or 'val'}/{metric or 'macro_f1'}"


def select_runs(frame: pd.DataFrame, *, filter_prefix: str | None = None, column: str = METRIC) -> pd.DataFrame:
    """The experiments asked for (name prefix), checked to have `column`. Bad choices are UserErrors
    naming the option and the fix."""
    if filter_prefix:
        frame = frame[frame["experiment"].astype(str).str.startswith(filter_prefix)]
        if frame.empty:
            raise UserError(f"--filter {filter_prefix}: no experiment name starts with {filter_prefix!r}")
    if column not in frame.columns or pd.to_numeric(frame[column], errors="coerce").isna().all():
        split = column.split("/")[0]
        known = sorted(c.split("/", 1)[1] for c in frame.columns if c.startswith(f"{split}/"))
        if not known:
            raise UserError(
                f"--split {split}: no experiment has {split} metrics (does the data have a {split}/ split?)"
            )
        raise UserError(f"--metric {column}: no experiment has it; use one of: {', '.join(known)}")
    return frame


def knob_importance(
    runs: str | Path | pd.DataFrame = "runs",
    *,
    filter_prefix: str | None = None,
    split: str | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """The notebook's `raytrain importance`: one row per knob that varies, most important first
    (columns TABLE_COLUMNS). `runs`: a runs folder, or results.load's frame (already narrowed, say to
    one sweep). The frame's attrs hold the method, the design, the strongest interaction and, when it
    is empty, the reason: `table.attrs["reason"]`."""
    frame = runs if isinstance(runs, pd.DataFrame) else load(runs)
    column = metric_column(split, metric)
    found = analyze(select_runs(frame, filter_prefix=filter_prefix, column=column), column)
    table = found.table.copy()
    table.attrs = {
        "method": found.method,
        "metric": found.metric,
        "design": found.design,
        "runs": len(found.runs),
        "left_out": found.left_out,
        "interaction": found.interaction,
        "interaction_note": found.interaction_note,
        "reason": found.reason,
    }
    return table


# --- the analysis ------------------------------------------------------------------------------------------


def analyze(frame: pd.DataFrame, metric: str = METRIC, *, seed: int = 0) -> Importance:
    """How much each knob that varies between `frame`'s finished runs matters to `metric`, by the
    method the design allows (see the module's docstring). `seed` fixes fANOVA's forests, shuffles and
    resamples: the same runs give the same answer."""
    usable = frame["status"].eq(COMPLETED) & pd.to_numeric(frame[metric], errors="coerce").notna()
    left_out = _left_out(frame[~usable], metric)
    runs = frame[usable].reset_index(drop=True)
    y = runs[metric].to_numpy(dtype=float) if len(runs) else np.zeros(0)
    knobs = _knobs(runs)
    points = settings_of(knobs, len(runs))
    design = _design_text(knobs, points, len(runs))

    def nothing(reason: str) -> Importance:
        return Importance(metric, None, _empty_table(), runs, knobs, design, left_out, reason=reason)

    if len(runs) < MIN_RUNS:
        return nothing(f"{len(runs)} finished run(s) with {metric}; an answer needs at least {MIN_RUNS}")
    if not knobs:
        seeds = SEED_KNOB in varying_hyperparameters(runs)
        return nothing(
            f"no knob varies between the {len(runs)} runs{' besides the seed' if seeds else ''}: there is nothing to "
            "rank (sweep a grid or a search space to ask what matters)"
        )
    if np.ptp(y) == 0:
        return nothing(f"every run scored the same {metric} ({y[0]:g}): no knob made a difference to measure")
    n_points = int(points.max()) + 1
    searched = any(knob.searched(n_points) for knob in knobs)
    df_error = len(runs) - 1 - sum(len(k.levels) - 1 for k in knobs)  # were no two knobs confounded
    # the model's matrices are runs x levels: built only where it could leave noise to test against
    grid = _GridModel([k.codes for k in knobs], [len(k.levels) for k in knobs]) if df_error >= MIN_RESIDUAL_DF else None
    if grid is not None and grid.identifiable:
        rows = _anova_rows(grid, knobs, y)
        interaction, note = _strongest_interaction(grid, knobs, y, n_points)
        method = ANOVA
    elif searched and n_points >= MIN_TRIALS:
        sample = _fanova_sample(points, seed)
        if len(sample) < len(runs):
            design += f"; fANOVA on a random {FANOVA_SETTINGS} of the settings (its forests grow with the trials)"
        subset = [knob.subset(sample) for knob in knobs]
        rows = _fanova_rows(subset, y[sample], settings_of(subset, len(sample)), seed)
        interaction, note, method = None, None, FANOVA
    elif searched:
        return nothing(f"{n_points} trials of a search; fANOVA needs at least {MIN_TRIALS}: run more of the search")
    elif grid is None:
        return nothing(
            f"{len(runs)} runs of {n_points} settings leave {max(df_error, 0)} degree(s) of freedom to measure "
            f"the noise between runs with; an ANOVA needs {MIN_RESIDUAL_DF}: run each setting with several seeds "
            f"(other.seed: [1, 2, 3]), or add settings"
        )
    else:
        return nothing(
            f"the knobs vary together in the {n_points} settings, so no method can tell their effects apart, and "
            "none was searched over a range: sweep a grid of them, or a search"
        )
    levels = {}
    for k, (row, knob) in enumerate(zip(rows, knobs)):
        levels[knob.name] = level_means(knob, y, grid, k) if method == ANOVA else level_means(knob, y)
        row |= _effect(knob, levels[knob.name], lower_is_better(metric))
    table = pd.DataFrame(rows)
    table["p_holm"] = stats.holm(table["p_value"].to_numpy())
    table["matters"] = (table["p_holm"] <= ALPHA) & (table["low"] > 0)
    table["method"], table["metric"] = method, metric
    table["effect"] = [_effect_line(row) for _, row in table.iterrows()]
    table = table.sort_values(["importance", "raw_share"], ascending=False, kind="stable").reset_index(drop=True)
    return Importance(metric, method, table[TABLE_COLUMNS], runs, knobs, design, left_out, levels, interaction, note)


def _left_out(rows: pd.DataFrame, metric: str) -> dict[str, int]:
    """Why each run not used was left out: its status (pruned, failed, unfinished, damaged), or `no <metric>`."""
    reasons = rows["status"].astype(str).where(~rows["status"].eq(COMPLETED), f"no {metric}")
    return {str(reason): int(count) for reason, count in sorted(reasons.value_counts().items())}


def _knobs(runs: pd.DataFrame) -> list[Knob]:
    """The knobs that vary between the runs, the seed left out (seeds are replicates, not a knob).
    Knobs that always changed together (aug_heavy sets five augmentation fields at once) are merged:
    no method can tell their effects apart."""
    if len(runs) < 2:
        return []
    knobs: list[Knob] = []
    for name in varying_hyperparameters(runs):
        if name == SEED_KNOB:
            continue
        values = runs[name]
        numbers = _numbers(values)
        labels = np.array(["-" if _missing(v) else short_value(v) for v in values], dtype=object)
        knob = Knob(name, labels, numbers)
        if len(knob.levels) < 2:
            continue
        # a searched number takes a new value in every trial, as every other searched number does: that
        # is not changing together, and fANOVA tells such knobs apart by how the metric varies along each
        twin = (
            next((k for k in knobs if not k.as_range and np.array_equal(k.codes, knob.codes)), None)
            if not knob.as_range
            else None
        )
        if twin is None:
            knobs.append(knob)
        else:
            merged = Knob(f"{twin.name}{TOGETHER}{name}", twin.labels + " / " + labels, None)
            knobs[knobs.index(twin)] = merged
    return knobs


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _numbers(values: pd.Series) -> np.ndarray | None:
    """The values as floats when every one is a number (a bool is a category), else None."""
    if any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)) or _missing(v) for v in values
    ):
        return None
    return values.to_numpy(dtype=float)


def _more_likely_log_uniform(values: np.ndarray) -> bool:
    """Whether the values are likelier drawn log-uniformly than uniformly over their range: the two
    log-likelihoods, -sum(ln x) - n ln(ln(max/min)) against -n ln(max - min)."""
    x = np.unique(values)
    log_uniform = -np.sum(np.log(x)) - len(x) * np.log(np.log(x[-1] / x[0]))
    return bool(log_uniform > -len(x) * np.log(x[-1] - x[0]))


def settings_of(knobs: list[Knob], n: int) -> np.ndarray:
    """Each run's setting (the knobs' levels together) as 0..P-1: a setting's runs are its seeds."""
    if not knobs:
        return np.zeros(n, dtype=np.int64)
    _, inverse = np.unique(np.stack([k.codes for k in knobs], axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _design_text(knobs: list[Knob], points: np.ndarray, n: int) -> str:
    if not knobs or n == 0:
        return f"{n} run(s)"
    settings = int(points.max()) + 1
    per_setting = np.bincount(points)
    repeats = (
        f", {per_setting[0]} runs (seeds) per setting"
        if per_setting.min() == per_setting.max() > 1
        else f", {per_setting.min()}-{per_setting.max()} runs (seeds) per setting"
        if per_setting.max() > 1
        else ""
    )
    full = np.prod([len(k.levels) for k in knobs])
    if settings == full and len(knobs) > 1:
        return f"a {' x '.join(str(len(k.levels)) for k in knobs)} grid{repeats}"
    if settings == full:
        return f"{settings} values of one knob{repeats}"
    return f"{n} runs at {settings} settings{repeats}"


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=TABLE_COLUMNS)


# --- grids: ANOVA ----------------------------------------------------------------------------------------


class _GridModel:
    """The linear model of an ANOVA on the knobs' levels (reference coding, main effects), as
    orthonormal bases of its column spaces, so that the residual sum of squares of any number of
    metric vectors at once is two matrix products (the calibration test runs thousands).

    Type II sums of squares: a knob's is what the model loses without it. On a full grid with the same
    number of runs per setting they are the classical ANOVA's; on other designs (a grid with a failed
    setting, configs that each change one knob, repeated over seeds) they still test each knob given
    the others."""

    def __init__(self, codes: list[np.ndarray], n_levels: list[int]) -> None:
        self.n = len(codes[0])
        self.indicators = [_indicators(c, levels) for c, levels in zip(codes, n_levels)]
        self.blocks = [columns - columns.mean(axis=0) for columns in self.indicators]  # the metric is centred too
        self.full = _basis(_columns(self.blocks, self.n))
        self.rank = self.full.shape[1]
        self.identifiable = self.rank == sum(levels - 1 for levels in n_levels)  # no two knobs confounded
        self.df_error = self.n - 1 - self.rank
        self.without = [_basis(_columns(self.blocks[:k] + self.blocks[k + 1 :], self.n)) for k in range(len(codes))]
        self.df = [self.rank - basis.shape[1] for basis in self.without]

    def marginal_means(self, y: np.ndarray, k: int) -> list[tuple[float, float, float]]:
        """(mean, low, high) at each level of knob k: the fitted main-effects model averaged over the
        other knobs' levels, each level alike, with its 95% t interval on the model's error df."""
        design = np.hstack([np.ones((self.n, 1)), *self.indicators])
        coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
        noise = float(np.sum((y - design @ coefficients) ** 2)) / self.df_error
        inverse = np.linalg.pinv(design.T @ design)
        starts = np.cumsum([1] + [block.shape[1] for block in self.indicators])
        average = np.zeros(design.shape[1])
        average[0] = 1.0
        for j, block in enumerate(self.indicators):
            if j != k:
                average[starts[j] : starts[j] + block.shape[1]] = 1.0 / (block.shape[1] + 1)
        out = []
        for level in range(self.indicators[k].shape[1] + 1):
            contrast = average.copy()
            if level > 0:
                contrast[starts[k] + level - 1] = 1.0
            mean = float(contrast @ coefficients)
            half = stats.t_half_width(float(np.sqrt(max(contrast @ inverse @ contrast, 0.0) * noise)), self.df_error)
            out.append((mean, mean - half, mean + half))
        return out

    def sums_of_squares(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """y: (S, n) metric vectors -> each knob's sum of squares (S, knobs), the error's (S,) and the total (S,)."""
        centred = y - y.mean(axis=1, keepdims=True)
        total = (centred**2).sum(axis=1)
        error = _residual(centred, self.full)
        knobs = np.stack([_residual(centred, basis) - error for basis in self.without], axis=1)
        return np.maximum(knobs, 0.0), np.maximum(error, 0.0), total


def _columns(blocks: list[np.ndarray], n: int) -> np.ndarray:
    return np.hstack(blocks) if blocks else np.zeros((n, 0))


def _indicators(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Reference coding: a 0/1 column per level but the first."""
    columns = np.zeros((len(codes), n_levels - 1))
    rows = np.flatnonzero(codes > 0)
    columns[rows, codes[rows] - 1] = 1.0
    return columns


def _basis(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns' span (its width is the rank)."""
    if columns.shape[1] == 0:
        return columns
    u, s, _ = np.linalg.svd(columns, full_matrices=False)
    return u[:, s > 1e-9 * max(1.0, s[0])]


def _residual(centred: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return (centred**2).sum(axis=1) - ((centred @ basis) ** 2).sum(axis=1)


def anova_importance(grid: _GridModel, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each knob's importance for each of S metric vectors y (S, n): omega squared (its share of the
    variance beyond what noise alone gives it), the 95% interval of that share, eta squared (the plain
    share, `raw_share`) and the F test's p; each (S, knobs).

    Omega squared is (SS_knob - df_knob * MSE) / (SS_total + MSE) (Hays), 0 when negative. Its interval
    maps the knob's noncentrality interval (stats.noncentrality_interval) onto the same scale, with the
    knob's expected SS at noncentrality lambda, MSE * (df + lambda), in place of the observed one: so
    the point estimate is the formula at the observed F, and the lower end is 0 exactly when p >= 0.025."""
    ss, error, total = grid.sums_of_squares(np.atleast_2d(y))
    df = np.asarray(grid.df, dtype=float)
    mse = (error / grid.df_error)[:, None]
    # no noise at all between runs (a synthetic metric): every share is exact, and no knob is noise
    exact = mse <= 1e-12 * np.maximum(total[:, None], 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(exact, np.inf, (ss / df) / mse)
        p = np.where(exact, np.where(ss > 0, 0.0, 1.0), stats.f_test_p(f, df, grid.df_error))
        low_lambda, high_lambda = stats.noncentrality_interval(np.where(exact, 0.0, f), df, grid.df_error, CONFIDENCE)
        rest = total[:, None] - ss + mse

        def share(noncentrality):
            return noncentrality * mse / (rest + mse * (df + noncentrality))

        eta = np.where(total[:, None] > 0, ss / total[:, None], 0.0)
        omega = np.where(exact, eta, np.maximum((ss - df * mse) / (total[:, None] + mse), 0.0))
        low = np.where(exact, eta, share(low_lambda))
        high = np.where(exact, eta, share(high_lambda))
    return {"importance": omega, "low": low, "high": high, "raw_share": eta, "p_value": p}


def _anova_rows(grid: _GridModel, knobs: list[Knob], y: np.ndarray) -> list[dict]:
    found = anova_importance(grid, y)
    return [
        {"knob": knob.name, **{key: float(values[0, k]) for key, values in found.items()}}
        for k, knob in enumerate(knobs)
    ]


def _strongest_interaction(
    grid: _GridModel, knobs: list[Knob], y: np.ndarray, n_points: int
) -> tuple[dict | None, str | None]:
    """On a full grid of two knobs or more: the pair whose interaction (the effect of one depending on
    the other's level) explains the most beyond noise, tested given the main effects, its p
    Holm-corrected over every pair tested. Elsewhere, or without the runs to test one, a note why."""
    if len(knobs) < 2:
        return None, None
    if n_points != np.prod([len(k.levels) for k in knobs]):
        return None, "not a full grid (a setting is missing), so interactions are not estimated"
    centred = y - y.mean()
    error_main = _residual(centred[None], grid.full)[0]
    tested = []
    for a, b in combinations(range(len(knobs)), 2):
        product = (grid.indicators[a][:, :, None] * grid.indicators[b][:, None, :]).reshape(len(y), -1)
        basis = _basis(np.hstack([grid.full, product - product.mean(axis=0)]))
        df = basis.shape[1] - grid.rank
        df_error = len(y) - 1 - basis.shape[1]
        if df < 1 or df_error < MIN_RESIDUAL_DF:
            continue
        error = max(_residual(centred[None], basis)[0], 0.0)
        ss = max(error_main - error, 0.0)
        total = float((centred**2).sum())
        mse = error / df_error
        if mse <= 1e-12 * total:
            continue
        f = (ss / df) / mse
        low_lambda, high_lambda = stats.noncentrality_interval(f, df, df_error, CONFIDENCE)
        rest = total - ss + mse
        tested.append(
            {
                "knobs": (knobs[a].name, knobs[b].name),
                "importance": max((ss - df * mse) / (total + mse), 0.0),
                "low": float(low_lambda * mse / (rest + mse * (df + low_lambda))),
                "high": float(high_lambda * mse / (rest + mse * (df + high_lambda))),
                "p_value": float(stats.f_test_p(f, df, df_error)),
            }
        )
    if not tested:
        return None, "no runs left to measure the noise with once interactions are in the model: run with several seeds"
    for row, p in zip(tested, stats.holm([row["p_value"] for row in tested])):
        row["p_holm"] = float(p)
        row["matters"] = bool(p <= ALPHA and row["low"] > 0)
    return max(tested, key=lambda row: (row["importance"], -row["p_value"])), None


# --- searches: fANOVA, a permutation test and a bootstrap ------------------------------------------------


def permutations_for(n_knobs: int) -> int:
    """The most shuffles of each knob for fANOVA's test. The smallest p they can give, 1 / (B + 1),
    must sit under Holm's first threshold, 0.05 / knobs, for a knob to be able to pass it: 20 per knob
    would just reach it, and 19 more give a knob that clearly matters room to."""
    return PERMUTATIONS_PER_KNOB * n_knobs + 19


def _permutation_p(observed: float, draw, most: int) -> tuple[float, float]:
    """(p, mean of the draws) of a permutation test that stops early once the answer is clear (Besag
    and Clifford 1991): after `enough` draws at least as large as `observed`, p = enough / draws, a
    p too large for any Holm step to pass; else all `most` draws and p = (1 + as large) / (1 + most).
    A knob that does nothing stops after about 2 x enough shuffles instead of `most`."""
    enough = max(10, int(np.ceil(ALPHA * (most + 1))) + 1)
    null: list[float] = []
    as_large = 0
    for _ in range(most):
        value = draw()
        if np.isnan(value):  # a shuffle no tree could split: no draw
            continue
        null.append(value)
        as_large += value >= observed
        if as_large >= enough:
            return as_large / len(null), float(np.mean(null))
    return (1 + as_large) / (1 + len(null)), float(np.mean(null)) if null else float("nan")


def _fanova_sample(points: np.ndarray, seed: int) -> np.ndarray:
    """The runs fANOVA fits: all of them, or those of FANOVA_SETTINGS settings drawn at random."""
    n_points = int(points.max()) + 1
    if n_points <= FANOVA_SETTINGS:
        return np.arange(len(points))
    chosen = np.random.default_rng(seed).choice(n_points, FANOVA_SETTINGS, replace=False)
    return np.flatnonzero(np.isin(points, chosen))


def _fanova_rows(knobs: list[Knob], y: np.ndarray, points: np.ndarray, seed: int) -> list[dict]:
    """fANOVA's share of the metric's variance for each knob's main effect, less its chance level: the
    mean share the knob gets when its values are shuffled between the settings, the other knobs and
    the metric left as they are. A forest fit to 30 noisy trials gives every knob a share (about a
    third each, for three knobs that do nothing), so a raw share says little on its own.

    p: that permutation test (the share of shuffles in which the knob got as much as it did; see
    _permutation_p), valid whatever the forest does when the knobs were drawn independently, as a
    grid or a random search draws them. The interval: the percentile interval of the share over
    RESAMPLES bootstrap resamples of the settings (a setting's seeds stay together), less the chance
    level. The point estimate averages POINT_FITS forests on every run."""
    rng = np.random.default_rng(seed)
    fit = _FanovaFit(knobs, points)
    every_run = np.arange(len(y))
    n_points = int(points.max()) + 1

    def shares(rows: np.ndarray, shuffled: int | None = None) -> np.ndarray:
        order = rng.permutation(n_points) if shuffled is not None else None
        return fit(rows, y[rows], int(rng.integers(2**31)), shuffled, order)

    observed = np.array([shares(every_run) for _ in range(POINT_FITS)])
    chance, p = np.empty(len(knobs)), np.empty(len(knobs))
    for k in range(len(knobs)):
        # the test's statistic is one forest's share, as each shuffle's is
        p[k], chance[k] = _permutation_p(
            observed[0, k], lambda k=k: shares(every_run, k)[k], permutations_for(len(knobs))
        )
    runs_of = [np.flatnonzero(points == point) for point in range(n_points)]
    resampled = []
    for _ in range(RESAMPLES):
        resampled.append(shares(np.concatenate([runs_of[point] for point in rng.integers(0, n_points, n_points)])))
    low, high = np.nanquantile(np.array(resampled), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=0)
    raw = np.nanmean(observed, axis=0)
    return [
        {
            "knob": knob.name,
            "importance": max(float(raw[k] - chance[k]), 0.0),
            "low": float(low[k] - chance[k]),
            "high": float(high[k] - chance[k]),
            "raw_share": float(raw[k]),
            "p_value": float(p[k]),
        }
        for k, knob in enumerate(knobs)
    ]


class _FanovaFit:
    """fANOVA's main effects (Hutter, Hoos and Leyton-Brown 2014) exactly as optuna's
    FanovaImportanceEvaluator computes them (tests/test_importance.py checks the numbers equal), on the
    same scikit-learn forest, with the tree walks vectorised: optuna's pure-Python walk takes ~30 ms a
    fit, and a test and an interval take hundreds of fits.

    The knobs go in as optuna encodes them: a number as one column on [min, max] (log10 when its values
    span decades, as a log-uniform search drew them), a category as one 0/1 column per level."""

    def __init__(self, knobs: list[Knob], points: np.ndarray) -> None:
        columns, self.bounds, self.groups = [], [], []
        for knob in knobs:
            start = len(columns)
            if knob.numbers is None:
                columns += [(knob.codes == code).astype(float) for code in range(len(knob.levels))]
                self.bounds += [(0.0, 1.0)] * len(knob.levels)
            else:
                values = np.log10(knob.numbers) if knob.log_scaled else knob.numbers
                columns.append(values)
                self.bounds.append((float(values.min()), float(values.max())))
            self.groups.append(np.arange(start, len(columns)))
        self.x = np.column_stack(columns)
        self.bounds = np.array(self.bounds)
        self.points = points
        self.first_run = np.array([np.flatnonzero(points == point)[0] for point in range(int(points.max()) + 1)])

    def __call__(
        self, rows: np.ndarray, scores: np.ndarray, seed: int, shuffled: int | None = None, order=None
    ) -> np.ndarray:
        """Each knob's share of the variance of `scores`, the metric of the runs `rows` (in order).
        With `shuffled`, that knob takes in each run the value of setting order[its setting] instead."""
        from sklearn.ensemble import RandomForestRegressor

        x = self.x[rows]
        if shuffled is not None:
            group = self.groups[shuffled]
            x[:, group] = self.x[self.first_run[order[self.points[rows]]]][:, group]
        # optuna's forest: FanovaImportanceEvaluator(n_trees, max_depth=64) fits exactly this
        forest = RandomForestRegressor(
            n_estimators=TREES, max_depth=64, min_samples_split=2, min_samples_leaf=1, random_state=seed
        ).fit(x, scores)
        fractions = [_tree_fractions(tree.tree_, self.bounds, self.groups) for tree in forest.estimators_]
        kept = [f for f in fractions if f is not None]  # a tree without variance explains nothing
        if not kept:
            return np.full(len(self.groups), np.nan)
        return np.mean(kept, axis=0)


def _tree_fractions(tree, bounds: np.ndarray, groups: list[np.ndarray]) -> np.ndarray | None:
    """For one fitted tree: each group of columns' main-effect variance over the tree's variance, both
    under the uniform measure on `bounds`; None for a tree that predicts one value everywhere.

    A leaf is a box. The main effect of a group at a point of its own columns is the mean of the leaves
    whose box holds that point, each weighted by its volume in the other columns; the group's columns
    are cut at the tree's split values, and the effect is constant on each cell of those cuts."""
    feature, threshold, value = tree.feature, tree.threshold, tree.value[:, 0, 0].astype(float)
    low = np.repeat(bounds[None, :, 0], tree.node_count, axis=0)
    high = np.repeat(bounds[None, :, 1], tree.node_count, axis=0)
    for node in range(tree.node_count):  # sklearn numbers a node's children after it
        f = feature[node]
        if f < 0:
            continue
        left, right = tree.children_left[node], tree.children_right[node]
        low[left], high[left] = low[node], high[node]
        low[right], high[right] = low[node], high[node]
        high[left, f] = threshold[node]
        low[right, f] = threshold[node]
    leaves = feature < 0
    low, high, value = low[leaves], high[leaves], value[leaves]
    sides = high - low
    volume = np.prod(sides, axis=1)
    mean = np.average(value, weights=volume)
    variance = np.average((value - mean) ** 2, weights=volume)
    if not variance > 0:
        return None
    fractions = []
    for group in groups:
        cells, cell_sizes = _cells(threshold[np.isin(feature, group)], feature[np.isin(feature, group)], group, bounds)
        # (cells, leaves): does the leaf's box hold the cell's midpoint in every column of the group
        holds = np.all((low[None, :, group] < cells[:, None, :]) & (cells[:, None, :] < high[None, :, group]), axis=2)
        elsewhere = volume / np.prod(sides[:, group], axis=1)  # each leaf's volume in the other columns
        weight = holds @ elsewhere
        effect = (holds @ (elsewhere * value)) / weight
        weight = weight * cell_sizes
        centre = np.average(effect, weights=weight)
        fractions.append(max(float(np.average((effect - centre) ** 2, weights=weight)), 0.0) / variance)
    return np.array(fractions)


def _cells(thresholds: np.ndarray, features: np.ndarray, group: np.ndarray, bounds: np.ndarray):
    """The midpoints (cells, len(group)) and sizes (cells,) of the grid that a group's columns' split
    values cut their bounds into."""
    midpoints, sizes = [], []
    for column in group:
        edges = np.concatenate(([bounds[column, 0]], np.unique(thresholds[features == column]), [bounds[column, 1]]))
        midpoints.append((edges[1:] + edges[:-1]) / 2)
        sizes.append(np.diff(edges))
    grid = np.stack(np.meshgrid(*midpoints, indexing="ij"), axis=-1).reshape(-1, len(group))
    size = np.prod(np.stack(np.meshgrid(*sizes, indexing="ij"), axis=-1).reshape(-1, len(group)), axis=1)
    return grid, size


# --- what each knob's effect looks like -----------------------------------------------------------------


def level_means(knob: Knob, y: np.ndarray, grid: _GridModel | None = None, k: int | None = None) -> list[tuple]:
    """(label, mean, low, high) of the metric at each of the knob's levels, with a 95% interval.

    On a grid (`grid` and the knob's index `k`): the ANOVA model's estimated marginal means, each level
    averaged over every level of the other knobs alike, with the model's pooled noise: a setting that
    failed or a design that is not a full grid does not tilt one level's mean by which other levels
    ran with it. Elsewhere the raw mean and t interval of the runs at the level; a knob summarised as
    a range has equal-count bins of its values for levels (bins of values, so a setting's seeds share
    one)."""
    if knob.as_range:
        bins = np.array_split(np.unique(knob.numbers), RANGE_BINS)
        groups = [(f"{b[0]:.3g}..{b[-1]:.3g}", y[(knob.numbers >= b[0]) & (knob.numbers <= b[-1])]) for b in bins]
    elif grid is not None:
        return [(level, *bounds) for level, bounds in zip(knob.levels, grid.marginal_means(y, k))]
    else:
        groups = [(level, y[knob.codes == code]) for code, level in enumerate(knob.levels)]
    rows = []
    for label, values in groups:
        spread = stats.t_interval(values, CONFIDENCE)
        rows.append((label, spread.mean, spread.low, spread.high))
    return rows


def _effect(knob: Knob, levels: list[tuple], lower_better: bool) -> dict:
    """The best and worst of `levels` (level_means) and, for a range, where the best lies."""
    means = np.array([mean for _, mean, _, _ in levels])
    best = int(np.argmin(means) if lower_better else np.argmax(means))
    worst = int(np.argmax(means) if lower_better else np.argmin(means))
    row = {"levels": len(knob.levels)}
    for which, index in (("best", best), ("worst", worst)):
        label, mean, low, high = levels[index]
        row |= {which: label, f"{which}_mean": mean, f"{which}_low": low, f"{which}_high": high}
    if knob.as_range:
        last = len(levels) - 1
        row["summary"] = (
            "higher is better" if best == last else "lower is better" if best == 0 else "best in the middle"
        )
    else:
        row["summary"] = "by level"
    return row


def _effect_line(row: pd.Series) -> str:
    """`best 0.001: 0.612 [0.590, 0.634]; worst 1e-05: 0.142 [0.120, 0.164]`, or for a range
    `higher is better; best 0.003..0.01: 0.612 [0.590, 0.634]`."""
    best = f"{row['best']}: {_mean_and_interval(row, 'best')}"
    if row["summary"] != "by level":
        return f"{row['summary']}; best {best}"
    return f"best {best}; worst {row['worst']}: {_mean_and_interval(row, 'worst')}"


def _mean_and_interval(row: pd.Series, which: str) -> str:
    mean, low, high = row[f"{which}_mean"], row[f"{which}_low"], row[f"{which}_high"]
    if pd.isna(low):
        return f"{mean:.3f} (one run)"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"
