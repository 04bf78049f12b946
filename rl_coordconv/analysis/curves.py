"""Learning curves of one game and agent: each seed smoothed onto a common grid, then the mean
across seeds with its 95 % bootstrap band.

The rules (grid, trailing window, no extrapolation) are stated in the report's method
(:func:`rl_coordconv.analysis.markdown.method_text`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.runs import Run

GRID_POINTS = 100  # common steps per panel, evenly spaced up to the panel's longest run
SMOOTHING_FRACTION = 0.05  # trailing window, as a fraction of the panel's longest run


@dataclass
class ArchCurve:
    """One arch's curve in one panel: ``runs`` (seeds, points) each seed's smoothed curve on the
    grid (NaN where that seed has no data), their ``mean`` with its 95 % CI ``low``/``high`` (NaN
    with fewer than two seeds), and ``seeds_per_step`` (points,)."""

    arch: str
    seeds: list[int]
    runs: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds_per_step: np.ndarray


@dataclass
class Panel:
    """One game and agent: the common grid ``steps`` (points,) in agent steps, the smoothing
    ``window`` in agent steps, and one curve per arch (baseline first)."""

    game: str
    agent: str
    steps: np.ndarray
    window: float
    curves: dict[str, ArchCurve]


def empty_panel(game: str, agent: str, runs: list[Run]) -> Panel:
    """The panel of ``runs`` (every arch's) without curves: ``GRID_POINTS`` steps up to the longest
    run's last step, rounded to whole agent steps, and a window of ``SMOOTHING_FRACTION`` of it."""
    longest = max(run.last_step for run in runs)
    grid = np.unique(np.round(np.linspace(longest / GRID_POINTS, longest, GRID_POINTS)).astype(np.int64))
    return Panel(game, agent, grid, SMOOTHING_FRACTION * longest, {})


def arch_curve(arch: str, runs: list[Run], metric: str, panel: Panel, seed: int, resamples: int) -> ArchCurve:
    """The curve of ``runs`` (one arch, ascending seeds) on ``panel``'s grid."""
    grid = panel.steps
    matrix = np.stack(
        [
            stats.curve_on_grid(run.scalars[metric].steps, run.scalars[metric].values, grid, panel.window, run.last_step)
            for run in runs
        ]
    )
    available = ~np.isnan(matrix)
    counts = available.sum(axis=0)
    mean = np.full(grid.shape, np.nan)
    mean[counts > 0] = np.nanmean(matrix[:, counts > 0], axis=0)
    low, high = np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
    # One bootstrap per set of seeds with data (columns with the same seeds share the resamples).
    patterns, which = np.unique(available.T, axis=0, return_inverse=True)
    for index, pattern in enumerate(patterns):
        if pattern.sum() >= 2:
            columns = np.flatnonzero(which.ravel() == index)
            low[columns], high[columns] = stats.bootstrap_ci(matrix[np.ix_(pattern, columns)], resamples=resamples, seed=seed)
    return ArchCurve(arch, [run.seed for run in runs], matrix, mean, low, high, counts)


def coverage_note(panel: Panel, curve: ArchCurve) -> str | None:
    """'3 seeds to 5,000 steps, then 2 to 10,000' when seeds end at different steps."""
    counts = curve.seeds_per_step
    started = np.flatnonzero(counts > 0)
    if started.size == 0:
        return None
    counts = counts[started[0] :]
    steps = panel.steps[started[0] :]
    if np.all(counts == counts[0]) and counts[0] == len(curve.seeds):
        return None
    segments, start = [], 0
    for index in range(1, len(counts) + 1):
        if index == len(counts) or counts[index] != counts[start]:
            segments.append(f"{counts[start]} to {int(steps[index - 1]):,}")
            start = index
    return (
        f"{panel.game} {panel.agent}-{curve.arch}: seeds of unequal length; seeds with data on the grid: "
        + ", then ".join(segments)
        + " steps"
    )
