"""Throughput of the sweep against the machine's raw emulator rate.

First the raw ALE rate: ale-py's vector env stepping random actions in K x E envs at once, on
every core, nothing else running (the ceiling of any Atari sweep here). Then K concurrent A2C runs
(conv and CoordConv alternating), E envs each, started through the sweep's own planner, placement
and launcher, each for --steps agent steps. Prints per K the aggregate agent steps/s (the sum of
the runs' own rates, SB3's time/fps, and the wall-clock total), its ratio to the raw rate, and the
hours the paper's A2C comparison (9 games x 2 archs x 5 seeds x 10M steps = 900M) would take.

    python scripts/bench_sweep.py [--runs 1,2] [--envs-per-run 16] [--steps 20000] [--device cpu]
    python scripts/bench_sweep.py --device cuda --runs 1,4,8,16

Take it only while nothing else runs on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rl_coordconv.agents.a2c import A2CConfig
from rl_coordconv.agents.sweep import LocalLauncher, execute, machine_cores, placement, plan
from rl_coordconv.analysis.runs import read_scalars
from rl_coordconv.envs import get_game

PAPER_COMPARISON_STEPS = 9 * 2 * 5 * 10_000_000
SB3_LOG_INTERVAL = 100  # A2C.learn's default: a run writes its time/fps every 100 updates


def raw_ale_rate(game: str, n_envs: int, seconds: float, threads: int) -> float:
    """Agent steps/s (4 frames each) of ale-py's vector env with random actions, all ``n_envs`` at once."""
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(get_game(game).rom, n_envs, num_threads=threads, frameskip=4)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.integers(0, env.single_action_space.n, size=n_envs))
        steps += n_envs
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def sweep_rate(k: int, envs_per_run: int, steps: int, device: str, gpus: int, root: Path) -> tuple[float, float]:
    """(sum of the K runs' own agent steps/s, wall-clock agent steps/s) of K concurrent A2C runs."""
    games = "MsPacman"
    seeds = f"0-{(k - 1) // 2}" if k > 1 else "0"
    jobs = plan(
        games,
        "a2c",
        "conv,coordconv",
        seeds,
        str(steps),
        root,
        device=device,
        overrides=[f"a2c.n_envs={envs_per_run}", "eval_episodes=0", f"checkpoint_every={steps}"],
    )[:k]
    try:
        slots = placement(machine_cores(), gpus, 1, None if gpus == 0 else max(k // gpus, 1))[:k]
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if len(slots) < k:
        raise SystemExit(f"{k} runs do not fit this machine's {len(slots)} slots")
    start = time.perf_counter()
    failed = execute(jobs, k, LocalLauncher(slots), poll_seconds=0.2, progress_bar=False)
    wall = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{len(failed)} runs failed; see {failed[0].run_dir / 'train.log'}")
    own = sum(float(read_scalars(job.run_dir / "tb")["time/fps"].values[-1]) for job in jobs)
    return own, k * steps / wall


def parse_run_counts(text: str) -> list[int]:
    """``"1,4,8"`` -> ``[1, 4, 8]``: how many runs at once each measurement starts (each >= 1)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--runs {text!r}: use comma-separated counts of runs at once, each >= 1, e.g. 1,4,8")
    return counts


def gpus_for(device: str) -> int:
    """The GPUs the runs share for ``--device``: none for ``cpu``, every GPU torch sees for ``cuda``."""
    import torch

    if device == "cpu":
        return 0
    if device != "cuda":
        raise ValueError(f"--device {device!r}: use cpu or cuda (the runs are dealt every GPU, round-robin)")
    if not torch.cuda.is_available():
        raise ValueError(f"--device cuda asked for, but this torch ({torch.__version__}) sees no CUDA GPU; use cpu")
    return torch.cuda.device_count()


def check_steps(steps: int, envs_per_run: int) -> None:
    """Refuse runs too short to log their own rate (``time/fps``, once per ``SB3_LOG_INTERVAL`` updates)."""
    shortest = SB3_LOG_INTERVAL * A2CConfig().n_steps * envs_per_run
    if steps < shortest:
        raise ValueError(
            f"--steps {steps}: a run logs its steps/s every {SB3_LOG_INTERVAL} updates of "
            f"{A2CConfig().n_steps} x {envs_per_run} envs; use at least {shortest}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="1,2", help="comma-separated K: runs at once, e.g. 1,4,8")
    parser.add_argument("--envs-per-run", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20_000, help="agent steps per run")
    parser.add_argument("--raw-seconds", type=float, default=10.0, help="seconds of the raw ALE measurement per K")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (the runs share the GPUs, round-robin)")
    args = parser.parse_args(argv)
    import torch

    try:
        counts = parse_run_counts(args.runs)
        gpus = gpus_for(args.device)
        check_steps(args.steps, args.envs_per_run)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cores = machine_cores()
    print(
        f"{len(cores)} cores, {gpus} GPUs, torch {torch.__version__}; A2C, {args.envs_per_run} envs per run, "
        f"{args.steps:,} steps per run"
    )
    for k in counts:
        raw = raw_ale_rate("MsPacman", k * args.envs_per_run, args.raw_seconds, len(cores))
        with tempfile.TemporaryDirectory() as folder:
            own, wall = sweep_rate(k, args.envs_per_run, args.steps, args.device, gpus, Path(folder))
        print(
            f"K={k:<3d} raw ALE {raw:9,.0f} steps/s ({k * args.envs_per_run} envs) | sweep {own:9,.0f} steps/s "
            f"(wall clock {wall:,.0f}) | ratio {own / raw:.2f} | paper comparison {PAPER_COMPARISON_STEPS / own / 3600:,.1f} h",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
