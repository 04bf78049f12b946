"""summary.md: the report as text. Its headlines and table per agent (:func:`agent_section`, which
docs/results.md quotes), the aggregate over games, the method behind every number
(:func:`method_text`), the notes on the runs and the files."""

from __future__ import annotations

import math
from collections.abc import Callable

from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.curves import GRID_POINTS, SMOOTHING_FRACTION
from rl_coordconv.analysis.estimates import FINAL_FRACTION, NO_BASELINE_VERDICT, SINGLE_SEED_VERDICT, Estimate, Row
from rl_coordconv.analysis.report import Report


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


def _estimate(estimate: Estimate) -> str:
    return _with_ci(estimate.value, estimate.low, estimate.high)


def _steps(row: Row) -> str:
    steps = f"{row.steps:,}"
    return steps + f" ({row.incomplete_seeds} in progress)" if row.incomplete_seeds else steps


def _detectable(row: Row) -> str:
    """'± 120 / ± 85': the differences in final score and AUC the verdict sees 80 % of the time."""
    if math.isnan(row.detectable_difference) and math.isnan(row.detectable_auc_difference):
        return "-"
    return f"± {_number(row.detectable_difference)} / ± {_number(row.detectable_auc_difference)}"


def _evaluation(row: Row) -> str:
    text = _estimate(row.estimate("eval"))
    if row.eval_seeds and row.eval_seeds < row.seeds:
        text += f" ({row.eval_seeds} of {row.seeds} seeds)"
    return text


# The table of summary.md, one column each: header ({baseline}: the baseline arch), alignment, cell.
TABLE_COLUMNS: tuple[tuple[str, str, Callable[[Row], str]], ...] = (
    ("game", "---", lambda row: row.game),
    ("arch", "---", lambda row: row.arch),
    ("seeds", "---:", lambda row: str(row.seeds)),
    ("steps", "---:", _steps),
    ("final score [95 % CI]", "---", lambda row: _estimate(row.estimate("final"))),
    ("AUC [95 % CI]", "---", lambda row: _estimate(row.estimate("auc"))),
    ("final - {baseline} [95 % CI]", "---", lambda row: _estimate(row.estimate("difference"))),
    ("AUC - {baseline} [95 % CI]", "---", lambda row: _estimate(row.estimate("auc_difference"))),
    ("verdict", "---", lambda row: row.verdict or "(baseline)"),
    ("detectable (final / AUC)", "---", _detectable),
    ("eval score [95 % CI]", "---", _evaluation),
)


def agent_section(report: Report, agent: str) -> list[str]:
    """The markdown of one agent's comparison: the headline, the table (one row per game and
    arch) and the aggregate over games, as summary.md shows them (and docs/results.md quotes them)."""
    lines: list[str] = []
    lines += [f"**{line}** (vs {report.baseline})." for line in report.headlines[agent]] or [
        f"Only `{report.baseline}` ran: nothing to compare."
    ]
    headers = [header.format(baseline=report.baseline) for header, _, _ in TABLE_COLUMNS]
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "|".join(align for _, align, _ in TABLE_COLUMNS) + "|"]
    for row in [row for row in report.rows if row.agent == agent]:
        lines.append("| " + " | ".join(cell(row) for _, _, cell in TABLE_COLUMNS) + " |")
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
