"""Statistics across seeds and games: confidence intervals, differences, verdicts, IQM,
probability of improvement, human-normalized scores, and the smoothing of noisy score series.

Confidence intervals are percentile bootstraps over seeds (Efron's percentile method): resample
the seeds with replacement ``resamples`` times, compute the statistic on each resample, and take
the 2.5th and 97.5th percentiles (numpy's linear interpolation) of those values. Every function
takes a ``seed`` for its own generator, so the same numbers always give the same interval.

The aggregate measures follow rliable (Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"): the interquartile mean is ``scipy.stats.trim_mean(scores, 0.25)`` of the
pooled run scores, its interval a stratified bootstrap (seeds resampled within each game), and the
probability of improvement is the Mann-Whitney statistic averaged over games.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000

Interval = tuple[float, float]
NAN = float("nan")
NO_INTERVAL: Interval = (NAN, NAN)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided percentile interval of ``samples`` along axis 0."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def _resample_indices(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, n)`` indices drawn uniformly with replacement from ``range(n)``."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return rng.integers(0, n, size=(resamples, n))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval | tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence interval of the mean over seeds.

    :param values: one value per seed, shape ``(seeds,)``; or ``(seeds, points)`` for one interval
        per column (e.g. per step of a curve), all columns resampled with the same seed indices.
        No NaN allowed.
    :return: ``(low, high)``; floats for 1-D input, arrays of shape ``(points,)`` for 2-D input.
        With fewer than two seeds there is no interval: NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim not in (1, 2):
        raise ValueError(f"values must have shape (seeds,) or (seeds, points), got {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values contain NaN; pass only the seeds that have data")
    n = values.shape[0]
    if n < 2:
        if values.ndim == 1:
            return NO_INTERVAL
        empty = np.full(values.shape[1], np.nan)
        return empty, empty.copy()
    indices = _resample_indices(n, resamples, np.random.default_rng(seed))
    means = values[indices].mean(axis=1)  # (resamples,) or (resamples, points)
    low, high = _percentiles(means, confidence)
    if values.ndim == 1:
        return float(low), float(high)
    return low, high


def bootstrap_difference_ci(
    values: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap confidence interval of ``mean(values) - mean(baseline)``.

    The two groups are independent runs, so each is resampled on its own: every resample draws
    ``len(values)`` seeds from ``values`` and ``len(baseline)`` from ``baseline``, with replacement.
    NaN when either group has fewer than two seeds.
    """
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if values.ndim != 1 or baseline.ndim != 1:
        raise ValueError(f"values and baseline must be 1-D (one value per seed), got {values.shape}, {baseline.shape}")
    if len(values) < 2 or len(baseline) < 2:
        return NO_INTERVAL
    rng = np.random.default_rng(seed)
    resampled = values[_resample_indices(len(values), resamples, rng)].mean(axis=1)
    resampled_baseline = baseline[_resample_indices(len(baseline), resamples, rng)].mean(axis=1)
    low, high = _percentiles(resampled - resampled_baseline, confidence)
    return float(low), float(high)


def lies_above_zero(interval: Interval) -> bool:
    """True when the whole interval is above zero (NaN, i.e. no interval: False)."""
    return bool(interval[0] > 0)


def lies_below_zero(interval: Interval) -> bool:
    """True when the whole interval is below zero (NaN, i.e. no interval: False)."""
    return bool(interval[1] < 0)


def verdict(final_difference: Interval, auc_difference: Interval) -> str:
    """``"better"`` when the CI of the final-score difference or of the AUC difference lies
    above zero and neither lies below; ``"worse"`` in the mirror case; ``"similar"`` otherwise
    (both CIs contain zero, they disagree, or there are none)."""
    above = lies_above_zero(final_difference) or lies_above_zero(auc_difference)
    below = lies_below_zero(final_difference) or lies_below_zero(auc_difference)
    if above and not below:
        return "better"
    if below and not above:
        return "worse"
    return "similar"


@functools.cache
def chance_verdict_rate(
    seeds: int, baseline_seeds: int, *, games: int = 2_000, resamples: int = 1_000, seed: int = 0
) -> float:
    """The fraction of games with NO true difference that :func:`verdict` still calls better or
    worse, with ``seeds`` and ``baseline_seeds`` seeds a side: the false-alarm rate of a verdict.

    Simulated over ``games`` games whose per-seed final scores and AUCs are independent standard
    normal draws, the same for both archs. With 2 seeds a side it is 1/2 (each interval is the
    range of the seeds: each metric calls a difference when both seeds of one arch lie above both
    of the other, 1/6 per direction); 0 when either side has one seed (no interval).
    """
    if seeds < 2 or baseline_seeds < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    alarms = 0
    for game in range(games):
        values, baseline = rng.standard_normal((2, seeds)), rng.standard_normal((2, baseline_seeds))
        final, auc = (
            bootstrap_difference_ci(values[i], baseline[i], resamples=resamples, seed=2 * game + i) for i in range(2)
        )
        alarms += verdict(final, auc) != "similar"
    return alarms / games


POWER = 0.8


@functools.cache
def detectable_effect(
    seeds: int, baseline_seeds: int, *, power: float = POWER, games: int = 2_000, resamples: int = 1_000, seed: int = 0
) -> float:
    """The smallest true difference, in standard deviations of one run's score, whose
    :func:`bootstrap_difference_ci` lies above zero in at least ``power`` of games, with ``seeds``
    and ``baseline_seeds`` seeds a side: the size of difference a verdict sees, and below which a
    ``similar`` means little.

    Simulated over ``games`` games whose per-seed scores are independent standard normal draws,
    the arch's shifted by the difference ``d``. Shifting one group by ``d`` shifts every resampled
    difference of means, and so the interval, by exactly ``d``: with the interval ``(low, high)``
    drawn at ``d = 0``, the interval lies above zero exactly when ``d > -low``. The answer is the
    ``power`` quantile of ``-low`` over the games (the ``ceil(power * games)``-th smallest).
    Multiply by the runs' standard deviation for a difference in score points. NaN when either
    side has fewer than two seeds (no interval).
    """
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if seeds < 2 or baseline_seeds < 2:
        return NAN
    rng = np.random.default_rng(seed)
    thresholds = np.empty(games)
    for game in range(games):
        values, baseline = rng.standard_normal(seeds), rng.standard_normal(baseline_seeds)
        low, _ = bootstrap_difference_ci(values, baseline, resamples=resamples, seed=game)
        thresholds[game] = -low
    return float(np.sort(thresholds)[math.ceil(power * games - 1e-9) - 1])


def pooled_standard_deviation(values: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray) -> float:
    """``sqrt(((m - 1) s_x^2 + (n - 1) s_y^2) / (m + n - 2))`` with ``s`` the sample standard
    deviations (ddof 1) of the ``m`` values and ``n`` baseline values; NaN with fewer than two a side."""
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if len(values) < 2 or len(baseline) < 2:
        return NAN
    squares = ((values - values.mean()) ** 2).sum() + ((baseline - baseline.mean()) ** 2).sum()
    return float(np.sqrt(squares / (len(values) + len(baseline) - 2)))


def detectable_difference(
    values: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, *, power: float = POWER, seed: int = 0
) -> float:
    """The smallest difference of means, in the units of the values, that the interval of
    ``mean(values) - mean(baseline)`` would show (lie above zero) in at least ``power`` of
    repeated experiments with these seed counts, if both groups spread as these runs do:
    :func:`detectable_effect` times :func:`pooled_standard_deviation`. NaN with fewer than two a side."""
    spread = pooled_standard_deviation(values, baseline)
    return detectable_effect(len(values), len(baseline), power=power, seed=seed) * spread


def interquartile_mean(scores: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean (IQM) of all ``scores`` pooled (any shape): the mean of the middle 50 %.

    Exactly ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, as rliable computes it: sort the
    ``n`` values, drop ``int(0.25 * n)`` from each end, average the rest. For 1..8: mean of 3..6.
    """
    pooled = np.sort(np.asarray(scores, dtype=float).ravel())
    if pooled.size == 0:
        raise ValueError("interquartile_mean of no scores")
    cut = int(0.25 * pooled.size)
    return float(pooled[cut : pooled.size - cut].mean())


def _interquartile_means(pooled: np.ndarray) -> np.ndarray:
    """Row-wise IQM of ``(resamples, n)``."""
    n = pooled.shape[1]
    cut = int(0.25 * n)
    return np.sort(pooled, axis=1)[:, cut : n - cut].mean(axis=1)


def _as_groups(scores_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray]) -> list[np.ndarray]:
    groups = [np.asarray(group, dtype=float).ravel() for group in scores_by_game]
    if not groups or any(group.size == 0 for group in groups):
        raise ValueError("need at least one game, each with at least one score")
    return groups


def _resamplable(groups: list[np.ndarray]) -> bool:
    """Whether a stratified bootstrap can vary at all: some game has two runs or more. With one run
    per game every resample is the data itself, and there is no interval."""
    return any(group.size >= 2 for group in groups)


def _stratified_resamples(groups: list[np.ndarray], resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each game's seeds resampled with replacement within that game: ``(resamples, seeds_g)`` each."""
    return [group[_resample_indices(group.size, resamples, rng)] for group in groups]


def interquartile_mean_ci(
    scores_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Stratified-bootstrap CI of the IQM (rliable's ``StratifiedBootstrap``, percentile method):
    each resample draws, within every game, as many seeds as that game has, with replacement;
    the IQM is taken over the pooled resampled scores. Games may have different numbers of seeds.
    NaN (no interval) when every game has a single run.

    :param scores_by_game: one array of run scores (one per seed) per game.
    """
    groups = _as_groups(scores_by_game)
    if not _resamplable(groups):
        return NO_INTERVAL
    pooled = np.concatenate(_stratified_resamples(groups, resamples, np.random.default_rng(seed)), axis=1)
    low, high = _percentiles(_interquartile_means(pooled), confidence)
    return float(low), float(high)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mann-Whitney ``P(x > y) + 0.5 P(x = y)`` over all pairs, along the last two axes' pairs:
    ``x`` (..., m), ``y`` (..., n) -> (...)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


def probability_of_improvement(
    scores_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray],
    baseline_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray],
) -> float:
    """rliable's average probability of improvement ``P(X > Y)``: for every game, the
    Mann-Whitney statistic ``P(x > y) + 0.5 P(x = y)`` over all pairs of a seed ``x`` of X and a
    seed ``y`` of Y (U / (m n)), averaged over games.

    :param scores_by_game: X's run scores, one array per game.
    :param baseline_by_game: Y's run scores, one array per game, in the same game order.
    """
    xs, ys = _as_groups(scores_by_game), _as_groups(baseline_by_game)
    if len(xs) != len(ys):
        raise ValueError(f"scores for {len(xs)} games but baseline scores for {len(ys)}")
    return float(np.mean([_improvement(x, y) for x, y in zip(xs, ys)]))


def probability_of_improvement_ci(
    scores_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray],
    baseline_by_game: Sequence[Sequence[float]] | Sequence[np.ndarray],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Stratified-bootstrap CI of :func:`probability_of_improvement` (rliable's
    ``StratifiedIndependentBootstrap``): X's and Y's seeds are resampled independently, within
    each game. NaN (no interval) when every game has a single run of X and of Y."""
    xs, ys = _as_groups(scores_by_game), _as_groups(baseline_by_game)
    if len(xs) != len(ys):
        raise ValueError(f"scores for {len(xs)} games but baseline scores for {len(ys)}")
    if not (_resamplable(xs) or _resamplable(ys)):
        return NO_INTERVAL
    rng = np.random.default_rng(seed)
    resampled_x, resampled_y = _stratified_resamples(xs, resamples, rng), _stratified_resamples(ys, resamples, rng)
    per_resample = np.mean([_improvement(x, y) for x, y in zip(resampled_x, resampled_y)], axis=0)
    low, high = _percentiles(per_resample, confidence)
    return float(low), float(high)


def human_normalized(score: float | np.ndarray, random_score: float, human_score: float) -> float | np.ndarray:
    """``(score - random) / (human - random)``: 0 plays like a random policy, 1 like the human
    reference (Mnih et al. 2015)."""
    if human_score == random_score:
        raise ValueError(f"human and random scores are equal ({human_score}): cannot normalize")
    return (np.asarray(score, dtype=float) - random_score) / (human_score - random_score)


def window_means(steps: np.ndarray, values: np.ndarray, at: np.ndarray, window: float) -> np.ndarray:
    """Trailing-window mean: at each step ``g`` of ``at``, the mean of the ``values`` whose step
    lies in ``(g - window, g]`` (e.g. the games that ended there); NaN where none does.

    :param steps: ``(n,)`` ascending steps of the values (agent steps).
    :param values: ``(n,)``.
    :param at: ``(k,)`` steps to evaluate at.
    """
    steps, values, at = np.asarray(steps, dtype=float), np.asarray(values, dtype=float), np.asarray(at, dtype=float)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    high = np.searchsorted(steps, at, side="right")
    low = np.searchsorted(steps, at - window, side="right")
    counts = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (sums[high] - sums[low]) / np.maximum(counts, 1), np.nan)


def curve_on_grid(steps: np.ndarray, values: np.ndarray, grid: np.ndarray, window: float, end: float) -> np.ndarray:
    """One run's smoothed curve on a common step grid, never extrapolated.

    The value at a grid step ``g`` is the trailing-window mean (:func:`window_means`), defined only
    inside the run's range ``[steps[0], end]`` (first finished game to the last step the run
    logged). A grid step inside the range whose window holds no value is linearly interpolated
    between the nearest defined grid steps on either side; grid steps before the first or after the
    last defined one are NaN.

    :return: ``(len(grid),)``, NaN where the run has no data.
    """
    grid = np.asarray(grid, dtype=float)
    curve = np.full(grid.shape, np.nan)
    if len(steps) == 0:
        return curve
    inside = (grid >= steps[0]) & (grid <= end)
    curve[inside] = window_means(steps, values, grid[inside], window)
    defined = np.flatnonzero(~np.isnan(curve))
    if defined.size >= 2:
        gaps = np.arange(defined[0], defined[-1] + 1)
        curve[gaps] = np.interp(grid[gaps], grid[defined], curve[defined])
    return curve


def final_window_mean(steps: np.ndarray, values: np.ndarray, end: float, fraction: float = 0.1) -> float:
    """Mean of the values logged in the last ``fraction`` of a run's steps, ``(end * (1 - fraction),
    end]`` (the games that ended there); the last value when none did."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    last = (steps > end * (1 - fraction)) & (steps <= end)
    return float(values[last].mean()) if last.any() else float(values[steps <= end][-1])


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its Student-t interval (``low = high = mean``
    for a single value: no interval)."""
    from scipy import stats  # scikit-learn's dependency; imported here, where it is needed

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half
