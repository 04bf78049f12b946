"""docs/results.md quotes only what the committed run records give."""

import re
from pathlib import Path

from rl_coordconv.analysis.document import quoted_reports, stale_blocks
from rl_coordconv.analysis.runs import find_runs
from rl_coordconv.envs import GAMES

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
REFERENCES = {name: (game.random_score, game.human_score) for name, game in GAMES.items()}


def test_every_committed_record_is_a_finished_run_the_report_reads():
    campaigns = sorted({quoted.records for quoted in quoted_reports(PAGE)})
    assert campaigns, "docs/results.md quotes no report"
    for campaign in campaigns:
        found = find_runs(ROOT / campaign)
        assert found.runs
        assert not [note for note in found.notes if note.startswith("skipped")]
        assert all(run.finished and not list(run.path.glob("checkpoints")) for run in found.runs)


def test_the_quoted_tables_are_what_the_records_give(tmp_path):
    stale = stale_blocks(PAGE, ROOT, REFERENCES)
    assert not stale, (
        "docs/results.md differs from its records; run python scripts/refresh_results.py. "
        f"First stale block ({stale[0][0].records}) should read:\n{stale[0][1]}"
        if stale
        else ""
    )
    for quoted in quoted_reports(PAGE):
        if quoted.figure is not None:
            assert (PAGE.parent / quoted.figure).stat().st_size > 10_000


def test_the_supervised_tables_are_the_committed_reports():
    """Every table row of each committed ``results/supervised/<experiment>/results.md`` (what
    ``rl-coordconv supervised`` wrote) appears in docs/results.md as it is, and every figure the
    page shows from there exists."""
    reports = sorted((ROOT / "results" / "supervised").glob("*/results.md"))
    assert {path.parent.name for path in reports} >= {"vae", "gan", "classification", "detection"}
    page = PAGE.read_text()
    for report in reports:
        rows = [line for line in report.read_text().splitlines() if line.startswith("|")]
        assert rows, f"{report} has no table"
        missing = [row for row in rows if row not in page]
        assert not missing, f"docs/results.md lacks these rows of {report.relative_to(ROOT)}: {missing}"
    for figure in re.findall(r"\]\((\.\./results/supervised/[^)]+)\)", page):
        assert (PAGE.parent / figure).is_file(), figure
