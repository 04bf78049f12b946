"""The sweep: every run of a grid of games x agents x archs x seeds, each one ``rl-coordconv train``
process, at most K at a time, on this machine or as Ray tasks on a cluster.

A run's state (:func:`rl_coordconv.rundir.run_state`) decides what happens to it: a finished run is
skipped, a resumable one resumed from its last checkpoint, one that died before its first checkpoint
started afresh. A failed run (an exit code other than 0, a signal, a Ray task that died) is
reported with the tail of its ``train.log`` and does not stop the others.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rl_coordconv.agents.config import apply_overrides, parse_steps
from rl_coordconv.agents.distributed import require_ray, start_ray
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.run_config import ExperimentConfig, agent_of, check_overrides
from rl_coordconv.envs import GAMES
from rl_coordconv.extractors import ARCHS
from rl_coordconv.rundir import LOG_FILE, RunState, run_directory, run_state

# The train command, run in a process of its own by every job (any node with the venv has it).
TRAIN_COMMAND = [sys.executable, "-m", "rl_coordconv", "train"]
GAME_SETS = {"paper9": list(GAMES)}
# The settings that the sweep's own options give each run: a --set of one would take every run into
# the same run directories.
SWEEP_OPTIONS = {
    "game": "--games",
    "agent": "--agents",
    "arch": "--archs",
    "seed": "--seeds",
    "timesteps": "--timesteps",
    "device": "--device",
}
LOG_TAIL_LINES = 15
INTERRUPT_GRACE_SECONDS = 120  # how long an interrupted run may take to save its checkpoint


@dataclass
class SweepJob:
    """One run of the grid: its config and directory, its state when planned, its train command,
    and, once it ran, how it ended."""

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


def plan(
    games: str,
    agents: str,
    archs: str,
    seeds: str,
    timesteps: str,
    runs: Path | str,
    *,
    device: str = "auto",
    overrides: list[str] = (),
) -> list[SweepJob]:
    """Every run of the grid with its state and its train command line; every setting checked.

    :param games, agents, archs: comma-separated names (``games`` may be a set such as ``paper9``).
    :param seeds: e.g. ``"0-4"`` or ``"0,3,7"``. :param timesteps: e.g. ``"10M"``.
    :param overrides: ``--set`` items, each for every run of the agents it names.
    :raises ValueError: an unknown name, a bad range, or a setting out of its range.
    """
    games = parse_names(games, list(GAMES), "game", GAME_SETS)
    agents = parse_names(agents, list(AGENTS), "agent")
    archs = parse_names(archs, sorted(ARCHS), "arch")
    seeds = parse_seeds(seeds)
    timesteps = parse_steps(timesteps)
    overrides = list(overrides)
    check_overrides(overrides, agents, SWEEP_OPTIONS)
    jobs = []
    # Seed-major, so that an interrupted sweep leaves every arch with the same seeds.
    for seed in seeds:
        for game in games:
            for agent in agents:
                for arch in archs:
                    config = ExperimentConfig(game=game, agent=agent, arch=arch, seed=seed, timesteps=timesteps, device=device)
                    agent_overrides = [item for item in overrides if agent_of(item) in (None, agent)]
                    apply_overrides(config, agent_overrides)
                    config.validate()
                    run_dir = run_directory(runs, config)
                    state = run_state(run_dir, config.timesteps, config.eval_episodes)
                    argv = [
                        *TRAIN_COMMAND,
                        "--game",
                        game,
                        "--agent",
                        agent,
                        "--arch",
                        arch,
                        "--seed",
                        str(seed),
                        "--timesteps",
                        str(timesteps),
                        "--device",
                        device,
                        "--runs",
                        str(runs),
                        "--no-progress",
                    ]
                    argv += [f"--set={item}" for item in agent_overrides]
                    if state == RunState.RESUMABLE:
                        argv.append("--resume")
                    jobs.append(SweepJob(config, run_dir, state, argv))
    return jobs


@dataclass(frozen=True)
class Slot:
    """Where one run of a local sweep runs: its own cores (CPU affinity), its device, and as
    many torch and emulator threads as it has cores."""

    cores: tuple[int, ...]
    device: str  # "cpu" or "cuda:<index>"

    @property
    def threads(self) -> int:
        return len(self.cores)

    def describe(self) -> str:
        first, last = self.cores[0], self.cores[-1]
        cores = f"core {first}" if first == last else f"cores {first}-{last}"
        return f"{cores}, {self.device}, {self.threads} thread{'s' if self.threads != 1 else ''}"


def machine_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity, which respects container limits)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def placement(cores: list[int], gpus: int, threads: int = 1, runs_per_gpu: int | None = None) -> list[Slot]:
    """The slots of a local sweep: runs packed onto the machine, no core given twice.

    - Without GPUs: ``len(cores) // threads`` runs of ``threads`` cores each.
    - With ``gpus`` GPUs: ``runs_per_gpu`` runs per GPU (default: enough to give every core a run,
      ``len(cores) // gpus``), the cores split evenly among all runs, GPUs dealt round-robin.

    :raises ValueError: more runs than cores, or more threads per run than cores.
    """
    if threads < 1 or (runs_per_gpu is not None and runs_per_gpu < 1):
        raise ValueError(f"--threads and --runs-per-gpu must be >= 1, got {threads} and {runs_per_gpu}")
    if gpus == 0:
        if runs_per_gpu is not None:
            raise ValueError("--runs-per-gpu needs a GPU, and this machine shows none (torch.cuda)")
        if threads > len(cores):
            raise ValueError(f"--threads {threads} is more than the {len(cores)} cores this sweep may use")
        count, per_run = len(cores) // threads, threads
    else:
        count = gpus * (runs_per_gpu or max(len(cores) // gpus, 1))
        if count > len(cores):
            raise ValueError(
                f"{runs_per_gpu} runs per GPU x {gpus} GPUs = {count} runs, more than the "
                f"{len(cores)} cores this sweep may use: each run needs a core of its own"
            )
        per_run = len(cores) // count
    return [
        Slot(tuple(cores[index * per_run : (index + 1) * per_run]), f"cuda:{index % gpus}" if gpus else "cpu")
        for index in range(count)
    ]


def local_slots(device: str, cores: list[int], gpus: int, threads: int = 1, runs_per_gpu: int | None = None) -> list[Slot]:
    """The slots of a local sweep whose runs ask for ``device``, on a machine with ``gpus`` GPUs.

    - ``auto`` and ``cuda``: every GPU dealt round-robin (:func:`placement`); ``auto`` without a
      GPU gets CPU slots.
    - ``cuda:<index>``: the user's choice, kept: every slot on that GPU, ``runs_per_gpu`` of them
      (default: one per core), as if the machine had that one GPU.
    - ``cpu`` (or ``cpu:<index>``): CPU slots.

    :raises ValueError: ``runs_per_gpu`` with a CPU device, or a placement that cannot fit.
    """
    if device.startswith("cuda:"):
        return [replace(slot, device=device) for slot in placement(cores, 1, threads, runs_per_gpu)]
    if device not in ("auto", "cuda"):
        if runs_per_gpu is not None:
            raise ValueError(
                f"--runs-per-gpu packs runs onto GPUs, and --device {device} uses none; "
                "use --device auto, cuda or cuda:<index>"
            )
        gpus = 0
    return placement(cores, gpus, threads, runs_per_gpu)


def run_device(requested: str, slot: Slot) -> str:
    """The device a run that asks for ``requested`` uses in ``slot``: ``auto`` and ``cuda`` take
    the slot's GPU; anything else (``cpu``, an explicit ``cuda:<index>``) is kept."""
    return slot.device if requested in ("auto", "cuda") and slot.device != "cpu" else requested


def prepare(run: SweepJob) -> None:
    """Make the run's directory: emptied for a restart, kept (with its checkpoints) for a resume."""
    if run.state == RunState.STARTED:  # it died before its first checkpoint: nothing to resume from
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True, exist_ok=True)


def start_train(
    argv: list[str], run_dir: Path, threads: int, extra_environment: dict[str, str] | None = None, **popen_options: Any
) -> subprocess.Popen:
    """Start the train command ``argv`` with ``threads`` torch threads, its output appended to
    the run's train.log; ``popen_options`` go to ``subprocess.Popen``."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    environment.update(extra_environment or {})
    with open(run_dir / LOG_FILE, "a") as log:
        log.write(f"\n$ {shlex.join(argv)}\n")
        log.flush()
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, **popen_options)


def log_tail(run: SweepJob, lines: int = LOG_TAIL_LINES) -> str:
    path = run.run_dir / LOG_FILE
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


class LocalLauncher:
    """Runs each train command as a child process of this one, in a free :class:`Slot`: pinned to
    the slot's cores (CPU affinity), with as many threads, on the slot's GPU when the sweep's
    ``--device`` is ``auto`` or ``cuda`` (:func:`run_device`)."""

    def __init__(self, slots: list[Slot]):
        if not slots:
            raise ValueError("a local sweep needs at least one slot")
        self.free = list(slots)
        self.slot_of: dict[int, Slot] = {}  # id(run) -> its slot

    def start(self, run: SweepJob) -> None:
        prepare(run)
        slot = self.free.pop(0)
        argv = list(run.argv)
        if "--device" in argv:
            argv[argv.index("--device") + 1] = run_device(argv[argv.index("--device") + 1], slot)
        pin = (lambda: os.sched_setaffinity(0, slot.cores)) if hasattr(os, "sched_setaffinity") else None
        run.process = start_train(argv, run.run_dir, slot.threads, preexec_fn=pin)
        self.slot_of[id(run)] = slot

    def wait(self, running: list[SweepJob], seconds: float) -> list[SweepJob]:
        """Wait ``seconds``; return the runs that ended, with their ``returncode`` set."""
        time.sleep(seconds)
        ended = [run for run in running if run.process.poll() is not None]
        for run in ended:
            run.returncode = run.process.returncode
            self.free.append(self.slot_of.pop(id(run)))
        return ended

    def interrupt(self, running: list[SweepJob]) -> None:
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
    process = start_train(argv, Path(run_dir), threads, hide_gpus, cwd=cwd, start_new_session=True, preexec_fn=prepare_child)
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
        self.ray = ray
        self.threads = threads
        self.gpus = gpus
        # No retries: a run whose worker died is reported like any failed run, and the next sweep resumes it.
        self.task = ray.remote(train_on_worker).options(num_cpus=threads, num_gpus=gpus, max_retries=0)

    def start(self, run: SweepJob) -> None:
        prepare(run)
        run.task = self.task.remote(run.argv, str(run.run_dir.resolve()), self.threads, os.getcwd(), self.gpus > 0)

    def wait(self, running: list[SweepJob], seconds: float) -> list[SweepJob]:
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

    def interrupt(self, running: list[SweepJob]) -> None:
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


def ray_for_runs(address: str, threads: int, gpus: float) -> Any:
    """Join the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``), or start one on this
    machine (``local``), and check that some node can hold a run of ``threads`` CPUs and ``gpus``
    GPUs. Returns the ``ray`` module.

    :raises ValueError: Ray is not installed, cannot be joined, or no node can hold a run.
    """
    try:
        ray = require_ray("--ray-address")
    except ImportError as error:
        raise ValueError(str(error)) from None
    started = start_ray(address, quiet=True)
    try:
        check_cluster_fits(ray, threads, gpus)
    except BaseException:
        if started:
            ray.shutdown()  # a cluster too small for a run
        raise
    return ray


def check_cluster_fits(ray: Any, cpus: int, gpus: float) -> None:
    """Refuse runs that no node of the cluster can hold (Ray would queue them forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        sizes = ", ".join(f"{node.get('CPU', 0):g} CPUs and {node.get('GPU', 0):g} GPUs" for node in nodes)
        raise ValueError(
            f"each run asks for {cpus} CPUs (--threads) and {gpus:g} GPUs (--gpus-per-run), "
            f"but no node of the Ray cluster has that much (its nodes: {sizes})"
        )


def execute(
    runs: list[SweepJob],
    max_parallel: int,
    launcher: LocalLauncher | RayLauncher,
    poll_seconds: float = 0.5,
    progress_bar: bool = True,
) -> list[SweepJob]:
    """Run everything not done with ``launcher``, at most ``max_parallel`` at a time; return the failed runs."""
    waiting = [run for run in runs if run.state != RunState.FINISHED]
    running: list[SweepJob] = []
    finished: list[SweepJob] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(waiting), desc="sweep", unit="run", disable=not progress_bar)
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


def has_failed(run: SweepJob) -> bool:
    """Whether ``run`` ended with a non-zero exit code or its Ray task failed."""
    return run.error is not None or run.returncode != 0


def failure(run: SweepJob) -> str:
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
