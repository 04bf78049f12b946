"""Reading run directories, statistics across seeds and games, and the comparison report.

Reads only run directories (config.json + TensorBoard events), never agent objects, so it works
on runs copied from a cluster::

    from rl_coordconv.analysis import build_report, find_runs, write_report
    report = build_report(find_runs("runs"), baseline="conv")
    write_report(report, "report")
"""

from rl_coordconv.analysis.report import Report, build_report, plot_curves, write_report, write_tensorboard
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
