"""Compare archs across seeds: curves with confidence bands, a table with verdicts, TensorBoard.

    rl-coordconv compare runs/ --out report/
    rl-coordconv compare runs/ --out report/ --baseline conv --metric episode/score --seed 0
    tensorboard --logdir report/tensorboard

Finds run directories under RUNS_DIR by their config.json and writes summary.csv, summary.md,
curves.png/.pdf, curves.csv and tensorboard/ to --out (see rl_coordconv/analysis/report.py).
"""

from __future__ import annotations

import argparse
import sys

from rl_coordconv.analysis.report import build_report, check_output_folder, write_report
from rl_coordconv.analysis.runs import NoRunsError, find_runs
from rl_coordconv.analysis.statistics import RESAMPLES
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.envs import GAMES

DEFAULT_METRIC, FALLBACK_METRIC = "episode/score", "eval/mean_score"
RAW_SCORE_METRICS = (DEFAULT_METRIC, FALLBACK_METRIC)


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
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Human-normalization needs raw game scores; other metrics are aggregated as they are.
    references = (
        {name: (game.random_score, game.human_score) for name, game in GAMES.items()}
        if args.metric in RAW_SCORE_METRICS
        else None
    )
    try:
        if args.seed < 0 or args.resamples < 1:  # before the runs are read, which can take minutes
            raise ValueError(f"--seed must be >= 0 (got {args.seed}) and --resamples >= 1 (got {args.resamples})")
        check_output_folder(args.out, overwrite=args.overwrite)
        found = find_runs(args.runs_dir, progress=not args.no_progress)
        try:
            report = build_report(
                found,
                baseline=args.baseline,
                metric=args.metric,
                reference_scores=references,
                seed=args.seed,
                resamples=args.resamples,
            )
        except NoRunsError:
            if args.metric != DEFAULT_METRIC:
                raise
            # Runs too short to finish a game still have their final evaluation over whole games.
            print(f"note: no run has finished a game yet ({DEFAULT_METRIC}); comparing {FALLBACK_METRIC} instead")
            report = build_report(
                found,
                baseline=args.baseline,
                metric=FALLBACK_METRIC,
                reference_scores=references,
                seed=args.seed,
                resamples=args.resamples,
            )
        files = write_report(report, args.out, overwrite=args.overwrite)
    except (NoRunsError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in report.notes:
        print(f"note: {note}")
    for agent, lines in report.headlines.items():
        for line in lines:
            print(f"{agent}: {line} (vs {report.baseline})")
    print(f"Curves:      {files.curves_png}")
    print(f"Summary:     {files.summary_md}")
    print(f"TensorBoard: tensorboard --logdir {files.tensorboard}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
