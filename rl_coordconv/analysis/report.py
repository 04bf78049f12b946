"""The comparison report: each arch against a baseline arch, per game and agent, across seeds.

:func:`build_report` turns runs (:func:`rl_coordconv.analysis.runs.find_runs`) into a
:class:`Report`: curves (:mod:`~rl_coordconv.analysis.curves`), one row of estimates per game,
agent and arch (:mod:`~rl_coordconv.analysis.estimates`), aggregates over games
(:mod:`~rl_coordconv.analysis.aggregates`), headlines and notes.
:func:`rl_coordconv.analysis.rendering.write_report` writes it to a folder::

    summary.csv        one row per game, agent and arch (the columns of ``estimates.COLUMNS``)
    summary.md         the table, headlines, the aggregate over games, the method, notes on the runs
    curves.png/.pdf    one panel per game and agent: each arch's mean across seeds, 95 % CI band
    curves.csv         the plotted curves, with the number of seeds at each step
    tensorboard/       the same curves as scalars (mean, lower, upper) + a custom-scalars layout

The rules (smoothing, grid, final score, AUC, confidence intervals, verdicts) are stated in
:func:`rl_coordconv.analysis.markdown.method_text`, which summary.md repeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.aggregates import Aggregate, aggregates
from rl_coordconv.analysis.curves import Panel, arch_curve, coverage_note, empty_panel
from rl_coordconv.analysis.estimates import (
    NO_BASELINE_VERDICT,
    SINGLE_SEED_VERDICT,
    Row,
    Seeds,
    build_row,
    per_seed_aucs,
    per_seed_final_scores,
)
from rl_coordconv.analysis.runs import FoundRuns, NoRunsError, Run
from rl_coordconv.games import GAMES

DEFAULT_METRIC = "episode/score"  # every finished game's score
FALLBACK_METRIC = "eval/mean_score"  # the evaluations over full games, which even runs too short to finish a game have
RAW_SCORE_METRICS = (DEFAULT_METRIC, FALLBACK_METRIC)  # game points, which human-normalization needs


@dataclass
class Report:
    runs_dir: Path
    metric: str  # the metric compared
    baseline: str
    seed: int
    resamples: int
    panels: list[Panel]
    rows: list[Row]
    aggregates: list[Aggregate]
    headlines: dict[str, list[str]]  # agent -> one line per compared arch
    notes: list[str] = field(default_factory=list)
    fallback: str | None = None  # why ``metric`` is not the one asked for

    def row(self, game: str, agent: str, arch: str) -> Row:
        for row in self.rows:
            if (row.game, row.agent, row.arch) == (game, agent, arch):
                return row
        raise KeyError(f"no row for {game} {agent}-{arch}")

    def panel(self, game: str, agent: str) -> Panel:
        for panel in self.panels:
            if (panel.game, panel.agent) == (game, agent):
                return panel
        raise KeyError(f"no panel for {game} {agent}")


def reference_scores_for(metric: str) -> dict[str, tuple[float, float]] | None:
    """``{game: (random score, human score)}`` of the suite (:data:`rl_coordconv.games.GAMES`) when
    ``metric`` is in game points (``RAW_SCORE_METRICS``); None for any other metric, whose values
    the aggregate takes as they are."""
    if metric not in RAW_SCORE_METRICS:
        return None
    return {name: (game.random_score, game.human_score) for name, game in GAMES.items()}


def headline(rows: list[Row], arch: str, baseline: str) -> str:
    """'coordconv better on 6 of 9 games, similar on 2, worse on 1' from the verdicts of ``arch``."""
    compared = [row for row in rows if row.arch == arch and row.verdict != NO_BASELINE_VERDICT]
    better = sum(row.verdict == "better" for row in compared)
    worse = sum(row.verdict == "worse" for row in compared)
    similar = len(compared) - better - worse
    text = (
        f"{arch} better on {better} of {len(compared)} game{'s' if len(compared) != 1 else ''}, "
        f"similar on {similar}, worse on {worse}"
    )
    single = sum(row.verdict == SINGLE_SEED_VERDICT for row in compared)
    if single:
        text += f" ({single} of the similar without a CI: 1 seed)"
    baseline_seeds = {row.game: row.seeds for row in rows if row.arch == baseline}
    chances = [
        stats.chance_verdict_rate(row.seeds, baseline_seeds[row.game])
        for row in compared
        if row.verdict != SINGLE_SEED_VERDICT
    ]
    if chances:
        text += (
            f"; with no true difference, chance alone would make about {sum(chances):.1f} of the "
            f"{len(chances)} game{'s' if len(chances) != 1 else ''} with intervals other than similar"
        )
    unmatched = [row.game for row in rows if row.arch == arch and row.verdict == NO_BASELINE_VERDICT]
    if unmatched:
        text += f"; no {baseline} runs to compare with on {', '.join(unmatched)}"
    return text


def build_report(
    found: FoundRuns,
    *,
    baseline: str = "conv",
    metric: str = DEFAULT_METRIC,
    reference_scores: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
    resamples: int = stats.RESAMPLES,
) -> Report:
    """Compare every arch with ``baseline`` on every game and agent of ``found``.

    :param metric: the scalar tag compared, against agent steps (``episode/score``: full-game
        scores). When no run has an ``episode/score`` point yet (no game finished), the report
        compares ``eval/mean_score`` instead and ``Report.fallback`` says so.
    :param reference_scores: ``{game: (random score, human score)}``; the aggregate over games then
        uses human-normalized final scores. None (the default): the suite's
        (:func:`reference_scores_for`), for game scores only; other metrics are aggregated raw.
    :param seed: seeds every bootstrap.
    :raises NoRunsError: no run has ``metric`` (nor, for the default, ``eval/mean_score``).
    :raises ValueError: ``baseline`` is not an arch of any run.
    """
    if reference_scores is None:
        reference_scores = reference_scores_for(metric)
    try:
        return _report(found, baseline, metric, reference_scores, seed, resamples)
    except NoRunsError:
        if metric != DEFAULT_METRIC:
            raise
    report = _report(found, baseline, FALLBACK_METRIC, reference_scores, seed, resamples)
    report.fallback = f"no run has finished a game yet ({DEFAULT_METRIC}); comparing {FALLBACK_METRIC} instead"
    return report


def _report(
    found: FoundRuns,
    baseline: str,
    metric: str,
    reference_scores: Mapping[str, tuple[float, float]] | None,
    seed: int,
    resamples: int,
) -> Report:
    notes = list(found.notes)
    runs = []
    for run in found.runs:
        if metric in run.scalars and len(run.scalars[metric]):
            runs.append(run)
        else:
            notes.append(f"skipped {run.name}: no {metric!r} points yet (tags: {', '.join(sorted(run.scalars)) or 'none'})")
    if not runs:
        raise NoRunsError(
            f"none of the {len(found.runs)} runs under {found.root} has {metric!r} points; "
            "choose another --metric or wait for the runs to finish some games"
        )
    archs_found = sorted({run.arch for run in runs})
    if baseline not in archs_found:
        raise ValueError(f"baseline arch {baseline!r} has no runs under {found.root}; archs found: {', '.join(archs_found)}")

    grouped: dict[str, dict[str, dict[str, list[Run]]]] = {}
    for run in runs:
        grouped.setdefault(run.agent, {}).setdefault(run.game, {}).setdefault(run.arch, []).append(run)

    panels, rows, agent_aggregates, headlines = [], [], [], {}
    for agent in sorted(grouped):
        agent_archs = sorted(
            {arch for by_arch in grouped[agent].values() for arch in by_arch}, key=lambda arch: (arch != baseline, arch)
        )
        agent_rows = []
        for game in sorted(grouped[agent]):
            by_arch = grouped[agent][game]
            panel = empty_panel(game, agent, [run for arch_runs in by_arch.values() for run in arch_runs])
            reference = None if reference_scores is None else reference_scores.get(game)
            archs = [arch for arch in agent_archs if arch in by_arch]  # the baseline first, when it ran
            seeds_of: dict[str, Seeds] = {}
            for arch in archs:
                arch_runs = sorted(by_arch[arch], key=lambda run: run.seed)
                curve = arch_curve(arch, arch_runs, metric, panel, seed, resamples)
                panel.curves[arch] = curve
                with np.errstate(all="ignore"):
                    aucs = per_seed_aucs(curve.runs)
                seeds_of[arch] = Seeds(
                    arch_runs,
                    per_seed_final_scores(arch_runs, metric),
                    aucs,
                    is_baseline=arch == baseline,
                    baseline=seeds_of.get(baseline),
                    reference=reference,
                    seed=seed,
                    resamples=resamples,
                )
                if len(arch_runs) == 1:
                    notes.append(f"{game} {agent}-{arch}: 1 seed (seed {arch_runs[0].seed}): no confidence interval")
                coverage = coverage_note(panel, curve)
                if coverage:
                    notes.append(coverage)
            for arch in agent_archs:
                if arch not in by_arch:
                    notes.append(f"{game} {agent}: no {arch} runs: no {arch} result on this game")
            if baseline not in by_arch:
                notes.append(
                    f"{game} {agent}: no {baseline} (baseline) runs: no difference for {', '.join(archs)} on this game"
                )
            panels.append(panel)
            agent_rows.extend(build_row(game, agent, arch, seeds_of[arch]) for arch in archs)
        rows.extend(agent_rows)
        agent_aggregates.extend(aggregates(agent, agent_rows, agent_archs, baseline, reference_scores, seed, resamples, notes))
        headlines[agent] = [headline(agent_rows, arch, baseline) for arch in agent_archs if arch != baseline]
    return Report(Path(found.root), metric, baseline, seed, resamples, panels, rows, agent_aggregates, headlines, notes)
