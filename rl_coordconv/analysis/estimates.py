"""The report's numbers: one :class:`Row` per game, agent and arch, computed from ``TABLE``.

``TABLE`` names every statistic of a row, the function that computes it from that arch's seeds
(:class:`Seeds`) and its columns in summary.csv, in the file's order. A function returns an
:class:`Estimate` (a value with its 95 % interval: three columns, value, low, high) or one plain
value (one column). Adding a statistic is one entry here and its function, usually one of
:mod:`rl_coordconv.analysis.statistics` wrapped by :func:`with_ci`, :func:`difference_with_ci` or
:func:`against_baseline`; summary.md shows it once markdown.py's ``TABLE_COLUMNS`` has a column for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.runs import Run

FINAL_FRACTION = 0.10  # final score: the last 10 % of each run's steps
SINGLE_SEED_VERDICT = "similar (no CI: 1 seed)"
NO_BASELINE_VERDICT = "no baseline"
NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A value and its 95 % confidence interval, in the units of the metric (NaN: none)."""

    value: float = NAN
    low: float = NAN
    high: float = NAN


@dataclass(frozen=True, eq=False)
class Seeds:
    """One arch's runs on one game for one agent, one number per seed: what every statistic reads.

    ``final_scores`` and ``aucs`` are (seeds,) in the metric's units, ascending seeds; an AUC is NaN
    where its run has no point on the grid. ``baseline`` is the baseline arch's ``Seeds`` on the same
    game, None for the baseline itself (``is_baseline``) or where the baseline did not run.
    ``reference`` is the game's (random, human) score, None when unknown or not a game score.
    """

    runs: list[Run]
    final_scores: np.ndarray
    aucs: np.ndarray
    is_baseline: bool = False
    baseline: Seeds | None = None
    reference: tuple[float, float] | None = None
    seed: int = 0  # seeds every bootstrap
    resamples: int = stats.RESAMPLES

    @cached_property
    def measured_aucs(self) -> np.ndarray:
        """(runs with a point on the grid,) their AUCs."""
        return self.aucs[~np.isnan(self.aucs)]

    @cached_property
    def evaluations(self) -> np.ndarray:
        """(evaluated runs,) each evaluated run's mean score over full games (its latest evaluation)."""
        return np.array([run.evaluation.mean_score for run in self.runs if run.evaluation is not None])


def per_seed_final_scores(runs: list[Run], metric: str) -> np.ndarray:
    """(seeds,) each run's mean of ``metric`` over the last ``FINAL_FRACTION`` of its steps."""
    return np.array(
        [
            stats.final_window_mean(run.scalars[metric].steps, run.scalars[metric].values, run.last_step, FINAL_FRACTION)
            for run in runs
        ]
    )


def per_seed_aucs(curves: np.ndarray) -> np.ndarray:
    """(seeds,) the mean of each seed's smoothed curve (seeds, grid points) over the points it has."""
    return np.array([_mean(curve) for curve in curves])


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else NAN


Statistic = Callable[[Seeds], "Estimate | float | int | str | list | None"]


def with_ci(sample: str) -> Statistic:
    """The mean over seeds of ``Seeds.<sample>`` with its bootstrap interval."""

    def estimate(seeds: Seeds) -> Estimate:
        values = getattr(seeds, sample)
        return Estimate(_mean(values), *stats.bootstrap_ci(values, resamples=seeds.resamples, seed=seeds.seed))

    return estimate


def difference_with_ci(sample: str) -> Statistic:
    """Mean of ``Seeds.<sample>`` minus the baseline's, with the interval of the difference (each
    side's seeds resampled independently); no value without a baseline."""

    def estimate(seeds: Seeds) -> Estimate:
        if seeds.baseline is None:
            return Estimate()
        values, baseline = getattr(seeds, sample), getattr(seeds.baseline, sample)
        interval = stats.bootstrap_difference_ci(values, baseline, resamples=seeds.resamples, seed=seeds.seed)
        return Estimate(_mean(values) - _mean(baseline), *interval)

    return estimate


def against_baseline(function: Callable[..., float], sample: str) -> Statistic:
    """``function(values, baseline_values, seed=...)`` of ``Seeds.<sample>``; NaN without a baseline."""

    def value(seeds: Seeds) -> float:
        if seeds.baseline is None:
            return NAN
        return function(getattr(seeds, sample), getattr(seeds.baseline, sample), seed=seeds.seed)

    return value


FINAL_DIFFERENCE = difference_with_ci("final_scores")
AUC_DIFFERENCE = difference_with_ci("measured_aucs")


def verdict(seeds: Seeds) -> str:
    """better / worse / similar from the intervals of the final-score and AUC differences
    (:func:`statistics.verdict`); empty for the baseline itself."""
    if seeds.is_baseline:
        return ""
    if seeds.baseline is None:
        return NO_BASELINE_VERDICT
    if min(len(seeds.runs), len(seeds.baseline.runs)) < 2:
        return SINGLE_SEED_VERDICT
    final, auc = FINAL_DIFFERENCE(seeds), AUC_DIFFERENCE(seeds)
    return stats.verdict((final.low, final.high), (auc.low, auc.high))


def human_normalized_final(seeds: Seeds) -> float:
    """The mean over seeds of (final score - random) / (human - random); NaN without references."""
    if seeds.reference is None:
        return NAN
    return _mean(stats.human_normalized(seeds.final_scores, *seeds.reference))


def configured_steps(seeds: Seeds) -> int | None:
    """The most agent steps any seed was configured for (None: no config says)."""
    configured = [run.timesteps for run in seeds.runs if run.timesteps is not None]
    return max(configured) if configured else None


@dataclass(frozen=True)
class Entry:
    """One statistic of a row: its ``name`` (a :class:`Row` attribute), the ``function`` of the
    arch's :class:`Seeds`, and its summary.csv ``columns`` (value, low, high for an Estimate)."""

    name: str
    function: Statistic
    columns: tuple[str, ...]


TABLE: tuple[Entry, ...] = (
    Entry("seeds", lambda seeds: len(seeds.runs), ("seeds",)),
    Entry("steps", lambda seeds: min(run.last_step for run in seeds.runs), ("steps",)),  # the fewest any seed reached
    Entry("final", with_ci("final_scores"), ("final_score", "final_low", "final_high")),
    Entry("auc", with_ci("measured_aucs"), ("auc", "auc_low", "auc_high")),
    Entry("difference", FINAL_DIFFERENCE, ("difference", "difference_low", "difference_high")),
    Entry("auc_difference", AUC_DIFFERENCE, ("auc_difference", "auc_difference_low", "auc_difference_high")),
    Entry("verdict", verdict, ("verdict",)),
    Entry("seed_list", lambda seeds: [run.seed for run in seeds.runs], ("seed_list",)),
    Entry("configured_steps", configured_steps, ("configured_steps",)),
    Entry("incomplete_seeds", lambda seeds: sum(run.in_progress for run in seeds.runs), ("incomplete_seeds",)),
    Entry("human_normalized_final", human_normalized_final, ("human_normalized_final",)),
    Entry("eval", with_ci("evaluations"), ("eval_score", "eval_low", "eval_high")),
    Entry("eval_seeds", lambda seeds: len(seeds.evaluations), ("eval_seeds",)),
    # The differences (final score, AUC) the verdict would see in stats.POWER of repeated experiments.
    Entry("detectable_difference", against_baseline(stats.detectable_difference, "final_scores"), ("detectable_difference",)),
    Entry(
        "detectable_auc_difference",
        against_baseline(stats.detectable_difference, "measured_aucs"),
        ("detectable_auc_difference",),
    ),
)
COLUMNS = ["game", "agent", "arch", *(column for entry in TABLE for column in entry.columns)]
_CELLS = {column: (entry.name, field) for entry in TABLE for column, field in zip(entry.columns, ("value", "low", "high"))}


@dataclass
class Row:
    """One line of summary.csv: one arch on one game for one agent, aggregated over its seeds.

    ``values`` holds each ``TABLE`` entry's result by name; every summary.csv column is also an
    attribute (``row.final_low``, ``row.verdict``)."""

    game: str
    agent: str
    arch: str
    final_scores: np.ndarray  # (seeds,) each run's final score
    aucs: np.ndarray  # (seeds,) each run's AUC
    values: dict[str, object]

    def __getattr__(self, column: str) -> object:
        if column.startswith("_") or column not in _CELLS:
            raise AttributeError(f"{type(self).__name__} has no attribute or summary.csv column {column!r}")
        name, field = _CELLS[column]
        value = self.values[name]
        return getattr(value, field) if isinstance(value, Estimate) else value

    def estimate(self, name: str) -> Estimate:
        """The ``TABLE`` entry ``name`` as an Estimate (a plain value gets no interval)."""
        value = self.values[name]
        return value if isinstance(value, Estimate) else Estimate(value)

    def record(self) -> dict[str, object]:
        """The row as summary.csv writes it: NaN and None (no value) as an empty cell, seeds space-separated."""
        record = {}
        for column in COLUMNS:
            value = getattr(self, column)
            if isinstance(value, list):
                value = " ".join(str(item) for item in value)
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                value = ""
            record[column] = value
        return record


def build_row(game: str, agent: str, arch: str, seeds: Seeds) -> Row:
    """The row of ``seeds``: every ``TABLE`` entry computed."""
    return Row(game, agent, arch, seeds.final_scores, seeds.aucs, {entry.name: entry.function(seeds) for entry in TABLE})
