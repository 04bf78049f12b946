"""Run a grid of experiments: games x agents x archs x seeds, one ``train.py`` process per run.

    python scripts/sweep.py --games MsPacman,Breakout --agents a2c --archs conv,coordconv --seeds 0-4 --timesteps 10M
    python scripts/sweep.py --games paper9 --agents a2c,apex --archs conv,coordconv --seeds 0-2 --timesteps 300k \\
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

    python scripts/sweep.py --games paper9 --seeds 0-4 --timesteps 10M --ray-address auto --gpus-per-run 0.25
    python scripts/sweep.py ... --ray-address HOST:PORT     # join the cluster whose head is there
    python scripts/sweep.py ... --ray-address local         # start a Ray on this machine for the sweep

The task runs the same ``train.py`` command line on its node, so every node needs this checkout
and its virtual environment at the same paths as here, and ``--runs`` must be a directory they all
share (a relative ``--runs`` is taken from the current directory here). A run that asks for no GPU
sees none. Ctrl-C cancels the tasks; their runs save a checkpoint, as on one machine.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rl_coordconv.agents.config import apply_overrides, parse_steps
from rl_coordconv.agents.distributed import check_reachable
from rl_coordconv.agents.experiment import AGENTS, ExperimentConfig, run_directory
from rl_coordconv.envs import GAMES
from rl_coordconv.extractors import ARCHS
from rl_coordconv.rundir import LOG_FILE, RunState, run_state

TRAIN = Path(__file__).resolve().parent / "train.py"
GAME_SETS = {"paper9": list(GAMES)}
LOG_TAIL_LINES = 15
RAY_INSTALL = "pip install -e .[distributed]"
INTERRUPT_GRACE_SECONDS = 120  # how long an interrupted run may take to save its checkpoint


@dataclass
class Run:
    config: ExperimentConfig
    run_dir: Path
    state: RunState
    argv: list[str]
    process: subprocess.Popen | None = None  # the local train.py process
    task: Any = None  # or the Ray task's ObjectRef
    returncode: int | None = None
    error: str | None = None  # why a Ray task ended without an exit code (its worker died, ...)


def parse_names(text: str, known: list[str], what: str, sets: dict[str, list[str]] | None = None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each checked against ``known`` (or a named set such as paper9)."""
    names = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if sets and name in sets:
            names += sets[name]
        elif name in known:
            names.append(name)
        else:
            accepted = ", ".join([*known, *(sets or {})])
            raise ValueError(f"unknown {what} {name!r}; choose from: {accepted}")
    if not names:
        raise ValueError(f"no {what} given")
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,3,7"`` -> ``[0, 3, 7]``; ranges and lists mix."""
    seeds = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        try:
            if "-" in part:
                first, last = (int(bound) for bound in part.split("-"))
                if last < first:
                    raise ValueError
                seeds += range(first, last + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"bad seed range {part!r}: use e.g. 0-4 or 0,3,7 (non-negative, first <= last)") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"bad seeds {text!r}: use e.g. 0-4 or 0,3,7 (non-negative)")
    return list(dict.fromkeys(seeds))


def agent_of(override: str) -> str | None:
    """The agent whose settings ``override`` changes (``"apex.batch_size=64"`` -> ``"apex"``), or None."""
    prefix = override.split("=", 1)[0].strip().split(".")[0]
    return prefix if prefix in AGENTS else None


def check_overrides(overrides: list[str], agents: list[str]) -> None:
    """Refuse a ``--set agent.key=...`` for an agent that is not in the sweep."""
    for item in overrides:
        if agent_of(item) not in (None, *agents):
            raise ValueError(f"--set {item!r}: no selected agent has it (the sweep runs {', '.join(agents)})")


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run of the grid with its state and its train.py command line; all settings checked."""
    games = parse_names(args.games, list(GAMES), "game", GAME_SETS)
    agents = parse_names(args.agents, list(AGENTS), "agent")
    archs = parse_names(args.archs, sorted(ARCHS), "arch")
    seeds = parse_seeds(args.seeds)
    timesteps = parse_steps(args.timesteps)
    check_overrides(args.overrides, agents)
    runs = []
    # Seed-major, so that an interrupted sweep leaves every arch with the same seeds.
    for seed in seeds:
        for game in games:
            for agent in agents:
                for arch in archs:
                    config = ExperimentConfig(game=game, agent=agent, arch=arch, seed=seed, timesteps=timesteps, device=args.device)
                    agent_overrides = [item for item in args.overrides if agent_of(item) in (None, agent)]
                    apply_overrides(config, agent_overrides)
                    config.validate()
                    run_dir = run_directory(args.runs, config)
                    state = run_state(run_dir, config.timesteps, config.eval_episodes)
                    argv = [sys.executable, str(TRAIN), "--game", game, "--agent", agent, "--arch", arch, "--seed", str(seed),
                            "--timesteps", str(timesteps), "--device", args.device, "--runs", str(args.runs), "--no-progress"]
                    argv += [f"--set={item}" for item in agent_overrides]
                    if state == RunState.RESUMABLE:
                        argv.append("--resume")
                    runs.append(Run(config, run_dir, state, argv))
    return runs


def default_parallelism(threads_per_run: int) -> int:
    """One run per GPU; on CPU, cores / threads per run."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // threads_per_run)


def prepare(run: Run) -> None:
    """Make the run's directory: emptied for a restart, kept (with its checkpoints) for a resume."""
    if run.state == RunState.STARTED:  # it died before its first checkpoint: nothing to resume from
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True, exist_ok=True)


def start_train(argv: list[str], run_dir: Path, threads: int, extra_environment: dict[str, str] | None = None,
                **popen_options: Any) -> subprocess.Popen:
    """Start the train.py command ``argv`` with ``threads`` torch threads, its output appended to
    the run's train.log; ``popen_options`` go to ``subprocess.Popen``."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAIN.parents[1]), environment.get("PYTHONPATH")]))
    environment.update(extra_environment or {})
    with open(run_dir / LOG_FILE, "a") as log:
        log.write(f"\n$ {shlex.join(argv)}\n")
        log.flush()
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, **popen_options)


def log_tail(run: Run, lines: int = LOG_TAIL_LINES) -> str:
    path = run.run_dir / LOG_FILE
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


class LocalLauncher:
    """Runs each train.py command as a child process of this one."""

    def __init__(self, threads: int):
        self.threads = threads

    def start(self, run: Run) -> None:
        prepare(run)
        run.process = start_train(run.argv, run.run_dir, self.threads)

    def wait(self, running: list[Run], seconds: float) -> list[Run]:
        """Wait ``seconds``; return the runs that ended, with their ``returncode`` set."""
        time.sleep(seconds)
        ended = [run for run in running if run.process.poll() is not None]
        for run in ended:
            run.returncode = run.process.returncode
        return ended

    def interrupt(self, running: list[Run]) -> None:
        """Ctrl-C every running run and wait while it saves its checkpoint."""
        for run in running:
            run.process.send_signal(signal.SIGINT)
        for run in running:
            run.process.wait()


def train_on_worker(argv: list[str], run_dir: str, threads: int, cwd: str, uses_gpu: bool) -> int:
    """The Ray task: run one train.py command on this node, as the local sweep does; its exit code.

    The command gets a process group of its own, so that a cancelled task (``ray.cancel`` raises
    KeyboardInterrupt here) interrupts it as a whole, and it dies with this worker (``ray.cancel(force=True)``,
    the worker killed, the driver gone): no run goes on training for nobody.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def prepare_child() -> None:  # in the child, before exec
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])  # blocked in Ray's worker, and inherited
        if prctl is not None:
            prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker

    # Ray leaves every GPU visible to a task that asked for none; a run must not use a GPU it did not reserve.
    hide_gpus = {} if uses_gpu else {"CUDA_VISIBLE_DEVICES": ""}
    process = start_train(argv, Path(run_dir), threads, hide_gpus, cwd=cwd, start_new_session=True,
                          preexec_fn=prepare_child)
    try:
        while True:
            try:  # Ray's KeyboardInterrupt lands only between Python steps, never inside a blocking wait()
                return process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        interrupt_process_group(process)
        raise


def interrupt_process_group(process: subprocess.Popen, grace_seconds: float = INTERRUPT_GRACE_SECONDS) -> None:
    """Ctrl-C ``process`` and its children (train.py saves a checkpoint); kill them if they outlive the grace time."""
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass  # it had already ended


class RayLauncher:
    """Runs each train.py command as a Ray task that asks for ``threads`` CPUs and ``gpus`` GPUs.

    Needs ``ray.init`` first. The run directories must be on a filesystem every node shares.
    """

    def __init__(self, ray: Any, threads: int, gpus: float):
        if __name__ != "__main__":  # imported (tests): Ray's workers cannot import this script by name
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        self.ray = ray
        self.threads = threads
        self.gpus = gpus
        # No retries: a run whose worker died is reported like any failed run, and the next sweep resumes it.
        self.task = ray.remote(train_on_worker).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def start(self, run: Run) -> None:
        prepare(run)
        run.task = self.task.remote(run.argv, str(run.run_dir.resolve()), self.threads, os.getcwd(), self.gpus > 0)

    def wait(self, running: list[Run], seconds: float) -> list[Run]:
        """Wait at most ``seconds``; return the runs that ended, with ``returncode`` or ``error`` set."""
        by_task = {run.task: run for run in running}
        ended, _ = self.ray.wait(list(by_task), num_returns=len(by_task), timeout=seconds)
        for task in ended:
            run = by_task[task]
            try:
                run.returncode = self.ray.get(task)
            except self.ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None) or error  # a RayTaskError wraps the task's own exception
                message = str(cause).strip().splitlines()
                run.error = f"Ray task failed: {type(cause).__name__}" + (f": {message[0]}" if message else "")
        return [by_task[task] for task in ended]

    def interrupt(self, running: list[Run]) -> None:
        """Cancel every task: a running one interrupts its run, which saves a checkpoint; a queued
        one never starts. Tasks still running after the grace time are killed with their runs."""
        tasks = [run.task for run in running]
        if not tasks:
            return
        for task in tasks:
            self.ray.cancel(task)
        # A bit longer than the task's own grace time, so that it normally stops its run itself.
        _, late = self.ray.wait(tasks, num_returns=len(tasks), timeout=INTERRUPT_GRACE_SECONDS + 30)
        for task in late:
            self.ray.cancel(task, force=True)


def start_ray(address: str, threads: int, gpus: float) -> Any:
    """Import Ray and join the cluster at ``address`` (``auto`` or ``HOST:PORT``), or start one on
    this machine (``local``); check that some node can hold a run. Returns the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--ray-address needs Ray, which is not installed; install it with: {RAY_INSTALL}") from None
    check_reachable(address)
    quiet = {"log_to_driver": False, "logging_level": "WARNING"}  # the runs' output is in their train.log
    try:
        if address == "local":
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
        check_cluster_fits(ray, threads, gpus)
    except BaseException as error:
        ray.shutdown()  # a half-started local Ray, or a cluster too small for a run
        if isinstance(error, (ConnectionError, RuntimeError)) or str(error).startswith("Invalid address"):
            raise ValueError(f"cannot join the Ray cluster at --ray-address {address}: {error}") from None
        raise
    return ray


def check_cluster_fits(ray: Any, cpus: int, gpus: float) -> None:
    """Refuse runs that no node of the cluster can hold (Ray would queue them forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        sizes = ", ".join(f"{node.get('CPU', 0):g} CPUs and {node.get('GPU', 0):g} GPUs" for node in nodes)
        raise ValueError(f"each run asks for {cpus} CPUs (--threads) and {gpus:g} GPUs (--gpus-per-run), "
                         f"but no node of the Ray cluster has that much (its nodes: {sizes})")


def execute(runs: list[Run], max_parallel: int, launcher: LocalLauncher | RayLauncher,
            poll_seconds: float = 0.5) -> list[Run]:
    """Run everything not done with ``launcher``, at most ``max_parallel`` at a time; return the failed runs."""
    waiting = [run for run in runs if run.state != RunState.FINISHED]
    running: list[Run] = []
    finished: list[Run] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(waiting), desc="sweep", unit="run")
    try:
        while waiting or running:
            while waiting and len(running) < max_parallel:
                run = waiting.pop(0)
                launcher.start(run)
                running.append(run)
            for run in launcher.wait(running, poll_seconds):
                running.remove(run)
                finished.append(run)
                bar.update()
            failed = sum(has_failed(run) for run in finished)
            bar.set_postfix_str(f"running {len(running)}, failed {failed}, left {len(waiting)}")
    except KeyboardInterrupt:
        launcher.interrupt(running)  # train.py saves a checkpoint on Ctrl-C; the next sweep resumes it
        raise
    finally:
        bar.close()
    return [run for run in finished if has_failed(run)]


def has_failed(run: Run) -> bool:
    """Whether ``run`` ended with a non-zero exit code or its Ray task failed."""
    return run.error is not None or run.returncode != 0


def failure(run: Run) -> str:
    """Why ``run`` failed, in a few words: ``"exit 2"``, ``"killed by SIGKILL"`` (out of memory,
    or ``kill -9``), or what ended its Ray task."""
    if run.error:
        return run.error
    if run.returncode is not None and run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        return f"killed by {name}"
    return f"exit {run.returncode}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", required=True, help=f"comma-separated games, or paper9 ({', '.join(GAMES)})")
    parser.add_argument("--agents", default="a2c", help=f"comma-separated: {', '.join(AGENTS)}")
    parser.add_argument("--archs", default="conv,coordconv", help=f"comma-separated: {', '.join(sorted(ARCHS))}")
    parser.add_argument("--seeds", default="0-2", help="e.g. 0-4 or 0,3,7")
    parser.add_argument("--timesteps", required=True, help="agent steps per run, e.g. 10M, 300k")
    parser.add_argument("--runs", default="runs", help="root folder of run directories")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="runs at once (default: one per GPU, or cores / threads; on Ray: all, queued by Ray)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run on CPU")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every run, as train.py --set")
    parser.add_argument("--dry-run", action="store_true", help="print one train.py command line per run and stop")
    parser.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT|local",
                        help=f"run each run as a task on a Ray cluster (auto: the running one; local: start one here); "
                             f"needs {RAY_INSTALL}")
    parser.add_argument("--gpus-per-run", type=float, default=0.0,
                        help="GPUs each Ray task asks for, e.g. 0.5 for two runs per GPU (default 0: CPU only)")
    return parser.parse_args(argv)


def check_resources(args: argparse.Namespace) -> None:
    """Refuse --threads, --max-parallel and --gpus-per-run values that cannot work."""
    if args.threads < 1 or (args.max_parallel is not None and args.max_parallel < 1):
        raise ValueError("--threads and --max-parallel must be >= 1")
    if args.gpus_per_run < 0:
        raise ValueError(f"--gpus-per-run must be >= 0, got {args.gpus_per_run:g}")
    if args.gpus_per_run > 0 and not args.ray_address:
        raise ValueError("--gpus-per-run needs --ray-address (the local sweep runs one run per GPU)")
    if args.ray_address and args.gpus_per_run == 0 and args.device.startswith("cuda"):
        raise ValueError(f"--device {args.device} on Ray needs --gpus-per-run > 0: "
                         "a run sees only the GPUs it asks for")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_resources(args)
        runs = plan(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {state: sum(run.state == state for run in runs) for state in RunState}
    print(f"{len(runs)} runs: {counts[RunState.NEW]} new, {counts[RunState.RESUMABLE]} to resume, "
          f"{counts[RunState.STARTED]} to restart (no checkpoint), {counts[RunState.FINISHED]} finished")
    if args.dry_run:
        for run in runs:
            print(("# finished: " if run.state == RunState.FINISHED else "") + shlex.join(run.argv[1:]))
        return 0
    ray = None
    try:
        if args.ray_address:
            try:
                ray = start_ray(args.ray_address, args.threads, args.gpus_per_run)
            except ValueError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            # Ray's scheduler queues the tasks by the resources they ask for.
            launcher, max_parallel = RayLauncher(ray, args.threads, args.gpus_per_run), args.max_parallel or len(runs)
        else:
            launcher, max_parallel = LocalLauncher(args.threads), args.max_parallel or default_parallelism(args.threads)
        failed = execute(runs, max_parallel, launcher)
    except KeyboardInterrupt:
        print("\nInterrupted: running runs saved a checkpoint; run the same command to resume.")
        return 130
    finally:
        if ray is not None:
            ray.shutdown()
    for run in failed:
        print(f"\nFAILED ({failure(run)}): {run.run_dir}\n{log_tail(run)}")
    print(f"\n{len(runs) - len(failed)} of {len(runs)} runs finished, {len(failed)} failed. Compare them with:\n"
          f"  python scripts/compare.py {args.runs} --out <report dir>")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
