"""The report's glue, against values written out by hand: how runs are grouped into rows and
panels, curves.csv, a page with several quoted reports, the metric fallback of ``compare`` and
the reference scores of the human normalization.

Every run here scores a constant per seed, so each number follows from the written-out values:
a curve is the run's constant from its first game on, and with two seeds a side every percentile
bootstrap interval runs from one seed's value to the other's (each end has probability 1/4 per
group, above the 2.5 % the percentile needs)."""

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from rl_coordconv.agents.experiment import ExperimentConfig
from rl_coordconv.analysis.document import quoted_reports, refresh, stale_blocks
from rl_coordconv.analysis.rendering import write_report
from rl_coordconv.analysis.report import build_report, reference_scores_for
from rl_coordconv.analysis.runs import FoundRuns, find_runs
from rl_coordconv.commands import compare

# (random, human) per game: the Nature DQN and dueling DQN papers' references.
SUITE_REFERENCES = {
    "MsPacman": (307.3, 6951.6),
    "Alien": (227.8, 7127.7),
    "Amidar": (5.8, 1719.5),
    "BankHeist": (14.2, 753.1),
    "Seaquest": (68.4, 42054.7),
    "SpaceInvaders": (148.0, 1668.7),
    "Asterix": (210.0, 8503.3),
    "Breakout": (1.7, 30.5),
    "Pong": (-20.7, 14.6),
}
FALLBACK_NOTE = "note: no run has finished a game yet (episode/score); comparing eval/mean_score instead"


def write_run(
    root: Path, game: str, agent: str, arch: str, seed: int, scalars: dict[str, float], end: int = 1000, timesteps: int = 1000
) -> None:
    """A run directory (config.json, tb/) whose every tag in ``scalars`` holds its constant value
    at steps 100, 200, ..., ``end``."""
    config = ExperimentConfig(game=game, agent=agent, arch=arch, seed=seed, timesteps=timesteps, device="cpu")
    run_dir = root / game / f"{agent}-{arch}" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": dataclasses.asdict(config)}))
    writer = SummaryWriter(str(run_dir / "tb"))
    for tag, value in scalars.items():
        for step in range(100, end + 1, 100):
            writer.add_scalar(tag, value, step)
    writer.close()


# ------------------------------------------------------------------------------------------------
# Grouping: one row per game, agent and arch; seeds ascending; the baseline first


def test_runs_are_grouped_by_agent_game_and_arch_with_their_seeds_in_order(tmp_path):
    scores = {  # (game, agent, arch) -> {seed: score}
        ("MsPacman", "a2c", "conv"): {10: 1010.0, 2: 1002.0},  # seed10 lists before seed2 by name
        ("MsPacman", "a2c", "addcoords"): {0: 1200.0, 1: 1202.0},
        ("MsPacman", "a2c", "coordconv"): {0: 1500.0, 1: 1502.0},
        ("Breakout", "a2c", "conv"): {0: 10.0, 1: 12.0},
        ("Breakout", "a2c", "coordconv"): {0: 20.0, 1: 22.0},
        ("MsPacman", "apex", "conv"): {0: 3000.0, 1: 3002.0},
        ("MsPacman", "apex", "coordconv"): {0: 3500.0, 1: 3502.0},
    }
    for (game, agent, arch), by_seed in scores.items():
        for seed, score in by_seed.items():
            write_run(tmp_path, game, agent, arch, seed, {"episode/score": score})
    found = find_runs(tmp_path, progress=False)
    # The report orders runs itself, whatever order they come in.
    report = build_report(FoundRuns(found.root, found.runs[::-1], found.notes), resamples=2000)

    assert [(row.game, row.agent, row.arch, row.seed_list, list(row.final_scores)) for row in report.rows] == [
        ("Breakout", "a2c", "conv", [0, 1], [10.0, 12.0]),
        ("Breakout", "a2c", "coordconv", [0, 1], [20.0, 22.0]),
        ("MsPacman", "a2c", "conv", [2, 10], [1002.0, 1010.0]),
        ("MsPacman", "a2c", "addcoords", [0, 1], [1200.0, 1202.0]),
        ("MsPacman", "a2c", "coordconv", [0, 1], [1500.0, 1502.0]),
        ("MsPacman", "apex", "conv", [0, 1], [3000.0, 3002.0]),
        ("MsPacman", "apex", "coordconv", [0, 1], [3500.0, 3502.0]),
    ]
    assert [(panel.game, panel.agent, list(panel.curves)) for panel in report.panels] == [
        ("Breakout", "a2c", ["conv", "coordconv"]),
        ("MsPacman", "a2c", ["conv", "addcoords", "coordconv"]),
        ("MsPacman", "apex", ["conv", "coordconv"]),
    ]
    # Each arch against the conv runs of its own game and agent: (difference, low, high).
    expected = {
        ("Breakout", "a2c", "coordconv"): (10.0, 8.0, 12.0),
        ("MsPacman", "a2c", "addcoords"): (195.0, 190.0, 200.0),
        ("MsPacman", "a2c", "coordconv"): (495.0, 490.0, 500.0),
        ("MsPacman", "apex", "coordconv"): (500.0, 498.0, 502.0),
    }
    for key, (difference, low, high) in expected.items():
        row = report.row(*key)
        assert (row.difference, row.difference_low, row.difference_high) == pytest.approx((difference, low, high)), key
        assert (row.auc_difference, row.auc_difference_low, row.auc_difference_high) == pytest.approx(
            (difference, low, high)
        ), key
        assert row.verdict == "better", key
    assert report.row("MsPacman", "a2c", "conv").verdict == "" and np.isnan(report.row("MsPacman", "a2c", "conv").difference)
    assert list(report.headlines) == ["a2c", "apex"]
    assert [line.split(";")[0] for line in report.headlines["a2c"]] == [
        "addcoords better on 1 of 1 game, similar on 0, worse on 0",
        "coordconv better on 2 of 2 games, similar on 0, worse on 0",
    ]
    assert "Breakout a2c: no addcoords runs: no addcoords result on this game" in report.notes


def test_curves_csv_holds_each_arch_mean_band_and_seeds_per_grid_step(tmp_path):
    """Grid: 100 steps of 10 up to the longest run (1,000); a seed counts from its first game
    (step 100) to its last step; coordconv's seed 1 stops at 500 and is not extrapolated."""
    for arch, seed, score, end in (
        ("conv", 0, 100.0, 1000),
        ("conv", 1, 200.0, 1000),
        ("coordconv", 0, 300.0, 1000),
        ("coordconv", 1, 500.0, 500),
    ):
        write_run(tmp_path / "runs", "MsPacman", "a2c", arch, seed, {"episode/score": score}, end=end)
    report = build_report(find_runs(tmp_path / "runs", progress=False), resamples=2000)
    files = write_report(report, tmp_path / "report")

    expected = [["MsPacman", "a2c", "conv", step, 4 * step, 2, 150.0, 100.0, 200.0] for step in range(100, 1001, 10)]
    expected += [["MsPacman", "a2c", "coordconv", step, 4 * step, 2, 400.0, 300.0, 500.0] for step in range(100, 501, 10)]
    expected += [["MsPacman", "a2c", "coordconv", step, 4 * step, 1, 300.0, "", ""] for step in range(510, 1001, 10)]
    with files.curves_csv.open() as file:
        header, *lines = list(csv.reader(file))
    assert header == ["game", "agent", "arch", "step", "frames", "seeds", "mean", "low", "high"]
    written = [
        [*line[:3], *map(int, line[3:6]), float(line[6]), *(float(cell) if cell else "" for cell in line[7:])]
        for line in lines
    ]
    assert written == expected
    assert "MsPacman a2c-coordconv: seeds of unequal length; seeds with data on the grid: 2 to 500, then 1 to 1,000 steps" in (
        report.notes
    )


# ------------------------------------------------------------------------------------------------
# A page quoting several reports (analysis/document.py)

PAGE = """# Results

Intro.

<!-- report: results/one agent=a2c figure=figures/one.png -->
old numbers of one
<!-- end report -->

Between the blocks.

<!-- report: results/two agent=apex -->
old numbers of two
<!-- end report -->

The end.
"""


def test_refresh_rewrites_each_block_of_a_page_from_its_own_records_and_agent(tmp_path):
    for arch, seed, score in (("conv", 0, 1000.0), ("conv", 1, 1002.0), ("coordconv", 0, 1500.0), ("coordconv", 1, 1502.0)):
        write_run(tmp_path / "results" / "one", "MsPacman", "a2c", arch, seed, {"episode/score": score})
    for arch, seed, score in (("conv", 0, -20.0), ("conv", 1, -18.0), ("coordconv", 0, -10.0), ("coordconv", 1, -8.0)):
        write_run(tmp_path / "results" / "two", "Pong", "apex", arch, seed, {"episode/score": score})
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text(PAGE)

    assert [(quoted.records, quoted.agent, quoted.figure) for quoted in quoted_reports(page)] == [
        (Path("results/one"), "a2c", Path("figures/one.png")),
        (Path("results/two"), "apex", None),
    ]
    assert [quoted.records for quoted, _ in stale_blocks(page, tmp_path)] == [Path("results/one"), Path("results/two")]
    assert refresh(page, tmp_path) == 2

    text = page.read_text()
    before, rest = text.split("<!-- report: results/one agent=a2c figure=figures/one.png -->\n")
    one, rest = rest.split("<!-- end report -->", 1)
    between, rest = rest.split("<!-- report: results/two agent=apex -->\n")
    two, after = rest.split("<!-- end report -->")
    assert (before, between, after) == ("# Results\n\nIntro.\n\n", "\n\nBetween the blocks.\n\n", "\n\nThe end.\n")
    assert one.startswith("![a2c, conv vs coordconv](figures/one.png)\n\n**coordconv better on 1 of 1 game, similar on 0")
    assert "| MsPacman | conv | 2 | 1,000 | 1,001 [1,000, 1,002] | 1,001 [1,000, 1,002] | - | - | (baseline) |" in one
    assert (
        "| MsPacman | coordconv | 2 | 1,000 | 1,501 [1,500, 1,502] | 1,501 [1,500, 1,502] | 500.0 [498.0, 502.0] | "
        "500.0 [498.0, 502.0] | better |"
    ) in one
    assert two.startswith("**coordconv better on 1 of 1 game, similar on 0")
    assert "| Pong | conv | 2 | 1,000 | -19.0 [-20.0, -18.0] |" in two
    assert "| Pong | coordconv | 2 | 1,000 | -9.00 [-10.0, -8.00] | -9.00 [-10.0, -8.00] | 10.0 [8.00, 12.0] |" in two
    assert "MsPacman" not in two and "Pong" not in one and "old numbers" not in text
    assert [path.name for path in (tmp_path / "docs").rglob("*.png")] == ["one.png"]
    assert stale_blocks(page, tmp_path) == []

    page.write_text(text.replace("| Pong | coordconv | 2 |", "| Pong | coordconv | 3 |"))
    assert [quoted.records for quoted, _ in stale_blocks(page, tmp_path)] == [Path("results/two")]


# ------------------------------------------------------------------------------------------------
# compare's metric: episode/score, else eval/mean_score; the reference scores for game points


@pytest.fixture(scope="module")
def unfinished_runs(tmp_path_factory) -> Path:
    """MsPacman, 2 seeds a side, too short to finish a game: evaluations and rollout means only."""
    root = tmp_path_factory.mktemp("runs")
    for arch, seed, evaluation, rollout in (
        ("conv", 0, 1000.0, 1.0),
        ("conv", 1, 1002.0, 3.0),
        ("coordconv", 0, 2000.0, 5.0),
        ("coordconv", 1, 2002.0, 7.0),
    ):
        write_run(root, "MsPacman", "a2c", arch, seed, {"eval/mean_score": evaluation, "rollout/ep_rew_mean": rollout})
    return root


def compare_rows(runs: Path, out: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]], str]:
    """Run ``rl-coordconv compare``: its exit status, summary.csv's rows by arch, summary.md."""
    status = compare.main([str(runs), "--out", str(out), "--no-progress", "--resamples", "2000", *extra])
    with (out / "summary.csv").open() as file:
        rows = {row["arch"]: row for row in csv.DictReader(file)}
    return status, rows, (out / "summary.md").read_text()


def test_compare_falls_back_to_the_evaluations_when_no_run_finished_a_game(unfinished_runs, tmp_path, capsys):
    status, rows, summary = compare_rows(unfinished_runs, tmp_path / "report")
    printed = capsys.readouterr().out.splitlines()
    assert status == 0 and printed[0] == FALLBACK_NOTE
    assert "Metric `eval/mean_score` against agent steps" in summary and FALLBACK_NOTE[6:] not in summary
    assert [float(rows[arch]["final_score"]) for arch in ("conv", "coordconv")] == [1001.0, 2001.0]
    assert float(rows["coordconv"]["difference"]) == 1000.0
    random_score, human_score = 307.3, 6951.6
    assert float(rows["coordconv"]["human_normalized_final"]) == pytest.approx(
        ((2000 - random_score) / (human_score - random_score) + (2002 - random_score) / (human_score - random_score)) / 2
    )
    assert "### Aggregate over games: human-normalized final scores" in summary


@pytest.mark.parametrize("metric", ["eval/mean_score", "rollout/ep_rew_mean"])
def test_compare_takes_another_metric_as_asked(unfinished_runs, tmp_path, capsys, metric):
    status, rows, summary = compare_rows(unfinished_runs, tmp_path / "report", "--metric", metric)
    assert status == 0 and FALLBACK_NOTE not in capsys.readouterr().out
    assert f"Metric `{metric}` against agent steps" in summary
    finals = {"eval/mean_score": [1001.0, 2001.0], "rollout/ep_rew_mean": [2.0, 6.0]}[metric]
    assert [float(rows[arch]["final_score"]) for arch in ("conv", "coordconv")] == finals
    if metric == "eval/mean_score":  # game points: human-normalized
        assert float(rows["conv"]["human_normalized_final"]) == pytest.approx((1001 - 307.3) / (6951.6 - 307.3))
        assert "### Aggregate over games: human-normalized final scores" in summary
    else:
        assert rows["conv"]["human_normalized_final"] == ""
        assert "### Aggregate over games: final scores (not normalized)" in summary
        assert "| coordconv | 2 | 6.00 [5.00, 7.00] |" in summary  # the IQM of the raw values 5 and 7


def test_compare_keeps_episode_score_when_one_run_finished_a_game(tmp_path, capsys):
    write_run(tmp_path / "runs", "MsPacman", "a2c", "conv", 0, {"episode/score": 700.0})
    for arch in ("conv", "coordconv"):
        write_run(tmp_path / "runs", "MsPacman", "a2c", arch, 1, {"eval/mean_score": 900.0})
    assert compare.main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    assert FALLBACK_NOTE not in capsys.readouterr().out
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Metric `episode/score`" in summary and "| MsPacman | conv | 1 | 1,000 | 700.0 (no CI) |" in summary
    assert "skipped MsPacman a2c-coordconv seed1: no 'episode/score' points yet" in summary


def test_compare_with_a_metric_no_run_has_stops_with_that_metric(unfinished_runs, tmp_path, capsys):
    assert compare.main([str(unfinished_runs), "--out", str(tmp_path / "report"), "--no-progress", "--metric", "nope"]) == 2
    error = capsys.readouterr().err
    assert "none of the 4 runs" in error and "has 'nope' points" in error and "eval/mean_score" not in error


def test_game_scores_are_normalized_with_the_suites_random_and_human_scores(tmp_path):
    assert reference_scores_for("episode/score") == SUITE_REFERENCES
    assert reference_scores_for("eval/mean_score") == SUITE_REFERENCES
    assert reference_scores_for("rollout/ep_rew_mean") is None
    for game, arch, seed, score in (
        ("Pong", "conv", 0, -3.0),
        ("Pong", "conv", 1, -1.0),
        ("Pong", "coordconv", 0, 5.0),
        ("Pong", "coordconv", 1, 7.0),
        ("Breakout", "conv", 0, 16.0),
        ("Breakout", "conv", 1, 18.0),
        ("Breakout", "coordconv", 0, 24.0),
        ("Breakout", "coordconv", 1, 26.0),
    ):
        write_run(tmp_path, game, "a2c", arch, seed, {"episode/score": score})
    report = build_report(find_runs(tmp_path, progress=False), resamples=2000)
    pong = [(-3.0 + 20.7) / 35.3, (-1.0 + 20.7) / 35.3]  # (score - random) / (human - random)
    breakout = [(16.0 - 1.7) / 28.8, (18.0 - 1.7) / 28.8]
    assert report.row("Pong", "a2c", "conv").human_normalized_final == pytest.approx(np.mean(pong))
    assert report.row("Breakout", "a2c", "conv").human_normalized_final == pytest.approx(np.mean(breakout))
    (conv,) = [aggregate for aggregate in report.aggregates if aggregate.arch == "conv"]
    pooled = sorted(pong + breakout)  # 4 runs: one cut at each end
    assert conv.normalized and conv.games == ["Breakout", "Pong"]
    assert conv.iqm == pytest.approx((pooled[1] + pooled[2]) / 2)


def test_a_row_is_configured_for_the_most_steps_any_of_its_seeds_was(tmp_path):
    write_run(tmp_path, "MsPacman", "a2c", "conv", 0, {"episode/score": 1.0}, timesteps=1000)
    write_run(tmp_path, "MsPacman", "a2c", "conv", 1, {"episode/score": 1.0}, timesteps=2000)
    assert build_report(find_runs(tmp_path), resamples=100).row("MsPacman", "a2c", "conv").configured_steps == 2000


def test_the_eval_cell_names_how_many_seeds_were_evaluated_only_when_not_all(tmp_path):
    from rl_coordconv.analysis.markdown import agent_section

    for seed in range(3):
        write_run(tmp_path, "MsPacman", "a2c", "conv", seed, {"episode/score": 1.0})
        write_run(tmp_path, "MsPacman", "a2c", "coordconv", seed, {"episode/score": 2.0})
    evaluation = {"timesteps": 1000, "episodes": 2, "mean_score": 5.0, "scores": [5.0, 5.0]}
    for arch, seeds in (("conv", range(3)), ("coordconv", range(2))):
        for seed in seeds:
            (tmp_path / "MsPacman" / f"a2c-{arch}" / f"seed{seed}" / "evaluation.json").write_text(json.dumps(evaluation))
    rows = {
        line.split("|")[2].strip(): line
        for line in agent_section(build_report(find_runs(tmp_path), resamples=100), "a2c")
        if line.startswith("| MsPacman")
    }
    assert "of 3 seeds" not in rows["conv"]
    assert rows["coordconv"].rstrip(" |").endswith("(2 of 3 seeds)")


def test_a_block_without_an_agent_quotes_a2c(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- report: results/one -->\n<!-- end report -->\n")
    assert quoted_reports(page)[0].agent == "a2c"
