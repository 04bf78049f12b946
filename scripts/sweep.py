"""Run a grid of experiments: games x agents x archs x seeds, one ``train.py`` process per run.

    python scripts/sweep.py --games MsPacman,Breakout --agents a2c --archs conv,coordconv --seeds 0-4 --timesteps 10M
    python scripts/sweep.py --games paper9 --agents a2c,apex --archs conv,coordconv --seeds 0-2 --timesteps 300k \\
        [--runs runs/] [--max-parallel K] [--device cpu] [--set a2c.n_envs=8] [--dry-run]

Each run is the same single-run code as ``train.py``, in its own process (a crash stays contained),
writing its console output to ``train.log`` in its run directory. Re-running the same command
skips finished runs (final checkpoint at ``--timesteps`` and, unless ``eval_episodes=0``, an
``evaluation.json``) and resumes interrupted ones from their last checkpoint. A failed run is
reported at the end with the tail of its log and does not stop the others; the exit status is 1
when any run failed. Every setting is checked before anything starts.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from agents.config import apply_overrides, parse_steps
from agents.experiment import AGENTS, CHECKPOINT_PREFIX, LOG_FILE, ExperimentConfig, latest_checkpoint, run_directory
from envs import GAMES
from rl_coordconv.extractors import ARCHS

TRAIN = Path(__file__).resolve().parent / "train.py"
GAME_SETS = {"paper9": list(GAMES)}
LOG_TAIL_LINES = 15


@dataclass
class Run:
    config: ExperimentConfig
    run_dir: Path
    state: str  # "new", "resume" (has a checkpoint), "restart" (started, no checkpoint) or "done"
    argv: list[str]
    process: subprocess.Popen | None = None
    returncode: int | None = None


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


def run_is_finished(run_dir: Path, config: ExperimentConfig) -> bool:
    try:
        steps = int(latest_checkpoint(run_dir).stem.split("_")[1])
    except FileNotFoundError:
        return False
    return steps >= config.timesteps and (config.eval_episodes == 0 or (run_dir / "evaluation.json").exists())


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
                    state = _state(run_dir, config)
                    argv = [sys.executable, str(TRAIN), "--game", game, "--agent", agent, "--arch", arch, "--seed", str(seed),
                            "--timesteps", str(timesteps), "--device", args.device, "--runs", str(args.runs), "--no-progress"]
                    argv += [f"--set={item}" for item in agent_overrides]
                    if state == "resume":
                        argv.append("--resume")
                    runs.append(Run(config, run_dir, state, argv))
    return runs


def _state(run_dir: Path, config: ExperimentConfig) -> str:
    if run_is_finished(run_dir, config):
        return "done"
    if list((run_dir / "checkpoints").glob(f"{CHECKPOINT_PREFIX}_*_steps.zip")):
        return "resume"
    if run_dir.exists() and any(path.name != LOG_FILE for path in run_dir.iterdir()):
        return "restart"  # it died before its first checkpoint: nothing to resume from
    return "new"


def default_parallelism(threads_per_run: int) -> int:
    """One run per GPU; on CPU, cores / threads per run."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // threads_per_run)


def launch(run: Run, threads: int) -> None:
    if run.state == "restart":
        shutil.rmtree(run.run_dir)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run.run_dir / LOG_FILE, "a")
    log.write(f"\n$ {shlex.join(run.argv)}\n")
    log.flush()
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRAIN.parents[1]), environment.get("PYTHONPATH")]))
    run.process = subprocess.Popen(run.argv, stdout=log, stderr=subprocess.STDOUT, env=environment)
    log.close()


def log_tail(run: Run, lines: int = LOG_TAIL_LINES) -> str:
    path = run.run_dir / LOG_FILE
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def execute(runs: list[Run], max_parallel: int, threads: int, poll_seconds: float = 0.5) -> list[Run]:
    """Run everything not done, at most ``max_parallel`` at a time; return the failed runs."""
    waiting = [run for run in runs if run.state != "done"]
    running: list[Run] = []
    finished: list[Run] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(waiting), desc="sweep", unit="run")
    try:
        while waiting or running:
            while waiting and len(running) < max_parallel:
                run = waiting.pop(0)
                launch(run, threads)
                running.append(run)
            time.sleep(poll_seconds)
            for run in [run for run in running if run.process.poll() is not None]:
                run.returncode = run.process.returncode
                running.remove(run)
                finished.append(run)
                bar.update()
            failed = sum(run.returncode != 0 for run in finished)
            bar.set_postfix_str(f"running {len(running)}, failed {failed}, left {len(waiting)}")
    except KeyboardInterrupt:
        for run in running:  # train.py saves a checkpoint on Ctrl-C; the next sweep resumes it
            run.process.send_signal(2)
        for run in running:
            run.process.wait()
        raise
    finally:
        bar.close()
    return [run for run in finished if run.returncode != 0]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", required=True, help=f"comma-separated games, or paper9 ({', '.join(GAMES)})")
    parser.add_argument("--agents", default="a2c", help=f"comma-separated: {', '.join(AGENTS)}")
    parser.add_argument("--archs", default="conv,coordconv", help=f"comma-separated: {', '.join(sorted(ARCHS))}")
    parser.add_argument("--seeds", default="0-2", help="e.g. 0-4 or 0,3,7")
    parser.add_argument("--timesteps", required=True, help="agent steps per run, e.g. 10M, 300k")
    parser.add_argument("--runs", default="runs", help="root folder of run directories")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--max-parallel", type=int, default=None, help="runs at once (default: one per GPU, or cores / threads)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run on CPU")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every run, as train.py --set")
    parser.add_argument("--dry-run", action="store_true", help="print one train.py command line per run and stop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.threads < 1 or (args.max_parallel is not None and args.max_parallel < 1):
            raise ValueError("--threads and --max-parallel must be >= 1")
        runs = plan(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {state: sum(run.state == state for run in runs) for state in ("new", "resume", "restart", "done")}
    print(f"{len(runs)} runs: {counts['new']} new, {counts['resume']} to resume, {counts['restart']} to restart "
          f"(no checkpoint), {counts['done']} finished")
    if args.dry_run:
        for run in runs:
            print(("# finished: " if run.state == "done" else "") + shlex.join(run.argv[1:]))
        return 0
    max_parallel = args.max_parallel or default_parallelism(args.threads)
    try:
        failed = execute(runs, max_parallel, args.threads)
    except KeyboardInterrupt:
        print("\nInterrupted: running runs saved a checkpoint; run the same command to resume.")
        return 130
    for run in failed:
        print(f"\nFAILED (exit {run.returncode}): {run.run_dir}\n{log_tail(run)}")
    print(f"\n{len(runs) - len(failed)} of {len(runs)} runs finished, {len(failed)} failed. Compare them with:\n"
          f"  python scripts/compare.py {args.runs} --out <report dir>")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
