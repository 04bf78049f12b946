"""The comparison report: statistics against hand computation, and reports built from synthetic
run directories (config.json as agents/experiment.py writes it, events from TensorBoard's writer)."""

import csv
import dataclasses
import itertools
import json
import shutil
import zipfile
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from rl_coordconv.agents.experiment import ExperimentConfig
from rl_coordconv.analysis import statistics as stats
from rl_coordconv.analysis.curves import GRID_POINTS, SMOOTHING_FRACTION
from rl_coordconv.analysis.estimates import COLUMNS, NO_BASELINE_VERDICT, SINGLE_SEED_VERDICT
from rl_coordconv.analysis.figures import plot_curves
from rl_coordconv.analysis.markdown import agent_section, summary_markdown
from rl_coordconv.analysis.rendering import write_report
from rl_coordconv.analysis.report import build_report
from rl_coordconv.analysis.runs import NoRunsError, find_runs, read_scalars
from rl_coordconv.commands import compare
from rl_coordconv.envs import GAMES

REFERENCES = {name: (game.random_score, game.human_score) for name, game in GAMES.items()}
TIMESTEPS = 10_000
EPISODE_STEPS = np.arange(100, TIMESTEPS + 1, 100)  # a game ends every 100 agent steps


# ------------------------------------------------------------------------------------------------
# Synthetic run directories


def write_run(
    root: Path,
    game: str,
    arch: str,
    seed: int,
    steps: np.ndarray,
    scores: np.ndarray,
    *,
    agent: str = "a2c",
    timesteps: int = TIMESTEPS,
    evaluation: float | None = None,
    precision: str = "fp32",
) -> Path:
    """A run directory as agents/experiment.py lays it out: config.json, tb/ events, evaluation.json."""
    config = ExperimentConfig(
        game=game, agent=agent, arch=arch, seed=seed, timesteps=timesteps, device="cpu", precision=precision
    )
    run_dir = (root if precision == "fp32" else root / precision) / game / f"{agent}-{arch}" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    record = {
        "config": dataclasses.asdict(config),
        "network": {
            "features_extractor": "NatureCNN" if arch == "conv" else "CoordConvNatureCNN",
            "conv_layers": ["Conv2d"] * 3,
            "policy_parameters": 1_687_206,
        },
        "resolved_device": "cpu",
        "versions": {"python": "3.11"},
        "git_commit": None,
        "command": ["scripts/train.py"],
        "written_at": "2025-01-01T00:00:00+0000",
    }
    (run_dir / "config.json").write_text(json.dumps(record, indent=2))
    writer = SummaryWriter(str(run_dir / "tb"))
    for step, score in zip(steps, scores):
        writer.add_scalar("episode/score", float(score), int(step))
    for step in range(0, int(steps[-1]) + 1, 2_000):
        writer.add_scalar("rollout/ep_rew_mean", 1.0, step)
    if evaluation is not None:
        writer.add_scalar("eval/mean_score", evaluation, int(steps[-1]))
        (run_dir / "evaluation.json").write_text(json.dumps({"timesteps": int(steps[-1]), "mean_score": evaluation}))
    writer.close()
    return run_dir


def synthetic_scores(game: str, arch: str, seed: int) -> np.ndarray:
    """MsPacman: coordconv 400 points above conv everywhere; Breakout: the two archs' seeds are
    the same three runs in another order (no difference)."""
    rng = np.random.default_rng(100 * seed + (game == "Breakout"))
    if game == "MsPacman":
        return (
            300
            + 0.05 * EPISODE_STEPS
            + 15 * seed
            + rng.normal(0, 20, EPISODE_STEPS.size)
            + (400 if arch == "coordconv" else 0)
        )
    source_seed = {"conv": seed, "coordconv": (seed + 1) % 3}[arch]
    return 2 + 0.002 * EPISODE_STEPS + 3 * source_seed + np.random.default_rng(source_seed).normal(0, 1, EPISODE_STEPS.size)


GRID = [(game, arch, seed) for game in ("MsPacman", "Breakout") for arch in ("conv", "coordconv") for seed in range(3)]
# Two games at 3 seeds a side, each called different by chance in 0.35 of games without a difference.
GRID_CHANCE = "; with no true difference, chance alone would make about 0.7 of the 2 games with intervals other than similar"


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for game, arch, seed in GRID:
        scores = synthetic_scores(game, arch, seed)
        write_run(root, game, arch, seed, EPISODE_STEPS, scores, evaluation=float(scores[-10:].mean()))
    (root / "README.txt").write_text("sweep of 2025-01-01")  # unrelated files are ignored
    return root


@pytest.fixture(scope="module")
def grid_report(grid_runs):
    return build_report(find_runs(grid_runs), baseline="conv", reference_scores=REFERENCES, seed=0)


def hand_final(scores: np.ndarray, steps: np.ndarray = EPISODE_STEPS) -> float:
    """Mean of the points written in the last 10 % of the run's steps."""
    end = steps[-1]
    return float(np.mean([score for step, score in zip(steps, scores) if step > 0.9 * end]))


def hand_curve(steps: np.ndarray, scores: np.ndarray, grid: np.ndarray, window: float, end: float) -> list[float]:
    """The documented smoothing rule with explicit loops: mean of the games that ended in
    (g - window, g], only for g inside [first game, end]."""
    curve = []
    for g in grid:
        inside = [score for step, score in zip(steps, scores) if g - window < step <= g]
        curve.append(float(np.mean(inside)) if steps[0] <= g <= end and inside else float("nan"))
    return curve


# ------------------------------------------------------------------------------------------------
# Statistics against hand computation


def exact_bootstrap_means(values) -> np.ndarray:
    """The mean of every one of the n^n equally likely resamples (the bootstrap distribution)."""
    return np.array([np.mean(sample) for sample in itertools.product(values, repeat=len(values))])


def assert_interval_of(interval, exact: np.ndarray, tolerance: float = 0.01) -> None:
    """``interval`` is the 2.5 % and 97.5 % quantiles of the equally likely values ``exact``: for a
    quantile q of a discrete distribution, P(X < q) <= p <= P(X <= q) (within Monte Carlo error)."""
    exact = np.asarray(exact)
    for value, p in zip(interval, (0.025, 0.975)):
        assert np.mean(exact < value) <= p + tolerance and np.mean(exact <= value) >= p - tolerance, (value, p)


def test_bootstrap_ci_matches_the_exact_bootstrap_distribution():
    values = [0.0, 1.0, 3.0, 7.0, 15.0]
    low, high = stats.bootstrap_ci(values, seed=0)
    assert_interval_of((low, high), exact_bootstrap_means(values))
    assert low == pytest.approx(1.0, abs=0.2) and high == pytest.approx(10.4, abs=0.3)  # exact: 1.0, 10.4
    assert stats.bootstrap_ci(values, seed=0) == (low, high)  # seeded
    # Columns (seeds, points) get the same interval as each column alone, with the same seed.
    columns = np.array([values, [10 + v for v in values], [2 * v for v in values]]).T
    lows, highs = stats.bootstrap_ci(columns, seed=0)
    assert lows == pytest.approx([low, low + 10, 2 * low]) and highs == pytest.approx([high, high + 10, 2 * high])


def test_difference_ci_resamples_each_group_independently():
    values, baseline = [2.0, 4.0, 9.0], [1.0, 2.0, 3.0]
    exact = np.subtract.outer(exact_bootstrap_means(values), exact_bootstrap_means(baseline)).ravel()
    low, high = stats.bootstrap_difference_ci(values, baseline, seed=0)
    assert_interval_of((low, high), exact)
    # values minus baseline: shifting the values up by 100 shifts the interval up by 100.
    shifted = stats.bootstrap_difference_ci([v + 100 for v in values], baseline, seed=0)
    assert shifted == pytest.approx((low + 100, high + 100))


def test_a_single_seed_has_no_interval():
    assert all(np.isnan(stats.bootstrap_ci([3.0])))
    assert all(np.isnan(stats.bootstrap_difference_ci([3.0], [1.0, 2.0])))
    assert all(np.isnan(stats.bootstrap_difference_ci([1.0, 2.0], [3.0])))


ABOVE, BELOW, STRADDLES, NONE = (1.0, 2.0), (-2.0, -1.0), (-1.0, 1.0), (float("nan"), float("nan"))


@pytest.mark.parametrize(
    "final, auc, expected",
    [
        (ABOVE, ABOVE, "better"),
        (ABOVE, STRADDLES, "better"),
        (STRADDLES, ABOVE, "better"),
        (BELOW, BELOW, "worse"),
        (BELOW, STRADDLES, "worse"),
        (STRADDLES, BELOW, "worse"),
        (STRADDLES, STRADDLES, "similar"),
        (ABOVE, BELOW, "similar"),
        (BELOW, ABOVE, "similar"),
        (NONE, NONE, "similar"),
        ((0.0, 1.0), (-1.0, 0.0), "similar"),  # touching zero is not above/below
    ],
)
def test_verdict_rule(final, auc, expected):
    assert stats.verdict(final, auc) == expected


def test_interquartile_mean_is_scipys_trim_mean_of_a_quarter():
    assert stats.interquartile_mean(np.arange(1, 9)) == 4.5  # mean of 3, 4, 5, 6
    assert stats.interquartile_mean([1, 2, 3, 4, 100]) == 3.0  # int(1.25) = 1 cut at each end
    assert stats.interquartile_mean([5, 1, 100, 2, 3, 4]) == 3.5  # int(1.5) = 1: mean of 2, 3, 4, 5
    assert stats.interquartile_mean([1, 2, 30]) == 11.0  # int(0.75) = 0: nothing cut
    assert stats.interquartile_mean(np.arange(10.0)) == 4.5  # int(2.5) = 2: mean of 2..7
    assert stats.interquartile_mean([[1, 8], [2, 7], [3, 6], [4, 5]]) == 4.5  # all runs pooled


def test_interquartile_mean_ci_is_a_stratified_bootstrap():
    # Each game keeps its number of seeds in every resample: the pooled scores never change here.
    assert stats.interquartile_mean_ci([[0.0, 0.0], [10.0, 10.0]], seed=0) == (5.0, 5.0)
    games = [[0.0, 4.0], [1.0, 9.0, 20.0]]
    exact = [
        stats.interquartile_mean(list(a) + list(b))
        for a in itertools.product(games[0], repeat=2)
        for b in itertools.product(games[1], repeat=3)
    ]
    assert_interval_of(stats.interquartile_mean_ci(games, seed=0), exact)


def test_probability_of_improvement_by_hand():
    # Game 1: x=1 beats 0 (1); x=2 beats 0, ties 2 (1.5); x=3 beats 0 and 2 (2): 4.5 of 9 pairs.
    # Game 2: every x beats every y: 1. Mean over games: 0.75.
    x, y = [[1, 2, 3], [5, 6]], [[0, 2, 4], [1, 2]]
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.75)
    assert stats.probability_of_improvement(y, x) == pytest.approx(0.25)
    assert stats.probability_of_improvement([[1, 2]], [[1, 2]]) == 0.5
    assert stats.probability_of_improvement_ci([[5, 6], [3, 4]], [[1, 2], [0, 1]], seed=0) == (1.0, 1.0)


def test_human_normalized_scores():
    random_score, human_score = REFERENCES["MsPacman"]
    assert (random_score, human_score) == (307.3, 6951.6)
    assert stats.human_normalized(random_score, random_score, human_score) == 0
    assert stats.human_normalized(human_score, random_score, human_score) == pytest.approx(1)
    assert stats.human_normalized([-20.7, -3.05], *REFERENCES["Pong"]) == pytest.approx([0.0, 0.5])


def test_smoothing_and_grid_never_extrapolate():
    steps, values = np.array([10, 20, 30, 60]), np.array([1.0, 2.0, 3.0, 6.0])
    assert stats.window_means(steps, values, np.array([5, 20, 30, 45, 60]), 15) == pytest.approx(
        [np.nan, 1.5, 2.5, np.nan, 6.0], nan_ok=True
    )
    # Grid 0..80 by 10, window 15, run logged up to step 60: 40's window (25, 40] holds the game of
    # step 30; 50's window is empty inside the range (interpolated between 40 and 60); 0 is before
    # the first game, 70 and 80 after the run's end.
    curve = stats.curve_on_grid(steps, values, np.arange(0, 81, 10), 15, end=60)
    assert curve == pytest.approx([np.nan, 1.0, 1.5, 2.5, 3.0, 4.5, 6.0, np.nan, np.nan], nan_ok=True)
    assert stats.final_window_mean(steps, values, end=100) == 6.0  # no game after 90: the last one
    assert stats.final_window_mean(np.arange(1, 21), np.arange(1.0, 21), end=20) == 19.5  # steps 19, 20


def test_read_scalars_keeps_every_point(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step in range(12_000):  # more than the 10,000 the accumulator keeps by default
        writer.add_scalar("episode/score", step, step // 2)  # two games end at each step
    writer.close()
    series = read_scalars(tmp_path)["episode/score"]
    assert len(series) == 12_000 and series.values.sum() == sum(range(12_000))
    assert np.all(np.diff(series.steps) >= 0)


# ------------------------------------------------------------------------------------------------
# Reports from synthetic runs


def test_final_scores_are_the_means_of_the_last_tenth_of_each_run(grid_report):
    for game, arch in itertools.product(("MsPacman", "Breakout"), ("conv", "coordconv")):
        row = grid_report.row(game, "a2c", arch)
        finals = [hand_final(synthetic_scores(game, arch, seed)) for seed in range(3)]
        assert row.final_scores == pytest.approx(finals)
        assert row.final_score == pytest.approx(np.mean(finals))
        assert row.final_low < row.final_score < row.final_high
        assert (row.seed_list, row.steps, row.incomplete_seeds) == ([0, 1, 2], TIMESTEPS, 0)
        assert row.eval_score == pytest.approx(np.mean([synthetic_scores(game, arch, s)[-10:].mean() for s in range(3)]))


def test_curves_and_auc_follow_the_smoothing_rule(grid_report):
    panel = grid_report.panel("MsPacman", "a2c")
    assert len(panel.steps) == GRID_POINTS and panel.steps[-1] == TIMESTEPS
    assert panel.window == SMOOTHING_FRACTION * TIMESTEPS
    curve = panel.curves["coordconv"]
    by_hand = np.array(
        [
            hand_curve(EPISODE_STEPS, synthetic_scores("MsPacman", "coordconv", seed), panel.steps, panel.window, TIMESTEPS)
            for seed in range(3)
        ]
    )
    assert curve.runs == pytest.approx(by_hand, nan_ok=True)
    assert curve.mean == pytest.approx(by_hand.mean(axis=0), nan_ok=True)  # mean across seeds
    assert np.all(curve.seeds_per_step == 3)
    assert np.all(curve.low < curve.mean) and np.all(curve.mean < curve.high)
    assert grid_report.row("MsPacman", "a2c", "coordconv").aucs == pytest.approx(np.nanmean(by_hand, axis=1))


def test_verdicts_and_differences_against_the_baseline(grid_report):
    better = grid_report.row("MsPacman", "a2c", "coordconv")
    conv = grid_report.row("MsPacman", "a2c", "conv")
    assert better.difference == pytest.approx(better.final_score - conv.final_score)
    assert better.difference == pytest.approx(400, abs=15) and 0 < better.difference_low < better.difference_high
    assert better.auc_difference == pytest.approx(400, abs=15) and better.auc_difference_low > 0
    assert better.verdict == "better"
    same = grid_report.row("Breakout", "a2c", "coordconv")
    assert same.difference == pytest.approx(0, abs=1e-9)
    assert same.difference_low < 0 < same.difference_high and same.verdict == "similar"
    assert conv.verdict == "" and np.isnan(conv.difference)
    assert grid_report.headlines["a2c"] == [f"coordconv better on 1 of 2 games, similar on 1, worse on 0{GRID_CHANCE}"]


def test_swapping_the_baseline_mirrors_the_verdict(grid_runs):
    report = build_report(find_runs(grid_runs), baseline="coordconv", reference_scores=REFERENCES, seed=0)
    conv = report.row("MsPacman", "a2c", "conv")
    assert conv.verdict == "worse" and conv.difference_high < 0
    assert report.headlines["a2c"] == [f"conv better on 0 of 2 games, similar on 1, worse on 1{GRID_CHANCE}"]
    with pytest.raises(ValueError, match="baseline arch 'coordconv_r' has no runs.*archs found: conv, coordconv"):
        build_report(find_runs(grid_runs), baseline="coordconv_r")


def test_aggregate_over_games_uses_human_normalized_final_scores(grid_report):
    def normalized(arch):
        return [
            stats.human_normalized(grid_report.row(game, "a2c", arch).final_scores, *REFERENCES[game])
            for game in ("Breakout", "MsPacman")
        ]

    aggregates = {aggregate.arch: aggregate for aggregate in grid_report.aggregates}
    for arch in ("conv", "coordconv"):
        pooled = np.sort(np.concatenate(normalized(arch)))  # 6 runs: int(1.5) = 1 cut at each end
        assert aggregates[arch].iqm == pytest.approx(pooled[1:5].mean())
        assert aggregates[arch].iqm_low <= aggregates[arch].iqm <= aggregates[arch].iqm_high
        assert aggregates[arch].normalized and aggregates[arch].games == ["Breakout", "MsPacman"]
    # MsPacman: every coordconv seed beats every conv seed (1); Breakout: the same runs (0.5).
    assert aggregates["coordconv"].improvement == pytest.approx(0.75)
    assert np.isnan(aggregates["conv"].improvement)


def test_report_files(grid_report, tmp_path):
    files = write_report(grid_report, tmp_path / "report")
    with files.summary_csv.open() as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        rows = {(row["game"], row["arch"]): row for row in reader}
    assert set(rows) == {(game, arch) for game, arch, _ in GRID}
    row = rows[("MsPacman", "coordconv")]
    assert float(row["final_score"]) == pytest.approx(grid_report.row("MsPacman", "a2c", "coordconv").final_score)
    assert (row["seeds"], row["steps"], row["verdict"]) == ("3", str(TIMESTEPS), "better")
    assert rows[("MsPacman", "conv")]["verdict"] == "" and rows[("MsPacman", "conv")]["difference"] == ""
    text = files.summary_md.read_text()
    assert f"**coordconv better on 1 of 2 games, similar on 1, worse on 0{GRID_CHANCE}** (vs conv)" in text
    assert "percentile bootstrap over seeds, 10,000 resamples" in text and "each group's seeds resampled independently" in text
    assert "lies above zero and neither lies below zero" in text
    assert "Aggregate over games: human-normalized final scores" in text and "P(arch > conv)" in text
    assert files.curves_pdf.read_bytes()[:4] == b"%PDF"
    image = matplotlib.image.imread(files.curves_png)
    assert image.shape[0] > 300 and image.shape[1] > 600 and image[..., :3].std() > 0.05


def test_the_figure_has_one_panel_per_game_and_agent(grid_report):
    figure = plot_curves(grid_report)
    panels = [axis for axis in figure.axes if axis.lines]
    assert len(panels) == 2
    assert sorted(axis.get_title() for axis in panels) == ["Breakout (a2c)", "MsPacman (a2c)"]
    for axis in panels:
        assert [line.get_label() for line in axis.lines] == ["conv (3 seeds)", "coordconv (3 seeds)"]
        assert len(axis.collections) == 2  # one CI band per arch
        assert "frames = 4 x steps" in axis.get_xlabel()


def test_tensorboard_holds_the_curves_and_a_margin_layout(grid_report, tmp_path):
    files = write_report(grid_report, tmp_path / "report")
    for game, arch in itertools.product(("MsPacman", "Breakout"), ("conv", "coordconv")):
        accumulator = EventAccumulator(str(files.tensorboard / game / f"a2c-{arch}"), size_guidance={"scalars": 0})
        accumulator.Reload()
        assert {f"{game}/a2c/{name}" for name in ("mean", "lower", "upper", "seeds")} <= set(accumulator.Tags()["scalars"])
        curve = grid_report.panel(game, "a2c").curves[arch]
        assert [event.value for event in accumulator.Scalars(f"{game}/a2c/mean")] == pytest.approx(curve.mean, rel=1e-6)
        assert [event.value for event in accumulator.Scalars(f"{game}/a2c/lower")] == pytest.approx(curve.low, rel=1e-6)
        layout = layout_pb2.Layout.FromString(accumulator.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
        charts = {chart.title: chart for category in layout.category for chart in category.chart}
        assert set(charts) == {"MsPacman", "Breakout"}
        series = charts[game].margin.series[0]
        assert (series.value, series.lower, series.upper) == (f"{game}/a2c/mean", f"{game}/a2c/lower", f"{game}/a2c/upper")


def test_unequal_lengths_in_progress_and_broken_runs_are_reported(tmp_path):
    short_steps = EPISODE_STEPS[EPISODE_STEPS <= 5_000]
    for arch, seed in itertools.product(("conv", "coordconv"), range(3)):
        scores = synthetic_scores("MsPacman", arch, seed)
        if arch == "coordconv" and seed == 1:  # half-way, no evaluation yet
            write_run(tmp_path, "MsPacman", arch, seed, short_steps, scores[: short_steps.size])
        else:
            write_run(tmp_path, "MsPacman", arch, seed, EPISODE_STEPS, scores, evaluation=1.0)
    crashed = write_run(tmp_path, "MsPacman", "coordconv", 3, EPISODE_STEPS, np.zeros(EPISODE_STEPS.size))
    for event_file in (crashed / "tb").iterdir():
        event_file.unlink()  # config.json and an empty tb/
    no_tb = tmp_path / "MsPacman" / "a2c-conv" / "seed7"
    no_tb.mkdir()
    (no_tb / "config.json").write_text((tmp_path / "MsPacman" / "a2c-conv" / "seed0" / "config.json").read_text())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text('{"lr": 0.1}')  # some other tool's config
    (tmp_path / "notes" / "plot.png").write_bytes(b"not a run")

    found = find_runs(tmp_path)
    assert len(found.runs) == 6
    notes = "\n".join(found.notes)
    assert "MsPacman a2c-coordconv seed1: in progress or stopped early, at 5,000 of 10,000 steps (50 %)" in notes
    assert "skipped MsPacman/a2c-coordconv/seed3: no TensorBoard event files" in notes
    assert "skipped MsPacman/a2c-conv/seed7: no TensorBoard event files" in notes
    assert "skipped notes: config.json without config.game" in notes

    report = build_report(found, reference_scores=REFERENCES, seed=0)
    panel, row = report.panel("MsPacman", "a2c"), report.row("MsPacman", "a2c", "coordconv")
    curve = panel.curves["coordconv"]
    assert np.all(curve.seeds_per_step[panel.steps <= 5_000] == 3)
    assert np.all(curve.seeds_per_step[panel.steps > 5_000] == 2)  # seed 1 is not extrapolated
    assert np.all(np.isnan(curve.runs[1][panel.steps > 5_000]))
    at_end = [
        hand_curve(EPISODE_STEPS, synthetic_scores("MsPacman", "coordconv", seed), [TIMESTEPS], panel.window, TIMESTEPS)[0]
        for seed in (0, 2)
    ]
    assert curve.mean[-1] == pytest.approx(np.mean(at_end))
    # The in-progress seed's final score is its own last tenth (steps 4,600..5,000).
    assert row.final_scores[1] == pytest.approx(hand_final(synthetic_scores("MsPacman", "coordconv", 1)[:50], short_steps))
    assert (row.steps, row.incomplete_seeds, row.eval_seeds) == (5_000, 1, 2)
    assert "seeds with data on the grid: 3 to 5,000, then 2 to 10,000 steps" in "\n".join(report.notes)
    assert "(1 in progress)" in summary_markdown(report)
    labels = [line.get_label() for line in plot_curves(report).axes[0].lines]
    assert labels == ["conv (3 seeds)", "coordconv (3 seeds, 2 after 5k steps)"]


def test_single_seed_and_missing_archs_are_reported(grid_runs, tmp_path):
    for game, arch, seed in GRID:
        if game == "MsPacman":
            write_run(tmp_path, game, arch, seed, EPISODE_STEPS, synthetic_scores(game, arch, seed))
    write_run(tmp_path, "Pong", "conv", 0, EPISODE_STEPS, np.full(EPISODE_STEPS.size, -20.0))
    write_run(tmp_path, "Pong", "coordconv", 0, EPISODE_STEPS, np.full(EPISODE_STEPS.size, -19.0))
    write_run(tmp_path, "Alien", "conv", 0, EPISODE_STEPS, np.full(EPISODE_STEPS.size, 300.0))
    write_run(tmp_path, "Alien", "conv", 1, EPISODE_STEPS, np.full(EPISODE_STEPS.size, 310.0))
    write_run(tmp_path, "Amidar", "coordconv", 0, EPISODE_STEPS, np.full(EPISODE_STEPS.size, 50.0))
    write_run(tmp_path, "Amidar", "coordconv", 1, EPISODE_STEPS, np.full(EPISODE_STEPS.size, 60.0))
    report = build_report(find_runs(tmp_path), reference_scores=REFERENCES, seed=0)

    pong = report.row("Pong", "a2c", "coordconv")
    assert pong.verdict == SINGLE_SEED_VERDICT and pong.difference == pytest.approx(1.0)
    assert all(np.isnan([pong.final_low, pong.final_high, pong.difference_low, pong.difference_high]))
    record = pong.record()
    assert [record[c] for c in ("final_low", "final_high", "difference_low", "difference_high")] == ["", "", "", ""]
    amidar = report.row("Amidar", "a2c", "coordconv")
    assert amidar.verdict == NO_BASELINE_VERDICT and np.isnan(amidar.difference)
    assert amidar.final_score == 55.0 and amidar.auc == pytest.approx(55.0)
    with pytest.raises(KeyError):
        report.row("Alien", "a2c", "coordconv")
    notes = "\n".join(report.notes)
    assert "Pong a2c-coordconv: 1 seed (seed 0): no confidence interval" in notes
    assert "Alien a2c: no coordconv runs: no coordconv result on this game" in notes
    assert "Amidar a2c: no conv (baseline) runs: no difference for coordconv on this game" in notes
    assert "aggregate for a2c: left out Alien, Amidar" in notes
    assert report.headlines["a2c"] == [
        "coordconv better on 1 of 2 games, similar on 1, worse on 0 (1 of the similar without a CI: 1 seed); "
        "with no true difference, chance alone would make about 0.3 of the 1 game with intervals other than similar; "
        "no conv runs to compare with on Amidar"
    ]
    assert {aggregate.games == ["MsPacman", "Pong"] for aggregate in report.aggregates} == {True}
    text = summary_markdown(report)
    assert "| Pong | coordconv | 1 | 10,000 | -19.0 (no CI) |" in text and SINGLE_SEED_VERDICT in text


def test_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoRunsError, match=r"no runs under .*empty; a run directory holds config.json"):
        find_runs(tmp_path / "empty")
    assert compare.main([str(tmp_path / "empty"), "--out", str(tmp_path / "report"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert f"error: no runs under {tmp_path / 'empty'}" in error and "<runs>/<game>/<agent>-<arch>/seed<k>/" in error


def test_script_writes_the_report_and_refuses_a_non_empty_out(grid_runs, tmp_path, capsys):
    out = tmp_path / "report"
    arguments = [str(grid_runs), "--out", str(out), "--no-progress", "--resamples", "2000"]
    assert compare.main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"Curves:      {out / 'curves.png'}" in printed and f"Summary:     {out / 'summary.md'}" in printed
    assert f"tensorboard --logdir {out / 'tensorboard'}" in printed
    assert f"a2c: coordconv better on 1 of 2 games, similar on 1, worse on 0{GRID_CHANCE} (vs conv)" in printed
    assert "Aggregate over games: human-normalized" in (out / "summary.md").read_text()  # the script passed GAMES
    before = (out / "summary.csv").read_text()
    assert compare.main(arguments) == 2
    assert "is not empty" in capsys.readouterr().err and (out / "summary.csv").read_text() == before
    assert compare.main([*arguments, "--overwrite"]) == 0
    assert len(list((out / "tensorboard" / "MsPacman" / "a2c-conv").glob("*tfevents*"))) == 1  # old curves removed
    capsys.readouterr()
    for bad in (["--seed", "-1"], ["--resamples", "0"]):
        assert compare.main([str(grid_runs), "--out", str(tmp_path / "other"), *bad]) == 2
        assert "error: --seed must be >= 0 (got " in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_report_cut_at_a_budget_reads_the_runs_as_they_stood_then(grid_runs, tmp_path):
    from rl_coordconv.analysis.runs import up_to

    cut = build_report(up_to(find_runs(grid_runs), 6_000), baseline="conv", reference_scores=REFERENCES, seed=0)
    for game, arch in itertools.product(("MsPacman", "Breakout"), ("conv", "coordconv")):
        row = cut.row(game, "a2c", arch)
        # the last tenth of 6,000 steps: the games that ended in (5,400, 6,000]
        finals = [float(np.mean(synthetic_scores(game, arch, seed)[54:60])) for seed in range(3)]
        assert row.final_scores == pytest.approx(finals)
        assert (row.steps, row.incomplete_seeds, row.eval_seeds) == (6_000, 0, 0)  # evaluated at 10,000: left out
    assert cut.panel("MsPacman", "a2c").steps[-1] == 6_000
    assert "every run is cut at 6,000 agent steps: the points logged after it are left out" in cut.notes
    assert "MsPacman a2c-conv seed0: left out evaluation.json (10,000 steps), after the cut" in cut.notes
    assert not any("steps of the cut" in note for note in cut.notes)  # every run reached 6,000
    at_the_end = build_report(up_to(find_runs(grid_runs), TIMESTEPS), baseline="conv", seed=0)
    assert at_the_end.row("MsPacman", "a2c", "conv").eval_seeds == 3  # evaluated at the cut itself: kept
    assert not any("after the cut" in note for note in at_the_end.notes)

    short = tmp_path / "short"
    write_run(short, "MsPacman", "conv", 0, EPISODE_STEPS[:40], synthetic_scores("MsPacman", "conv", 0)[:40])
    write_run(short, "MsPacman", "conv", 1, EPISODE_STEPS, synthetic_scores("MsPacman", "conv", 1))
    report = build_report(up_to(find_runs(short), 6_000), baseline="conv", seed=0)
    assert report.row("MsPacman", "a2c", "conv").incomplete_seeds == 1
    assert "MsPacman a2c-conv seed0: at 4,000 of the 6,000 steps of the cut" in report.notes
    with pytest.raises(ValueError, match="the steps to cut the runs at must be >= 1, got 0"):
        up_to(find_runs(short), 0)


def test_compare_until_cuts_the_runs_and_refuses_a_step_count_it_cannot_read(grid_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert compare.main([str(grid_runs), "--out", str(out), "--until", "6k", "--no-progress", "--resamples", "200"]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {row["steps"] for row in rows} == {"6000"}
    capsys.readouterr()
    assert compare.main([str(grid_runs), "--out", str(tmp_path / "other"), "--until", "six thousand"]) == 2
    assert "cannot read a step count from 'six thousand'" in capsys.readouterr().err and not (tmp_path / "other").exists()


# ------------------------------------------------------------------------------------------------
# What decides a verdict, an aggregate and a run's state


def learning_curve(rise_steps: float, plateau: float, seed: int) -> np.ndarray:
    """Scores that rise linearly to ``plateau`` over the first ``rise_steps`` and stay there: the
    seeds' plateaus 30 points apart, and a little noise."""
    noise = np.random.default_rng(seed).normal(0, 2, EPISODE_STEPS.size)
    return (plateau + 30 * (seed - 1)) * np.minimum(EPISODE_STEPS / rise_steps, 1.0) + noise


def two_arch_report(root: Path, conv: tuple[float, float], coordconv: tuple[float, float]):
    """MsPacman, 3 seeds per arch; each arch's curve ``(rise_steps, plateau)``."""
    for arch, (rise, plateau) in (("conv", conv), ("coordconv", coordconv)):
        for seed in range(3):
            write_run(root, "MsPacman", arch, seed, EPISODE_STEPS, learning_curve(rise, plateau, seed))
    return build_report(find_runs(root), reference_scores=REFERENCES, seed=0, resamples=2000)


def test_learning_faster_to_the_same_final_score_is_better(tmp_path):
    row = two_arch_report(tmp_path, conv=(8_000, 1000), coordconv=(2_000, 1000)).row("MsPacman", "a2c", "coordconv")
    assert row.difference_low < 0 < row.difference_high  # the same final score
    assert row.auc_difference_low > 100  # a clearly larger area under the curve
    assert row.verdict == "better"


def test_learning_slower_to_the_same_final_score_is_worse(tmp_path):
    row = two_arch_report(tmp_path, conv=(2_000, 1000), coordconv=(8_000, 1000)).row("MsPacman", "a2c", "coordconv")
    assert row.difference_low < 0 < row.difference_high
    assert row.auc_difference_high < -100
    assert row.verdict == "worse"


def test_a_higher_final_score_with_a_lower_auc_is_similar(tmp_path):
    # coordconv ends higher (1200 vs 800) but rises so late that its AUC is lower.
    row = two_arch_report(tmp_path, conv=(500, 800), coordconv=(9_500, 1200)).row("MsPacman", "a2c", "coordconv")
    assert row.difference_low > 300 and row.auc_difference_high < -100
    assert row.verdict == "similar"


def test_the_probability_of_improvement_and_its_interval_point_the_same_way(grid_runs):
    # MsPacman: every coordconv seed beats every conv seed; Breakout: the same runs in another order.
    for baseline, arch, side in (("conv", "coordconv", 1), ("coordconv", "conv", -1)):
        report = build_report(find_runs(grid_runs), baseline=baseline, reference_scores=REFERENCES, seed=0, resamples=2000)
        (aggregate,) = [aggregate for aggregate in report.aggregates if aggregate.arch == arch]
        assert aggregate.improvement == pytest.approx(0.5 + side * 0.25)
        low, high = aggregate.improvement_low, aggregate.improvement_high
        assert low <= aggregate.improvement <= high
        assert (low > 0.5) if side > 0 else (high < 0.5), (arch, low, high)


def stratified_iqm_interval(groups: list[np.ndarray], resamples: int, seed: int) -> tuple[float, float]:
    """rliable's stratified bootstrap of the IQM, written out: each game's runs resampled within
    the game, scipy's trim_mean of a quarter of the pooled resample, the 2.5th and 97.5th percentiles."""
    from scipy.stats import trim_mean

    rng = np.random.default_rng(seed)
    resampled = [group[rng.integers(0, group.size, size=(resamples, group.size))] for group in groups]
    pooled = np.concatenate(resampled, axis=1)
    values = [trim_mean(sample, 0.25) for sample in pooled]
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_the_iqm_interval_of_several_games_is_the_stratified_bootstrap_written_out(grid_report):
    """2 games x 3 seeds: 6 runs pooled, int(0.25 * 6) = 1 cut at each end of every resample."""
    references = {"MsPacman": (307.3, 6951.6), "Breakout": (1.7, 30.5)}
    for aggregate in grid_report.aggregates:
        groups = [
            (np.array([hand_final(synthetic_scores(game, aggregate.arch, seed)) for seed in range(3)]) - references[game][0])
            / (references[game][1] - references[game][0])
            for game in ("Breakout", "MsPacman")
        ]
        assert (aggregate.iqm_low, aggregate.iqm_high) == pytest.approx(
            stratified_iqm_interval(groups, 10_000, seed=0), rel=1e-6
        )


@pytest.mark.parametrize("seeds", [3, 2, 1])
def test_the_iqm_and_its_interval_with_few_runs(tmp_path, seeds):
    from scipy.stats import trim_mean

    for arch, seed in itertools.product(("conv", "coordconv"), range(seeds)):
        write_run(tmp_path, "MsPacman", arch, seed, EPISODE_STEPS, synthetic_scores("MsPacman", arch, seed))
    report = build_report(find_runs(tmp_path), reference_scores=REFERENCES, seed=0, resamples=2000)
    random_score, human_score = 307.3, 6951.6  # Ms. Pac-Man's references (Mnih et al. 2015)
    for aggregate in report.aggregates:
        finals = np.array([hand_final(synthetic_scores("MsPacman", aggregate.arch, seed)) for seed in range(seeds)])
        normalized = (finals - random_score) / (human_score - random_score)
        assert aggregate.runs == seeds
        assert aggregate.iqm == pytest.approx(trim_mean(normalized, 0.25))
        if seeds == 1:
            assert np.isnan(aggregate.iqm_low) and np.isnan(aggregate.iqm_high)
        else:
            assert (aggregate.iqm_low, aggregate.iqm_high) == pytest.approx(
                stratified_iqm_interval([normalized], 2000, seed=0)
            )
            assert np.isfinite([aggregate.iqm_low, aggregate.iqm_high]).all()
    (coordconv,) = [aggregate for aggregate in report.aggregates if aggregate.arch == "coordconv"]
    assert coordconv.improvement == 1.0  # +400 points in every seed
    assert np.isnan(coordconv.improvement_low) == (seeds == 1)
    table = summary_markdown(report).split("### Aggregate over games")[1]
    iqm_cells = [
        line.split(" | ")[2] for line in table.splitlines() if line.startswith("| conv") or line.startswith("| coordconv")
    ]
    assert all(cell.endswith("(no CI)") == (seeds == 1) for cell in iqm_cells), iqm_cells
    assert all(("[" in cell) == (seeds > 1) for cell in iqm_cells), iqm_cells


def test_every_column_of_summary_csv(grid_report, tmp_path):
    files = write_report(grid_report, tmp_path / "report")
    with files.summary_csv.open() as file:
        rows = {(row["game"], row["arch"]): row for row in csv.DictReader(file)}
    references = {"MsPacman": (307.3, 6951.6), "Breakout": (1.7, 30.5)}  # random, human (Mnih et al. 2015)
    for (game, arch), row in rows.items():
        finals = np.array([hand_final(synthetic_scores(game, arch, seed)) for seed in range(3)])
        base_finals = np.array([hand_final(synthetic_scores(game, "conv", seed)) for seed in range(3)])
        evaluations = [synthetic_scores(game, arch, seed)[-10:].mean() for seed in range(3)]
        panel = grid_report.panel(game, "a2c")
        aucs = [
            np.nanmean(hand_curve(EPISODE_STEPS, synthetic_scores(game, arch, seed), panel.steps, panel.window, TIMESTEPS))
            for seed in range(3)
        ]
        base_aucs = [
            np.nanmean(hand_curve(EPISODE_STEPS, synthetic_scores(game, "conv", seed), panel.steps, panel.window, TIMESTEPS))
            for seed in range(3)
        ]
        random_score, human_score = references[game]
        expected = {
            "game": game,
            "agent": "a2c",
            "arch": arch,
            "seeds": 3,
            "steps": TIMESTEPS,
            "seed_list": "0 1 2",
            "configured_steps": TIMESTEPS,
            "incomplete_seeds": 0,
            "eval_seeds": 3,
            "final_score": finals.mean(),
            "auc": np.mean(aucs),
            "eval_score": np.mean(evaluations),
            "human_normalized_final": np.mean((finals - random_score) / (human_score - random_score)),
        }
        for name, values in (("final", finals), ("auc", aucs), ("eval", evaluations)):
            expected[f"{name}_low"], expected[f"{name}_high"] = stats.bootstrap_ci(values, resamples=10_000, seed=0)
        if arch == "conv":
            expected.update({column: "" for column in COLUMNS if "difference" in column}, verdict="")
        else:
            expected["difference"] = finals.mean() - base_finals.mean()
            expected["auc_difference"] = np.mean(aucs) - np.mean(base_aucs)
            expected["difference_low"], expected["difference_high"] = stats.bootstrap_difference_ci(
                finals, base_finals, resamples=10_000, seed=0
            )
            expected["auc_difference_low"], expected["auc_difference_high"] = stats.bootstrap_difference_ci(
                aucs, base_aucs, resamples=10_000, seed=0
            )
            expected["verdict"] = {"MsPacman": "better", "Breakout": "similar"}[game]
            for column, (ours, theirs) in (
                ("detectable_difference", (finals, base_finals)),
                ("detectable_auc_difference", (aucs, base_aucs)),
            ):
                pooled = np.sqrt((np.var(ours, ddof=1) + np.var(theirs, ddof=1)) / 2)  # 3 seeds a side
                expected[column] = stats.detectable_effect(3, 3) * pooled
        assert set(expected) == set(COLUMNS)
        for column in COLUMNS:
            value = expected[column]
            if isinstance(value, (float, np.floating)):
                assert float(row[column]) == pytest.approx(value, rel=1e-6, abs=1e-9), (
                    game,
                    arch,
                    column,
                )  # events hold float32
            else:
                assert row[column] == str(value), (game, arch, column)


def test_the_report_uses_the_latest_checkpoints_evaluation_and_says_which(grid_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(grid_runs, root)
    run_dir = root / "MsPacman" / "a2c-conv" / "seed0"
    (run_dir / "evaluation_5000.json").write_text(json.dumps({"timesteps": 5_000, "episodes": 30, "mean_score": -1.0}))
    (run_dir / "evaluation_10000.json").write_text(json.dumps({"timesteps": 10_000, "episodes": 30, "mean_score": 123.0}))
    # At the same checkpoint, the evaluation over more games wins, whichever file holds it.
    seed1 = root / "MsPacman" / "a2c-conv" / "seed1"
    final = json.loads((seed1 / "evaluation.json").read_text())
    (seed1 / "evaluation.json").write_text(json.dumps({**final, "episodes": 30}))
    (seed1 / "evaluation_10000.json").write_text(json.dumps({"timesteps": 10_000, "episodes": 5, "mean_score": -7.0}))
    report = build_report(find_runs(root), reference_scores=REFERENCES, seed=0, resamples=2000)
    others = [synthetic_scores("MsPacman", "conv", seed)[-10:].mean() for seed in (1, 2)]
    assert report.row("MsPacman", "a2c", "conv").eval_score == pytest.approx(np.mean([123.0, *others]))
    notes = "\n".join(report.notes)
    assert (
        "MsPacman a2c-conv seed0: evaluated 3 times (evaluation_5000.json (5,000 steps, 30 games), "
        "evaluation.json (10,000 steps, 0 games), evaluation_10000.json (10,000 steps, 30 games)); "
        "the report uses evaluation_10000.json, the latest checkpoint's"
    ) in notes


def test_a_copied_run_counts_once_the_longer_copy_wins(grid_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(grid_runs, root)
    short = root / "copy" / "MsPacman" / "a2c-conv" / "seed0"
    write_run(root / "copy", "MsPacman", "conv", 0, EPISODE_STEPS[:50], np.full(50, -5000.0))
    found = find_runs(root)
    assert len(found.runs) == len(GRID)
    (kept,) = [run for run in found.runs if run.name == "MsPacman a2c-conv seed0"]
    assert kept.path == root / "MsPacman" / "a2c-conv" / "seed0" and kept.last_step == TIMESTEPS
    assert (
        "MsPacman a2c-conv seed0 appears twice: kept MsPacman/a2c-conv/seed0 (10,000 steps), "
        f"ignored {short.relative_to(root)} (5,000 steps)"
    ) in found.notes
    report = build_report(found, reference_scores=REFERENCES, seed=0, resamples=2000)
    assert report.row("MsPacman", "a2c", "conv").final_scores[0] == pytest.approx(
        hand_final(synthetic_scores("MsPacman", "conv", 0))
    )


def test_a_run_checkpointed_at_its_steps_is_finished_though_its_last_scalar_is_earlier(tmp_path):
    """Finished means what the sweep means (rundir.run_state): trained to its steps and evaluated."""
    from rl_coordconv.rundir import RunState, run_state

    last_game = EPISODE_STEPS[EPISODE_STEPS <= 9_000]  # no game ended in its last 1,000 steps
    run_dir = write_run(tmp_path, "MsPacman", "conv", 0, last_game, np.full(last_game.size, 500.0), evaluation=500.0)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    (run_dir / "evaluation.json").write_text(json.dumps({**evaluation, "timesteps": TIMESTEPS}))
    (run_dir / "checkpoints").mkdir()
    with zipfile.ZipFile(run_dir / "checkpoints" / f"model_{TIMESTEPS}_steps.zip", "w") as archive:
        archive.writestr("data", "{}")
    (run,) = find_runs(tmp_path).runs
    assert run.last_step == 9_000 < TIMESTEPS
    assert run.finished and not run.in_progress
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.FINISHED
    assert not any("in progress" in note for note in find_runs(tmp_path).notes)
    # The same run without its final evaluation: trained, not finished, for the report as for the sweep.
    (run_dir / "evaluation.json").unlink()
    (run,) = find_runs(tmp_path).runs
    assert not run.finished and not run.in_progress
    assert run_state(run_dir, TIMESTEPS, eval_episodes=10) == RunState.RESUMABLE
    assert "MsPacman a2c-conv seed0: trained to 10,000 steps, but its final evaluation is missing" in "\n".join(
        find_runs(tmp_path).notes
    )


def test_with_two_seeds_a_side_chance_alone_calls_half_the_games():
    """With two seeds a side the percentile interval of a difference runs from (min - max) to
    (max - min) of the two groups' seeds: a metric calls a difference when both seeds of one arch
    lie above both of the other, 4 of the 24 orderings of four values (1/6 per direction). A game
    stays "similar" when neither metric calls one (4/6 x 4/6) or they call opposite directions
    (2 x 1/6 x 1/6): 1/2 of the games. Without an interval (one seed) nothing is called."""
    assert stats.chance_verdict_rate(2, 2) == pytest.approx(0.5, abs=0.04)
    assert stats.chance_verdict_rate(1, 3) == stats.chance_verdict_rate(3, 1) == 0.0
    assert stats.chance_verdict_rate(5, 5) < stats.chance_verdict_rate(3, 3) < stats.chance_verdict_rate(2, 2)


def test_with_two_seeds_a_side_the_detectable_difference_is_the_ordering_integral():
    """With two seeds a side the difference's interval lies above zero exactly when both seeds of
    the arch lie above both of the baseline's (see above). For normal scores with the arch shifted
    by d standard deviations that happens with probability
    P(min(X1, X2) > max(Y1, Y2)) = integral of (1 - Phi(t - d))^2 * 2 Phi(t) phi(t) dt,
    1/6 at d = 0; it reaches 80 % at d = 2.10."""
    from scipy import integrate, optimize
    from scipy.stats import norm

    def ordered(d):
        density = lambda t: (1 - norm.cdf(t - d)) ** 2 * 2 * norm.cdf(t) * norm.pdf(t)  # noqa: E731
        return integrate.quad(density, -np.inf, np.inf)[0]

    assert ordered(0) == pytest.approx(1 / 6)
    reference = optimize.brentq(lambda d: ordered(d) - 0.8, 0, 10)
    assert reference == pytest.approx(2.10, abs=0.01)
    assert stats.detectable_effect(2, 2) == pytest.approx(reference, abs=0.06)


def test_the_detectable_difference_shrinks_as_seeds_grow():
    effects = [stats.detectable_effect(n, n) for n in (2, 3, 5, 10)]
    assert effects == sorted(effects, reverse=True) and len(set(effects)) == 4, effects
    assert effects[-1] < 1.3  # ten seeds a side see about 1.2 standard deviations
    assert stats.detectable_effect(3, 3) < stats.detectable_effect(3, 2) < stats.detectable_effect(2, 2)
    assert np.isnan(stats.detectable_effect(1, 5)) and np.isnan(stats.detectable_effect(5, 1))
    with pytest.raises(ValueError, match="power must be in"):
        stats.detectable_effect(3, 3, power=80)


def test_the_detectable_difference_scales_with_the_pooled_spread_of_the_runs():
    # Sample variances 50 (baseline) and 200, 1 degree of freedom each: pooled sd sqrt(125).
    baseline, values = [100.0, 110.0], [200.0, 220.0]
    assert stats.pooled_standard_deviation(values, baseline) == pytest.approx(np.sqrt(125))
    assert stats.detectable_difference(values, baseline) == pytest.approx(stats.detectable_effect(2, 2) * np.sqrt(125))
    # Three against two: ((3 - 1) * 100 + (2 - 1) * 50) / 3, whatever the means.
    assert stats.pooled_standard_deviation([0.0, 10.0, 20.0], [7.0, 17.0]) == pytest.approx(np.sqrt(250 / 3))
    assert np.isnan(stats.detectable_difference([1.0], [2.0, 3.0]))


def test_the_table_states_the_detectable_differences(grid_report):
    row = grid_report.row("MsPacman", "a2c", "coordconv")
    base = grid_report.row("MsPacman", "a2c", "conv")
    spread = np.sqrt((np.var(row.final_scores, ddof=1) + np.var(base.final_scores, ddof=1)) / 2)
    assert row.detectable_difference == pytest.approx(stats.detectable_effect(3, 3) * spread)
    assert np.isnan(base.detectable_difference)
    table = "\n".join(agent_section(grid_report, "a2c"))
    assert "| detectable (final / AUC) |" in table
    cells = [line.split(" | ") for line in table.splitlines() if line.startswith("| MsPacman | coordconv")]
    assert cells[0][9] == f"± {row.detectable_difference:.1f} / ± {row.detectable_auc_difference:.1f}", cells


def test_the_chance_count_takes_each_sides_seeds(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "MsPacman", "coordconv", seed, EPISODE_STEPS, synthetic_scores("MsPacman", "coordconv", seed))
    for seed in range(2):
        write_run(tmp_path, "MsPacman", "conv", seed, EPISODE_STEPS, synthetic_scores("MsPacman", "conv", seed))
    report = build_report(find_runs(tmp_path), reference_scores=REFERENCES, seed=0, resamples=2000)
    # 3 against 2 seeds: 0.43 of games (0.35 at 3 a side, 0.49 at 2 a side).
    assert report.headlines["a2c"] == [
        "coordconv better on 1 of 1 game, similar on 0, worse on 0; with no true "
        "difference, chance alone would make about 0.4 of the 1 game with intervals "
        "other than similar"
    ]


def test_one_seed_on_either_side_has_no_interval_and_says_so(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "MsPacman", "coordconv", seed, EPISODE_STEPS, synthetic_scores("MsPacman", "coordconv", seed))
    write_run(tmp_path, "MsPacman", "conv", 0, EPISODE_STEPS, synthetic_scores("MsPacman", "conv", 0))
    report = build_report(find_runs(tmp_path), reference_scores=REFERENCES, seed=0, resamples=2000)
    row = report.row("MsPacman", "a2c", "coordconv")
    assert row.verdict == SINGLE_SEED_VERDICT and np.isnan(row.difference_low)  # the baseline has one seed
    assert report.headlines["a2c"] == [
        "coordconv better on 0 of 1 game, similar on 1, worse on 0 (1 of the similar without a CI: 1 seed)"
    ]
    # The probability of improvement still has an interval: coordconv's 3 seeds are resampled.
    (coordconv,) = [aggregate for aggregate in report.aggregates if aggregate.arch == "coordconv"]
    assert coordconv.improvement == 1.0 and np.isfinite([coordconv.improvement_low, coordconv.improvement_high]).all()


def test_a_config_without_eval_episodes_was_evaluated_by_default(tmp_path):
    """Runs written before eval_episodes existed were evaluated over 10 games: without their
    evaluation they are not finished, whatever their checkpoints say."""
    run_dir = write_run(tmp_path, "MsPacman", "conv", 0, EPISODE_STEPS, synthetic_scores("MsPacman", "conv", 0))
    record = json.loads((run_dir / "config.json").read_text())
    del record["config"]["eval_episodes"]
    (run_dir / "config.json").write_text(json.dumps(record))
    (run_dir / "checkpoints").mkdir()
    with zipfile.ZipFile(run_dir / "checkpoints" / f"model_{TIMESTEPS}_steps.zip", "w") as archive:
        archive.writestr("data", "{}")
    (run,) = find_runs(tmp_path).runs
    assert not run.finished


def test_refresh_rewrites_a_pages_report_blocks_and_leaves_the_rest(grid_runs, tmp_path):
    from rl_coordconv.analysis.document import quoted_reports, refresh, stale_blocks

    root = tmp_path / "repo"
    shutil.copytree(grid_runs, root / "results" / "grid")
    page = root / "docs" / "page.md"
    page.parent.mkdir()
    text = (
        "# Page\n\nBefore.\n\n<!-- report: results/grid agent=a2c figure=figures/grid.png -->\nold numbers\n"
        "<!-- end report -->\n\nAfter.\n"
    )
    page.write_text(text)
    assert len(stale_blocks(page, root, REFERENCES)) == 1
    assert refresh(page, root, REFERENCES) == 1
    written = page.read_text()
    assert written.startswith("# Page\n\nBefore.\n\n<!-- report: results/grid agent=a2c figure=figures/grid.png -->\n")
    assert written.endswith("<!-- end report -->\n\nAfter.\n") and "old numbers" not in written
    assert "| MsPacman | coordconv | 3 |" in written and written.count("<!-- end report -->") == 1
    assert stale_blocks(page, root, REFERENCES) == [] and len(quoted_reports(page)) == 1
    assert (page.parent / "figures" / "grid.png").stat().st_size > 10_000


def test_table_numbers_keep_two_significant_digits_below_a_tenth():
    from rl_coordconv.analysis.markdown import _number

    assert [_number(v) for v in (1234.4, 12.34, 1.404, 0.56, 0.0123, -0.05, 0.00837, 0.0, float("nan"))] == [
        "1,234",
        "12.3",
        "1.40",
        "0.56",
        "0.012",
        "-0.050",
        "0.0084",
        "0.00",
        "-",
    ]


def test_bf16_runs_are_compared_with_their_fp32_twins_as_an_arch_of_their_own(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "Pong", "conv", seed, EPISODE_STEPS, np.full(len(EPISODE_STEPS), 10.0 + seed))
        write_run(tmp_path, "Pong", "conv", seed, EPISODE_STEPS, np.full(len(EPISODE_STEPS), 12.0 + seed), precision="bf16")
    found = find_runs(tmp_path)
    assert sorted((run.arch, run.seed) for run in found.runs) == [
        (arch, seed) for arch in ("conv", "conv-bf16") for seed in range(3)
    ]
    assert not any("appears twice" in note for note in found.notes)
    report = build_report(found, resamples=200)
    assert report.row("Pong", "a2c", "conv-bf16").difference == pytest.approx(2.0)
