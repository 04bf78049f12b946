"""Run a grid of experiments: games x agents x archs x seeds, one ``rl-coordconv train`` process per run.

    rl-coordconv sweep --games MsPacman,Breakout --agents a2c --archs conv,coordconv --seeds 0-4 --timesteps 10M
    rl-coordconv sweep --games paper9 --agents a2c,apex --archs conv,coordconv --seeds 0-2 --timesteps 300k \\
        [--runs runs/] [--max-parallel K] [--device cpu] [--set a2c.n_envs=8] [--dry-run]

Each run is the same single-run code as ``train.py``, in its own process (a crash stays contained),
writing its console output to ``train.log`` in its run directory. Re-running the same command
skips finished runs (:func:`rl_coordconv.rundir.run_state`: the final evaluation written at
``--timesteps``, or with ``eval_episodes=0`` a checkpoint there) and resumes interrupted ones from their last checkpoint. A failed run is
reported at the end with the tail of its log and does not stop the others; the exit status is 1
when any run failed. Every setting is checked before anything starts.

On a Ray cluster (``pip install -e .[distributed]``), each run becomes a Ray task asking for
``--threads`` CPUs and ``--gpus-per-run`` GPUs (a fraction shares a GPU), and Ray's scheduler
queues them; skipping, resuming and failures work as above:

    rl-coordconv sweep --games paper9 --seeds 0-4 --timesteps 10M --ray-address auto --gpus-per-run 0.25
    rl-coordconv sweep ... --ray-address HOST:PORT     # join the cluster whose head is there
    rl-coordconv sweep ... --ray-address local         # start a Ray on this machine for the sweep

The task runs the same ``train.py`` command line on its node, so every node needs this checkout
and its virtual environment at the same paths as here, and ``--runs`` must be a directory they all
share (a relative ``--runs`` is taken from the current directory here). A run that asks for no GPU
sees none. Ctrl-C cancels the tasks; their runs save a checkpoint, as on one machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from rl_coordconv.agents.distributed import INSTALL_HINT, check_address_form
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.sweep import (
    TRAIN_COMMAND,
    LocalLauncher,
    RayLauncher,
    Slot,
    execute,
    failure,
    local_slots,
    log_tail,
    machine_cores,
    plan,
    ray_for_runs,
)
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.envs import GAMES
from rl_coordconv.extractors import ARCHS
from rl_coordconv.interrupts import stops_on_signals
from rl_coordconv.rundir import RunState

# The devices a Ray sweep accepts: inside a task Ray narrows CUDA_VISIBLE_DEVICES to the GPUs it
# reserved for that task, so an explicit cuda:<index> would name another GPU, or none.
RAY_DEVICES = ("auto", "cuda", "cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rl-coordconv sweep", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--games", required=True, help=f"comma-separated games, or paper9 ({', '.join(GAMES)})")
    parser.add_argument("--agents", default="a2c", help=f"comma-separated: {', '.join(AGENTS)}")
    parser.add_argument("--archs", default="conv,coordconv", help=f"comma-separated: {', '.join(sorted(ARCHS))}")
    parser.add_argument("--seeds", default="0-2", help="e.g. 0-4 or 0,3,7")
    parser.add_argument("--timesteps", required=True, help="agent steps per run, e.g. 10M, 300k")
    parser.add_argument("--runs", default="runs", help="root folder of run directories")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto or cuda: each run on the GPU of its slot, the GPUs dealt round-robin (auto without "
        "a GPU: CPU); cuda:<index>: every run on that GPU; cpu. On Ray: auto, cuda or cpu only",
    )
    parser.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        help="at most this many runs at once (default: every slot of the machine, see --dry-run; on Ray: all, queued by Ray)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="cores (torch and emulator threads) per run on a machine without GPU, and per Ray task",
    )
    parser.add_argument(
        "--runs-per-gpu",
        type=int,
        default=None,
        help="runs packed onto each GPU the sweep uses (with --device cuda:<index>, onto that one), "
        "the cores split among them (default: one run per core)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every run, as train.py --set",
    )
    parser.add_argument("--dry-run", action="store_true", help="print one rl-coordconv train command line per run and stop")
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT|local",
        help=f"run each run as a task on a Ray cluster (auto: the running one; local: start one here); needs {INSTALL_HINT}",
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="GPUs each Ray task asks for, e.g. 0.5 for two runs per GPU (default 0: CPU only)",
    )
    return parser.parse_args(argv)


def check_resources(args: argparse.Namespace) -> None:
    """Refuse --threads, --max-parallel and --gpus-per-run values that cannot work."""
    if args.threads < 1 or (args.max_parallel is not None and args.max_parallel < 1):
        raise ValueError("--threads and --max-parallel must be >= 1")
    if args.gpus_per_run < 0:
        raise ValueError(f"--gpus-per-run must be >= 0, got {args.gpus_per_run:g}")
    if args.ray_address is not None:
        check_address_form(args.ray_address, named=("auto", "local"))
    if args.gpus_per_run > 0 and not args.ray_address:
        raise ValueError("--gpus-per-run needs --ray-address (the local sweep packs runs with --runs-per-gpu)")
    if args.runs_per_gpu is not None and args.ray_address:
        raise ValueError("--runs-per-gpu is for the local sweep; on Ray, --gpus-per-run shares the GPUs")
    if args.ray_address and args.device not in RAY_DEVICES:
        raise ValueError(
            f"--device {args.device!r} cannot be used with --ray-address: Ray shows each task only the "
            f"GPUs it reserved, numbered from cuda:0; use {', '.join(RAY_DEVICES)}"
        )
    if args.ray_address and args.gpus_per_run == 0 and args.device == "cuda":
        raise ValueError(f"--device {args.device} on Ray needs --gpus-per-run > 0: a run sees only the GPUs it asks for")


def machine_slots(args: argparse.Namespace) -> list[Slot]:
    """This machine's slots for the sweep (:func:`~rl_coordconv.agents.sweep.local_slots`), the first
    ``--max-parallel`` of them when that is fewer."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    slots = local_slots(args.device, machine_cores(), gpus, args.threads, args.runs_per_gpu)
    return slots[: args.max_parallel] if args.max_parallel else slots


def describe_devices(device: str, slots: list[Slot]) -> str | None:
    """One line on the GPU each run gets, or None where no run uses a GPU."""
    if device.startswith("cuda:"):
        return f"--device {device}: every run on {device}"
    gpus = list(dict.fromkeys(slot.device for slot in slots if slot.device != "cpu"))
    if not gpus:
        return None  # cpu, or auto without a GPU
    return f"--device {device}: each run on the GPU of the slot it starts in ({', '.join(gpus)})"


@stops_on_signals
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_resources(args)
        runs = plan(
            args.games,
            args.agents,
            args.archs,
            args.seeds,
            args.timesteps,
            args.runs,
            device=args.device,
            overrides=args.overrides,
        )
        slots = None if args.ray_address else machine_slots(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {state: sum(run.state == state for run in runs) for state in RunState}
    print(
        f"{len(runs)} runs: {counts[RunState.NEW]} new, {counts[RunState.RESUMABLE]} to resume, "
        f"{counts[RunState.STARTED]} to restart (no checkpoint), {counts[RunState.FINISHED]} finished"
    )
    if slots is not None:
        print(f"{len(slots)} at once, each in a slot of its own: " + "; ".join(slot.describe() for slot in slots))
        devices = describe_devices(args.device, slots)
        if devices:
            print(devices)
    if args.dry_run:
        for run in runs:
            command = ["rl-coordconv", "train", *run.argv[len(TRAIN_COMMAND) :]]
            print(("# finished: " if run.state == RunState.FINISHED else "") + shlex.join(command))
        return 0
    ray = None
    try:
        if args.ray_address:
            try:
                ray = ray_for_runs(args.ray_address, args.threads, args.gpus_per_run)
            except ValueError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            # Ray's scheduler queues the tasks by the resources they ask for.
            launcher, max_parallel = RayLauncher(ray, args.threads, args.gpus_per_run), args.max_parallel or len(runs)
        else:
            launcher, max_parallel = LocalLauncher(slots), len(slots)
        failed = execute(runs, max_parallel, launcher)
    except KeyboardInterrupt:
        print("\nInterrupted: running runs saved a checkpoint; run the same command to resume.")
        return 130
    finally:
        if ray is not None:
            ray.shutdown()
    for run in failed:
        print(f"\nFAILED ({failure(run)}): {run.run_dir}\n{log_tail(run)}")
    print(
        f"\n{len(runs) - len(failed)} of {len(runs)} runs finished, {len(failed)} failed. Compare them with:\n"
        f"  rl-coordconv compare {args.runs} --out <report dir>"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
