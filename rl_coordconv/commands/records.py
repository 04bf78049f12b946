"""Copy the records of finished runs (config.json, TensorBoard events, evaluations, train.log; no
checkpoints) from a sweep's folder into another, e.g. a results/ folder kept in git.

    rl-coordconv records /work/runs/a2c-paper9-500k results/a2c-paper9-500k

Runs are found by their config.json at any depth and keep their path below SOURCE. Only finished
runs are copied (rl_coordconv.rundir.run_state), so a record never holds a run in progress;
running it again copies the runs that finished since.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_coordconv import rundir
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.rundir import RunState


def copy_finished_records(source: Path, destination: Path) -> tuple[list[Path], list[Path]]:
    """Copy every finished run's record under ``source`` to the same path under ``destination``.

    :return: (the runs copied, the runs left out as not finished), as paths below ``source``; a
        config.json of another tool (no run in it) is passed over.
    """
    copied, unfinished = [], []
    for config_file in sorted(source.rglob(rundir.CONFIG_FILE)):
        run_dir = config_file.parent
        where = run_dir.relative_to(source)
        try:
            run = rundir.read_config(run_dir)
        except rundir.NotARunDirectory:
            continue
        if rundir.state_of(run, run_dir) == RunState.FINISHED:
            rundir.copy_record(run_dir, destination / where)
            copied.append(where)
        else:
            unfinished.append(where)
    return copied, unfinished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rl-coordconv records", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("source", type=Path, metavar="SOURCE", help="folder of run directories (a sweep's --runs)")
    parser.add_argument("destination", type=Path, metavar="DEST", help="where the records go")
    args = parser.parse_args(argv)
    source, destination = args.source.resolve(), args.destination.resolve()
    try:
        if not source.is_dir():
            raise ValueError(f"{args.source} is not a directory")
        if destination.exists() and not destination.is_dir():
            raise ValueError(f"{args.destination} is not a directory")
        if destination.is_relative_to(source):
            raise ValueError(f"{args.destination} is {args.source} or inside it; give a folder outside it")
        copied, unfinished = copy_finished_records(args.source, args.destination)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = sum(path.stat().st_size for path in args.destination.rglob("*") if path.is_file()) if copied else 0
    print(
        f"copied {len(copied)} finished runs to {args.destination} ({size / 1e6:.1f} MB in all); "
        f"{len(unfinished)} not finished, left out"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
