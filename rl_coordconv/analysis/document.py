"""Report tables quoted in a markdown page, kept equal to what the report computes from run records.

A page marks each quoted comparison with the folder of run records it comes from::

    <!-- report: results/a2c-paper9-500k agent=a2c figure=figures/a2c_paper9_500k.png -->
    ...the headline, the table and the aggregate, as summary.md shows them...
    <!-- end report -->

:func:`refresh` rewrites every such block from the records (and redraws its figure), and
:func:`stale_blocks` says which blocks differ from what the records give now: the test suite runs
it on docs/results.md, so the page cannot drift from its evidence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rl_coordconv.analysis.figures import plot_curves
from rl_coordconv.analysis.markdown import agent_section
from rl_coordconv.analysis.report import Report, build_report
from rl_coordconv.analysis.runs import find_runs

BLOCK = re.compile(r"(<!-- report: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end report -->)", re.S)


@dataclass(frozen=True)
class QuotedReport:
    """One marked block: the records folder, the agent, the figure (if any), the text it holds."""

    records: Path  # relative to the page's repository root
    agent: str
    figure: Path | None  # relative to the page's folder
    body: str


def quoted_reports(page: Path | str) -> list[QuotedReport]:
    """The marked blocks of ``page``, in order."""
    return [_quoted(match) for match in BLOCK.finditer(Path(page).read_text())]


def _quoted(match: re.Match) -> QuotedReport:
    records, *options = match.group("spec").split()
    settings = dict(option.split("=", 1) for option in options)
    figure = settings.get("figure")
    return QuotedReport(Path(records), settings.get("agent", "a2c"), Path(figure) if figure else None, match.group("body"))


def render(report: Report, agent: str, figure: Path | None) -> str:
    """A block's text: the figure link, then :func:`~rl_coordconv.analysis.markdown.agent_section`."""
    archs = " vs ".join(dict.fromkeys(row.arch for row in report.rows if row.agent == agent))  # the baseline first
    lines = [f"![{agent}, {archs}]({figure.as_posix()})", ""] if figure else []
    return "\n".join([*lines, *agent_section(report, agent)]) + "\n"


def report_for(root: Path, quoted: QuotedReport, reference_scores: Mapping[str, tuple[float, float]] | None = None) -> Report:
    """The report of the block's records, as ``rl-coordconv compare`` computes it (seed 0; the
    suite's reference scores unless ``reference_scores``)."""
    return build_report(find_runs(root / quoted.records), reference_scores=reference_scores, seed=0)


def stale_blocks(
    page: Path | str, root: Path | str, reference_scores: Mapping[str, tuple[float, float]] | None = None
) -> list[tuple[QuotedReport, str]]:
    """The blocks of ``page`` whose text is not what their records give now, each with that text."""
    root = Path(root)
    stale = []
    for quoted in quoted_reports(page):
        expected = render(report_for(root, quoted, reference_scores), quoted.agent, quoted.figure)
        if quoted.body != expected:
            stale.append((quoted, expected))
    return stale


def refresh(page: Path | str, root: Path | str, reference_scores: Mapping[str, tuple[float, float]] | None = None) -> int:
    """Rewrite every block of ``page`` from its records and redraw its figure; returns the blocks."""
    page, root = Path(page), Path(root)
    text = page.read_text()
    count = 0

    def rewritten(match: re.Match) -> str:
        nonlocal count
        quoted = _quoted(match)
        report = report_for(root, quoted, reference_scores)
        if quoted.figure is not None:
            (page.parent / quoted.figure).parent.mkdir(parents=True, exist_ok=True)
            plot_curves(report).savefig(page.parent / quoted.figure, dpi=110)
        count += 1
        return match.group(1) + render(report, quoted.agent, quoted.figure) + match.group(4)

    page.write_text(BLOCK.sub(rewritten, text))
    return count
