"""The demo: A2C with the plain Nature CNN and with CoordConv on Ms. Pac-Man, side by side.

A small budget (default 100k agent steps each, about 10 minutes on 2 CPU cores) under
``runs/demo/<date-time>/``, so a new demo never touches an earlier one. Ends with the comparison
report of the two runs (``rl_coordconv.analysis.build_report``, as ``rl-coordconv compare`` makes it:
curves, table, TensorBoard) and where to find it.

    rl-coordconv demo [--timesteps 100k] [--game MsPacman] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rl_coordconv import rundir
from rl_coordconv.agents.config import parse_steps
from rl_coordconv.agents.experiment import ExperimentConfig, run_experiment
from rl_coordconv.analysis import build_report, find_runs, write_report
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.commands.compare import print_report
from rl_coordconv.interrupts import stops_on_signals

ARCHS = ("conv", "coordconv")


@stops_on_signals
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rl-coordconv demo", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--timesteps", default="100k", help="agent steps per run")
    parser.add_argument("--game", default="MsPacman")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/demo")
    args = parser.parse_args(argv)
    root = Path(args.runs) / time.strftime("%Y%m%d-%H%M%S")
    try:
        configs = [
            ExperimentConfig(
                game=args.game,
                arch=arch,
                timesteps=parse_steps(args.timesteps),
                device=args.device,
                checkpoint_every=50_000,
                eval_episodes=4,
            )
            for arch in ARCHS
        ]
        for config in configs:
            config.validate()
        run_dirs = []
        for config in configs:
            print(f"\n== A2C-{config.arch} on {config.game}: {config.timesteps:,} agent steps ==")
            run_dirs.append(run_experiment(config, root))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print("\nRuns written:")
    for run_dir in run_dirs:
        print(f"  {run_dir}   (final evaluation: {rundir.evaluation_path(run_dir)})")
    print("\n== Comparison report (one seed per arch: no confidence intervals) ==")
    try:
        report = build_report(find_runs(root, progress=False))
        files = write_report(report, root / "report")
    except ValueError as error:  # NoRunsError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_report(report, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
