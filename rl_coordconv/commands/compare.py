"""Compare archs across seeds: curves with confidence bands, a table with verdicts, TensorBoard.

    rl-coordconv compare runs/ --out report/
    rl-coordconv compare runs/ --out report/ --baseline conv --metric episode/score --seed 0
    rl-coordconv compare runs/ --out report-5M/ --until 5M      # the runs as they stood at 5M steps
    tensorboard --logdir report/tensorboard

Finds run directories under RUNS_DIR by their config.json and writes summary.csv, summary.md,
curves.png/.pdf, curves.csv and tensorboard/ to --out (see rl_coordconv/analysis/report.py).
"""

from __future__ import annotations

import argparse
import sys

from rl_coordconv.agents.config import parse_steps
from rl_coordconv.analysis.rendering import ReportFiles, check_output_folder, write_report
from rl_coordconv.analysis.report import DEFAULT_METRIC, FALLBACK_METRIC, Report, build_report
from rl_coordconv.analysis.runs import NoRunsError, find_runs, up_to
from rl_coordconv.analysis.statistics import RESAMPLES
from rl_coordconv.commands import HelpFormatter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rl-coordconv compare", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="folder holding run directories, at any depth")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report (new or empty)")
    parser.add_argument("--baseline", default="conv", help="the arch every other arch is compared with")
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"scalar tag to compare, against agent steps (default {DEFAULT_METRIC}; "
        f"{FALLBACK_METRIC} when no run has finished a game)",
    )
    parser.add_argument(
        "--until",
        default=None,
        metavar="STEPS",
        help="compare the runs as they stood at this many agent steps (e.g. 2.5M): later points and "
        "evaluations left out (default: all of each run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def print_report(report: Report, files: ReportFiles) -> None:
    """What ``compare`` (and ``demo``) print once the report is written: the notes, the headlines
    and where the files are."""
    if report.fallback:
        print(f"note: {report.fallback}")
    for note in report.notes:
        print(f"note: {note}")
    for agent, lines in report.headlines.items():
        for line in lines:
            print(f"{agent}: {line} (vs {report.baseline})")
    print(f"Curves:      {files.curves_png}")
    print(f"Summary:     {files.summary_md}")
    print(f"TensorBoard: tensorboard --logdir {files.tensorboard}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.seed < 0 or args.resamples < 1:  # before the runs are read, which can take minutes
            raise ValueError(f"--seed must be >= 0 (got {args.seed}) and --resamples >= 1 (got {args.resamples})")
        check_output_folder(args.out, overwrite=args.overwrite)
        until = None if args.until is None else parse_steps(args.until)  # before the runs are read
        found = find_runs(args.runs_dir, progress=not args.no_progress)
        report = build_report(
            found if until is None else up_to(found, until),
            baseline=args.baseline,
            metric=args.metric,
            seed=args.seed,
            resamples=args.resamples,
        )
        files = write_report(report, args.out, overwrite=args.overwrite)
    except (NoRunsError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_report(report, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
