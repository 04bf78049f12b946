"""The comparison report: each arch against a baseline arch, per game and agent, across seeds.

:func:`build_report` turns runs (:func:`rl_coordconv.analysis.runs.find_runs`) into numbers;
:func:`write_report` writes them to a folder::

    summary.csv        one row per game, agent and arch (the columns of ``COLUMNS``)
    summary.md         the table, headlines, the aggregate over games, the method, notes on the runs
    curves.png/.pdf    one panel per game and agent: each arch's mean across seeds, 95 % CI band
    curves.csv         the plotted curves, with the number of seeds at each step
    tensorboard/       the same curves as scalars (mean, lower, upper) + a custom-scalars layout

The rules (smoothing, grid, final score, AUC, confidence intervals, verdicts) are stated in
:func:`method_text`, which summary.md repeats.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.runs import FoundRuns, NoRunsError, Run

GRID_POINTS = 100  # common steps per panel, evenly spaced up to the panel's longest run
SMOOTHING_FRACTION = 0.05  # trailing window, as a fraction of the panel's longest run
FINAL_FRACTION = 0.10  # final score: the last 10 % of each run's steps
FRAMES_PER_STEP = 4
COLUMNS = [
    "game",
    "agent",
    "arch",
    "seeds",
    "steps",
    "final_score",
    "final_low",
    "final_high",
    "auc",
    "auc_low",
    "auc_high",
    "difference",
    "difference_low",
    "difference_high",
    "auc_difference",
    "auc_difference_low",
    "auc_difference_high",
    "verdict",
    "seed_list",
    "configured_steps",
    "incomplete_seeds",
    "human_normalized_final",
    "eval_score",
    "eval_low",
    "eval_high",
    "eval_seeds",
    "detectable_difference",
    "detectable_auc_difference",
]
SINGLE_SEED_VERDICT = "similar (no CI: 1 seed)"
NO_BASELINE_VERDICT = "no baseline"
OUTPUTS = ("summary.csv", "summary.md", "curves.csv", "curves.png", "curves.pdf", "tensorboard")
NAN = float("nan")


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


@dataclass
class Row:
    """One line of summary.csv: one arch on one game for one agent, aggregated over its seeds."""

    game: str
    agent: str
    arch: str
    seed_list: list[int]
    steps: int  # the fewest agent steps any of its seeds reached
    configured_steps: int | None
    incomplete_seeds: int
    final_scores: np.ndarray  # (seeds,) each run's final score
    aucs: np.ndarray  # (seeds,) each run's AUC
    final_score: float
    final_low: float
    final_high: float
    auc: float
    auc_low: float
    auc_high: float
    difference: float = NAN
    difference_low: float = NAN
    difference_high: float = NAN
    auc_difference: float = NAN
    auc_difference_low: float = NAN
    auc_difference_high: float = NAN
    verdict: str = ""
    detectable_difference: float = NAN  # the final-score difference the verdict sees in POWER of experiments
    detectable_auc_difference: float = NAN  # the same for the AUC
    human_normalized_final: float = NAN
    eval_score: float = NAN
    eval_low: float = NAN
    eval_high: float = NAN
    eval_seeds: int = 0

    @property
    def seeds(self) -> int:
        return len(self.seed_list)

    def record(self) -> dict[str, object]:
        """The row as summary.csv writes it: NaN (no value) as an empty cell."""
        record = {}
        for column in COLUMNS:
            value = self.seeds if column == "seeds" else getattr(self, column)
            if column == "seed_list":
                value = " ".join(str(seed) for seed in value)
            elif isinstance(value, float) and math.isnan(value):
                value = ""
            elif value is None:
                value = ""
            record[column] = value
        return record


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


@dataclass
class Report:
    runs_dir: Path
    metric: str
    baseline: str
    seed: int
    resamples: int
    panels: list[Panel]
    rows: list[Row]
    aggregates: list[Aggregate]
    headlines: dict[str, list[str]]  # agent -> one line per compared arch
    notes: list[str] = field(default_factory=list)

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


@dataclass(frozen=True)
class ReportFiles:
    summary_csv: Path
    summary_md: Path
    curves_csv: Path
    curves_png: Path
    curves_pdf: Path
    tensorboard: Path


# ----------------------------------------------------------------------------------------------
# Numbers


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else NAN


def _curve(arch: str, runs: list[Run], metric: str, grid: np.ndarray, window: float, seed: int, resamples: int) -> ArchCurve:
    matrix = np.stack(
        [
            stats.curve_on_grid(run.scalars[metric].steps, run.scalars[metric].values, grid, window, run.last_step)
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


def _coverage_note(panel: Panel, curve: ArchCurve) -> str | None:
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


def _row(
    game: str,
    agent: str,
    arch: str,
    runs: list[Run],
    curve: ArchCurve,
    metric: str,
    reference: tuple[float, float] | None,
    seed: int,
    resamples: int,
) -> Row:
    finals = np.array(
        [
            stats.final_window_mean(run.scalars[metric].steps, run.scalars[metric].values, run.last_step, FINAL_FRACTION)
            for run in runs
        ]
    )
    with np.errstate(all="ignore"):
        aucs = np.array([_mean(curve_row) for curve_row in curve.runs])
    configured = [run.timesteps for run in runs if run.timesteps is not None]
    row = Row(
        game=game,
        agent=agent,
        arch=arch,
        seed_list=[run.seed for run in runs],
        steps=min(run.last_step for run in runs),
        configured_steps=max(configured) if configured else None,
        incomplete_seeds=sum(run.in_progress for run in runs),
        final_scores=finals,
        aucs=aucs,
        final_score=_mean(finals),
        final_low=NAN,
        final_high=NAN,
        auc=_mean(aucs),
        auc_low=NAN,
        auc_high=NAN,
    )
    row.final_low, row.final_high = stats.bootstrap_ci(finals, resamples=resamples, seed=seed)
    row.auc_low, row.auc_high = stats.bootstrap_ci(aucs[~np.isnan(aucs)], resamples=resamples, seed=seed)
    if reference is not None:
        row.human_normalized_final = _mean(stats.human_normalized(finals, *reference))
    evaluations = np.array([run.evaluation.mean_score for run in runs if run.evaluation is not None])
    if evaluations.size:
        row.eval_score, row.eval_seeds = float(evaluations.mean()), int(evaluations.size)
        row.eval_low, row.eval_high = stats.bootstrap_ci(evaluations, resamples=resamples, seed=seed)
    return row


def _compare(row: Row, baseline: Row, seed: int, resamples: int) -> None:
    """Fill ``row``'s differences to ``baseline`` (row minus baseline) and its verdict."""
    base_aucs, aucs = baseline.aucs[~np.isnan(baseline.aucs)], row.aucs[~np.isnan(row.aucs)]
    row.difference = row.final_score - baseline.final_score
    row.auc_difference = row.auc - baseline.auc
    row.difference_low, row.difference_high = stats.bootstrap_difference_ci(
        row.final_scores, baseline.final_scores, resamples=resamples, seed=seed
    )
    row.auc_difference_low, row.auc_difference_high = stats.bootstrap_difference_ci(
        aucs, base_aucs, resamples=resamples, seed=seed
    )
    row.detectable_difference = stats.detectable_difference(row.final_scores, baseline.final_scores, seed=seed)
    row.detectable_auc_difference = stats.detectable_difference(aucs, base_aucs, seed=seed)
    if min(row.seeds, baseline.seeds) < 2:
        row.verdict = SINGLE_SEED_VERDICT
    else:
        row.verdict = stats.verdict(
            (row.difference_low, row.difference_high), (row.auc_difference_low, row.auc_difference_high)
        )


def _aggregates(
    agent: str,
    rows: list[Row],
    archs: list[str],
    baseline: str,
    reference_scores: Mapping[str, tuple[float, float]] | None,
    seed: int,
    resamples: int,
    notes: list[str],
) -> list[Aggregate]:
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

    aggregates = []
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
        aggregates.append(aggregate)
    return aggregates


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
    metric: str = "episode/score",
    reference_scores: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
    resamples: int = stats.RESAMPLES,
) -> Report:
    """Compare every arch with ``baseline`` on every game and agent of ``found``.

    :param metric: the scalar tag compared, against agent steps (``episode/score``: full-game scores).
    :param reference_scores: ``{game: (random score, human score)}``; the aggregate over games then
        uses human-normalized final scores. Without it, raw final scores (only meaningful for one
        game or already-normalized metrics).
    :param seed: seeds every bootstrap.
    :raises NoRunsError: no run has ``metric``.
    :raises ValueError: ``baseline`` is not an arch of any run.
    """
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

    panels, rows, aggregates, headlines = [], [], [], {}
    for agent in sorted(grouped):
        agent_archs = sorted(
            {arch for by_arch in grouped[agent].values() for arch in by_arch}, key=lambda arch: (arch != baseline, arch)
        )
        agent_rows = []
        for game in sorted(grouped[agent]):
            by_arch = grouped[agent][game]
            longest = max(run.last_step for arch_runs in by_arch.values() for run in arch_runs)
            grid = np.unique(np.round(np.linspace(longest / GRID_POINTS, longest, GRID_POINTS)).astype(np.int64))
            window = SMOOTHING_FRACTION * longest
            panel = Panel(game, agent, grid, window, {})
            game_rows = {}
            for arch in [arch for arch in agent_archs if arch in by_arch]:
                arch_runs = sorted(by_arch[arch], key=lambda run: run.seed)
                curve = _curve(arch, arch_runs, metric, grid, window, seed, resamples)
                panel.curves[arch] = curve
                game_rows[arch] = _row(
                    game,
                    agent,
                    arch,
                    arch_runs,
                    curve,
                    metric,
                    None if reference_scores is None else reference_scores.get(game),
                    seed,
                    resamples,
                )
                if len(arch_runs) == 1:
                    notes.append(f"{game} {agent}-{arch}: 1 seed (seed {arch_runs[0].seed}): no confidence interval")
                coverage = _coverage_note(panel, curve)
                if coverage:
                    notes.append(coverage)
            for arch in agent_archs:
                if arch not in by_arch:
                    notes.append(f"{game} {agent}: no {arch} runs: no {arch} result on this game")
            base = game_rows.get(baseline)
            for arch, row in game_rows.items():
                if arch == baseline:
                    continue
                if base is None:
                    row.verdict = NO_BASELINE_VERDICT
                else:
                    _compare(row, base, seed, resamples)
            if base is None and len(game_rows):
                notes.append(
                    f"{game} {agent}: no {baseline} (baseline) runs: no difference for {', '.join(game_rows)} on this game"
                )
            panels.append(panel)
            agent_rows.extend(game_rows.values())
        rows.extend(agent_rows)
        aggregates.extend(_aggregates(agent, agent_rows, agent_archs, baseline, reference_scores, seed, resamples, notes))
        headlines[agent] = [headline(agent_rows, arch, baseline) for arch in agent_archs if arch != baseline]
    return Report(Path(found.root), metric, baseline, seed, resamples, panels, rows, aggregates, headlines, notes)


# ----------------------------------------------------------------------------------------------
# Text


def method_text(report: Report) -> str:
    """The rules behind every number of the report, as summary.md states them."""
    smoothing, final = round(100 * SMOOTHING_FRACTION), round(100 * FINAL_FRACTION)
    confidence = round(100 * stats.CONFIDENCE)
    return "\n".join(
        [
            f"- **Data**: the scalar `{report.metric}` of each run, every point, read from the TensorBoard event files "
            "of the run directories (found by their config.json), against agent steps (1 agent step = 4 frames).",
            f"- **Curves**: per game and agent, a grid of {GRID_POINTS} evenly spaced agent steps up to the longest run. "
            f"A run's value at grid step g is the mean of the scores of the games that ended in (g - w, g], with "
            f"w = {smoothing} % of the longest run's steps (a trailing window), from the run's first finished game "
            "to the last step it logged; grid steps inside that range whose window holds no game are interpolated "
            "linearly. Nothing is extrapolated: a run that stopped early contributes only up to its last step, and "
            "curves.csv gives the number of seeds at each grid step.",
            f"- **Final score**: per run, the mean score of the games that ended in the last {final} % of its steps "
            "(end x 0.9, end] (its last game if none did), then the mean over seeds. A run in progress enters with "
            "the score it has reached (listed in the notes; the steps column gives the fewest steps of any seed).",
            "- **AUC**: per run, the mean of its smoothed curve over the grid steps inside its range (area under the "
            "curve divided by its length: higher when it learned faster or scored higher), then the mean over seeds.",
            f"- **Confidence intervals**: {confidence} % percentile bootstrap over seeds, {report.resamples:,} "
            f"resamples, seeded (seed {report.seed}): seeds are resampled with replacement and the 2.5th and "
            "97.5th percentiles of the resampled means are the interval. Differences are this arch minus "
            f"`{report.baseline}`, each group's seeds resampled independently. The curves' bands use the same "
            "bootstrap at each grid step over the seeds with data there. One seed: no interval. With few seeds "
            "the percentile bootstrap is too narrow by construction (no resample reaches beyond the observed "
            "values; 3 seeds give 10 distinct resamples): below 5 seeds read the intervals and verdicts as "
            "indications, not tests.",
            f"- **Verdict**: `better` when the {confidence} % CI of the final-score difference or of the AUC "
            "difference lies above zero and neither lies below zero; `worse` in the mirror case; `similar` "
            f"otherwise. With a single seed on either side there is no CI: `{SINGLE_SEED_VERDICT}`. "
            f"`{NO_BASELINE_VERDICT}`: the game has no `{report.baseline}` runs. The headline's chance count sums, "
            "over the games with intervals, how often this rule calls a difference where there is none, simulated "
            "with normal seeds (`statistics.chance_verdict_rate`): "
            + ", ".join(f"{stats.chance_verdict_rate(n, n):.2f} of games at {n} seeds a side" for n in (2, 3, 5))
            + ".",
            f"- **Detectable difference**: the smallest true difference (final score / AUC) whose {confidence} % CI "
            f"lies above zero in at least {round(100 * stats.POWER)} % of repeated experiments with these seed "
            "counts, if both archs' runs spread like the runs here (normal scores with the pooled standard deviation "
            "of the two archs' seeds; `statistics.detectable_difference`, 2,000 simulated experiments of 1,000 "
            "resamples each, seeded). A `similar` then reads: no difference larger than this (in either "
            "direction, by symmetry). In standard deviations of one run: "
            + ", ".join(f"{stats.detectable_effect(n, n):.2f} at {n} seeds a side" for n in (2, 3, 5))
            + ".",
            "- **Aggregate over games** (Agarwal et al. 2021, as rliable computes them), over the games where every "
            "arch of the agent ran: human-normalized final scores (score - random) / (human - random); "
            "interquartile mean (IQM) = the mean of the middle 50 % of the pooled run scores "
            "(scipy.stats.trim_mean(x, 0.25)), its CI a stratified bootstrap (seeds resampled within each game, "
            f"{report.resamples:,} resamples, percentile); probability of improvement P(X > Y) = the mean over "
            "games of the Mann-Whitney statistic P(x > y) + 0.5 P(x = y) over all pairs of a seed of X and a seed "
            "of Y, its CI a stratified bootstrap resampling X's and Y's seeds independently.",
        ]
    )


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1 or value == 0:
        return f"{value:.2f}"
    # Two significant digits: human-normalized scores early in training are hundredths.
    return f"{value:.{1 - math.floor(math.log10(size))}f}"


def _with_ci(value: float, low: float, high: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if math.isnan(low):
        return f"{_number(value)} (no CI)"
    return f"{_number(value)} [{_number(low)}, {_number(high)}]"


def _detectable(row: Row) -> str:
    """'± 120 / ± 85': the differences in final score and AUC the verdict sees 80 % of the time."""
    if math.isnan(row.detectable_difference) and math.isnan(row.detectable_auc_difference):
        return "-"
    return f"± {_number(row.detectable_difference)} / ± {_number(row.detectable_auc_difference)}"


def agent_section(report: Report, agent: str) -> list[str]:
    """The markdown of one agent's comparison: the headline, the table (one row per game and
    arch) and the aggregate over games, as summary.md shows them (and docs/results.md quotes them)."""
    lines: list[str] = []
    lines += [f"**{line}** (vs {report.baseline})." for line in report.headlines[agent]] or [
        f"Only `{report.baseline}` ran: nothing to compare."
    ]
    lines += [
        "",
        f"| game | arch | seeds | steps | final score [95 % CI] | AUC [95 % CI] | final - {report.baseline} "
        f"[95 % CI] | AUC - {report.baseline} [95 % CI] | verdict | detectable (final / AUC) | eval score [95 % CI] |",
        "|---|---|---:|---:|---|---|---|---|---|---|---|",
    ]
    for row in [row for row in report.rows if row.agent == agent]:
        steps = f"{row.steps:,}"
        if row.incomplete_seeds:
            steps += f" ({row.incomplete_seeds} in progress)"
        verdict = row.verdict or "(baseline)"
        evaluation = _with_ci(row.eval_score, row.eval_low, row.eval_high)
        if row.eval_seeds and row.eval_seeds < row.seeds:
            evaluation += f" ({row.eval_seeds} of {row.seeds} seeds)"
        lines.append(
            f"| {row.game} | {row.arch} | {row.seeds} | {steps} | "
            f"{_with_ci(row.final_score, row.final_low, row.final_high)} | {_with_ci(row.auc, row.auc_low, row.auc_high)} | "
            f"{_with_ci(row.difference, row.difference_low, row.difference_high)} | "
            f"{_with_ci(row.auc_difference, row.auc_difference_low, row.auc_difference_high)} | "
            f"{verdict} | {_detectable(row)} | {evaluation} |"
        )
    aggregates = [aggregate for aggregate in report.aggregates if aggregate.agent == agent]
    if aggregates:
        kind = "human-normalized final scores" if aggregates[0].normalized else "final scores (not normalized)"
        lines += [
            "",
            f"### Aggregate over games: {kind}",
            "",
            f"Games: {', '.join(aggregates[0].games)}.",
            "",
            f"| arch | runs | IQM [95 % CI] | P({'arch'} > {report.baseline}) [95 % CI] |",
            "|---|---:|---|---|",
        ]
        for aggregate in aggregates:
            improvement = (
                "-"
                if aggregate.arch == report.baseline
                else _with_ci(aggregate.improvement, aggregate.improvement_low, aggregate.improvement_high)
            )
            lines.append(
                f"| {aggregate.arch} | {aggregate.runs} | "
                f"{_with_ci(aggregate.iqm, aggregate.iqm_low, aggregate.iqm_high)} | {improvement} |"
            )
    else:
        lines += ["", "No aggregate over games: no game where every arch ran (with reference scores)."]
    return lines


def summary_markdown(report: Report) -> str:
    """summary.md: headlines and table per agent, the aggregate over games, method, notes, files."""
    games = sorted({row.game for row in report.rows})
    agents = sorted(report.headlines)
    lines = [
        f"# Comparison report: {report.runs_dir}",
        "",
        f"Metric `{report.metric}` against agent steps; baseline `{report.baseline}`; "
        f"{sum(row.seeds for row in report.rows)} runs, {len(games)} game{'s' if len(games) != 1 else ''} "
        f"({', '.join(games)}), agent{'s' if len(agents) != 1 else ''} {', '.join(agents)}.",
        "",
        "![curves](curves.png)",
    ]
    for agent in agents:
        lines += ["", f"## {agent}", ""]
        lines += agent_section(report, agent)
    lines += ["", "## Method", "", method_text(report)]
    lines += ["", "## Notes on the runs", ""]
    lines += [f"- {note}" for note in report.notes] or ["- none: every run complete, every arch on every game."]
    lines += [
        "",
        "## Files",
        "",
        "- `summary.csv`: this table, one row per game, agent and arch (empty cells: no value).",
        "- `curves.png`, `curves.pdf`: the curves; `curves.csv`: their values and seeds per step.",
        "- `tensorboard/`: the curves as scalars (`<game>/<agent>/mean`, `lower`, `upper`, `seeds`; lower = upper "
        "= mean where one seed has data) with a custom-scalars layout: "
        "`tensorboard --logdir tensorboard`, tab Custom Scalars.",
        "",
    ]
    return "\n".join(lines)


def write_summary_csv(report: Report, path: Path | str) -> Path:
    """summary.csv: one row per game, agent and arch, the columns of ``COLUMNS``; empty cell = no value."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in report.rows:
            writer.writerow(row.record())
    return path


def write_curves_csv(report: Report, path: Path | str) -> Path:
    """The plotted curves: one line per game, agent, arch and grid step with data."""
    path = Path(path)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["game", "agent", "arch", "step", "frames", "seeds", "mean", "low", "high"])
        for panel in report.panels:
            for curve in panel.curves.values():
                for index in np.flatnonzero(curve.seeds_per_step > 0):
                    step = int(panel.steps[index])
                    low, high = curve.low[index], curve.high[index]
                    writer.writerow(
                        [
                            panel.game,
                            panel.agent,
                            curve.arch,
                            step,
                            FRAMES_PER_STEP * step,
                            int(curve.seeds_per_step[index]),
                            float(curve.mean[index]),
                            "" if np.isnan(low) else float(low),
                            "" if np.isnan(high) else float(high),
                        ]
                    )
    return path


# ----------------------------------------------------------------------------------------------
# Figures and TensorBoard


def _steps_label(value: float, _position: object = None) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def plot_curves(report: Report) -> Figure:
    """One panel per game and agent: each arch's mean across seeds (line) and its 95 % CI (band,
    where at least two seeds have data), x in agent steps."""
    archs = sorted(
        {arch for panel in report.panels for arch in panel.curves}, key=lambda arch: (arch != report.baseline, arch)
    )
    colors = {arch: f"C{index}" for index, arch in enumerate(archs)}
    columns = min(3, len(report.panels))
    lines = math.ceil(len(report.panels) / columns)
    figure = Figure(figsize=(5.2 * columns, 3.8 * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()
    for axis, panel in zip(axes, report.panels):
        for arch, curve in panel.curves.items():
            shown = curve.seeds_per_step > 0
            seeds = len(curve.seeds)
            label = f"{arch} ({seeds} seed{'s' if seeds != 1 else ''}"
            full = np.flatnonzero(curve.seeds_per_step == seeds)
            if full.size and curve.seeds_per_step[-1] < seeds:  # seeds that stopped early
                label += f", {curve.seeds_per_step[-1]} after {_steps_label(panel.steps[full[-1]])} steps"
            axis.plot(panel.steps[shown], curve.mean[shown], color=colors[arch], label=label + ")")
            band = ~np.isnan(curve.low)
            if band.any():
                axis.fill_between(
                    panel.steps,
                    np.where(band, curve.low, curve.mean),
                    np.where(band, curve.high, curve.mean),
                    where=band,
                    color=colors[arch],
                    alpha=0.25,
                    linewidth=0,
                )
        axis.set_title(f"{panel.game} ({panel.agent})")
        axis.set_xlabel("agent steps (frames = 4 x steps)")
        axis.set_ylabel(report.metric)
        axis.xaxis.set_major_formatter(FuncFormatter(_steps_label))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    for axis in axes[len(report.panels) :]:
        axis.remove()
    # Two lines, so that a single 5.2-inch panel holds the title too.
    figure.suptitle(
        f"{report.metric}: mean across seeds, 95 % bootstrap CI\ntrailing window of "
        f"{round(100 * SMOOTHING_FRACTION)} % of the steps",
        fontsize=10,
    )
    return figure


def write_tensorboard(report: Report, folder: Path | str) -> Path:
    """The aggregated curves as TensorBoard runs ``folder/<game>/<agent>-<arch>``, scalars
    ``<game>/<agent>/mean``, ``lower``, ``upper`` (the 95 % CI; equal to the mean where one seed
    has data) and ``seeds`` at each grid step; each run carries the custom-scalars layout: one
    margin chart per game and agent, so every arch shows on one chart with its CI."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    layout: dict[str, dict[str, list]] = {}
    for panel in report.panels:
        prefix = f"{panel.game}/{panel.agent}"
        category = f"{panel.agent}: {report.metric}, mean across seeds with 95 % CI"
        layout.setdefault(category, {})[panel.game] = ["Margin", [f"{prefix}/mean", f"{prefix}/lower", f"{prefix}/upper"]]
    for panel in report.panels:
        prefix = f"{panel.game}/{panel.agent}"
        for arch, curve in panel.curves.items():
            writer = SummaryWriter(log_dir=str(folder / _safe(panel.game) / f"{_safe(panel.agent)}-{_safe(arch)}"))
            writer.add_custom_scalars(layout)
            for index in np.flatnonzero(curve.seeds_per_step > 0):
                step, mean = int(panel.steps[index]), float(curve.mean[index])
                has_ci = not np.isnan(curve.low[index])
                writer.add_scalar(f"{prefix}/mean", mean, step)
                writer.add_scalar(f"{prefix}/lower", float(curve.low[index]) if has_ci else mean, step)
                writer.add_scalar(f"{prefix}/upper", float(curve.high[index]) if has_ci else mean, step)
                writer.add_scalar(f"{prefix}/seeds", int(curve.seeds_per_step[index]), step)
            writer.close()
    return folder


def _safe(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)


def check_output_folder(folder: Path | str, *, overwrite: bool = False) -> Path:
    """Refuse a ``folder`` that is a file, or that holds files unless ``overwrite``.

    :raises FileExistsError: with what to do instead.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"--out {folder} is not empty; choose an empty or new folder, or pass --overwrite to replace the report there"
        )
    return folder


def prepare_output_folder(folder: Path | str, *, overwrite: bool = False) -> Path:
    """:func:`check_output_folder`, then remove the report's own outputs from ``folder`` (other
    files stay), so TensorBoard does not mix old and new curves, and create it."""
    folder = check_output_folder(folder, overwrite=overwrite)
    for name in OUTPUTS:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_report(report: Report, folder: Path | str, *, overwrite: bool = False) -> ReportFiles:
    """Write summary.csv, summary.md, curves.csv, curves.png, curves.pdf and tensorboard/ to ``folder``
    (refused when it is not empty, unless ``overwrite``)."""
    folder = prepare_output_folder(folder, overwrite=overwrite)
    figure = plot_curves(report)
    files = ReportFiles(
        folder / "summary.csv",
        folder / "summary.md",
        folder / "curves.csv",
        folder / "curves.png",
        folder / "curves.pdf",
        folder / "tensorboard",
    )
    figure.savefig(files.curves_png, dpi=120)
    figure.savefig(files.curves_pdf)
    write_summary_csv(report, files.summary_csv)
    write_curves_csv(report, files.curves_csv)
    files.summary_md.write_text(summary_markdown(report))
    write_tensorboard(report, files.tensorboard)
    return files
