"""The aggregate over games (Agarwal et al. 2021, as rliable computes them): per agent and arch,
the IQM of the final scores of all its runs and the probability of improvement over the baseline,
each with its stratified-bootstrap interval."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.estimates import NAN, Row


@dataclass
class Aggregate:
    """One arch of one agent over the games every arch of that agent ran: IQM of the (human-
    normalized, when reference scores are known) final scores of all its runs, and the probability
    of improvement over the baseline (NaN for the baseline itself)."""

    agent: str
    arch: str
    games: list[str]
    runs: int
    normalized: bool
    iqm: float
    iqm_low: float
    iqm_high: float
    improvement: float = NAN
    improvement_low: float = NAN
    improvement_high: float = NAN


def aggregates(
    agent: str,
    rows: list[Row],
    archs: list[str],
    baseline: str,
    reference_scores: Mapping[str, tuple[float, float]] | None,
    seed: int,
    resamples: int,
    notes: list[str],
) -> list[Aggregate]:
    """One :class:`Aggregate` per arch of ``archs`` (baseline first) from ``agent``'s ``rows``, over
    the games where every arch ran (and that have reference scores, when ``reference_scores`` is
    given); the games left out are added to ``notes``."""
    by_game: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_game.setdefault(row.game, {})[row.arch] = row
    games = [game for game, present in by_game.items() if all(arch in present for arch in archs)]
    left_out = [game for game in by_game if game not in games]
    if left_out:
        notes.append(f"aggregate for {agent}: left out {', '.join(left_out)} (not every arch of {agent} ran there)")
    normalized = reference_scores is not None
    if normalized:
        unknown = [game for game in games if game not in reference_scores]
        if unknown:
            notes.append(f"aggregate for {agent}: left out {', '.join(unknown)} (no random/human reference scores)")
        games = [game for game in games if game in reference_scores]
    if not games:
        return []

    def scores(arch: str) -> list[np.ndarray]:
        finals = [by_game[game][arch].final_scores for game in games]
        if normalized:
            finals = [stats.human_normalized(final, *reference_scores[game]) for game, final in zip(games, finals)]
        return finals

    result = []
    for arch in archs:
        arch_scores = scores(arch)
        iqm_low, iqm_high = stats.interquartile_mean_ci(arch_scores, resamples=resamples, seed=seed)
        aggregate = Aggregate(
            agent,
            arch,
            games,
            sum(len(s) for s in arch_scores),
            normalized,
            stats.interquartile_mean(np.concatenate(arch_scores)),
            iqm_low,
            iqm_high,
        )
        if arch != baseline:
            aggregate.improvement = stats.probability_of_improvement(arch_scores, scores(baseline))
            aggregate.improvement_low, aggregate.improvement_high = stats.probability_of_improvement_ci(
                arch_scores, scores(baseline), resamples=resamples, seed=seed
            )
        result.append(aggregate)
    return result
