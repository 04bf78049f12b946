"""Reading run directories, statistics across seeds and games, and the comparison report.

Reads only run directories (config.json + TensorBoard events), never agent objects, so it works
on runs copied from a cluster::

    from rl_coordconv.analysis import build_report, find_runs, write_report
    report = build_report(find_runs("runs"), baseline="conv")
    write_report(report, "report")

``build_report`` is what ``rl-coordconv compare`` and ``demo`` run: ``episode/score`` by default,
``eval/mean_score`` where no run has finished a game, human-normalized over the suite's games.
The numbers: runs.py (run directories read back), statistics.py, curves.py, estimates.py (one
row per game, agent and arch, from one table of statistics), aggregates.py, report.py. The files:
markdown.py (summary.md), figures.py (curves.png/.pdf, TensorBoard), rendering.py (the folder).
"""

from rl_coordconv.analysis.figures import plot_curves, write_tensorboard
from rl_coordconv.analysis.rendering import write_report
from rl_coordconv.analysis.report import Report, build_report
from rl_coordconv.analysis.runs import FoundRuns, NoRunsError, Run, Series, find_runs, load_run, read_scalars

__all__ = [
    "FoundRuns",
    "NoRunsError",
    "Report",
    "Run",
    "Series",
    "build_report",
    "find_runs",
    "load_run",
    "plot_curves",
    "read_scalars",
    "write_report",
    "write_tensorboard",
]
