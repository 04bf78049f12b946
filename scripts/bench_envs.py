"""Agent steps per second of vectorized Atari with random actions, all backends in one run.

Compares our ale_vector adapter (AleVecEnv) with SB3's reference (make_atari_env + VecFrameStack,
in DummyVecEnv and SubprocVecEnv) and with ale-py's raw AtariVectorEnv (no SB3 contract), at 8 and
16 envs. Variants are interleaved in each round; medians over rounds are reported, and the ratios
are taken within a round.

    python scripts/bench_envs.py [--game MsPacman] [--envs 8 16] [--rounds 9] [--steps 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import numpy as np

from rl_coordconv.envs import get_game, make_atari_vec_env


class RawAle:
    """ale-py's AtariVectorEnv as it comes, with the adapter's settings."""

    def __init__(self, game: str, n_envs: int) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.env = AtariVectorEnv(get_game(game).rom, n_envs, reward_clipping=False, life_loss_info=True)
        self.env.reset(seed=0)

    def step(self, actions: np.ndarray) -> None:
        self.env.step(actions)

    def close(self) -> None:
        self.env.close()


def make_variants(game: str, n_envs: int) -> dict:
    variants = {
        "sb3_dummy": make_atari_vec_env(game, n_envs, seed=0, backend="sb3"),
        "sb3_subproc": make_atari_vec_env(game, n_envs, seed=0, backend="sb3", subprocess=True),
        "ale_vector": make_atari_vec_env(game, n_envs, seed=0),
    }
    for env in variants.values():
        env.reset()
    variants["raw_ale"] = RawAle(game, n_envs)
    return variants


def steps_per_second(env, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return actions.size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="MsPacman")
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=300, help="vector steps per measurement")
    args = parser.parse_args()
    print(f"{args.game}, random actions, agent steps/s; {os.cpu_count()} CPUs; median of {args.rounds} rounds")
    rng = np.random.default_rng(0)
    for n_envs in args.envs:
        variants = make_variants(args.game, n_envs)
        n_actions = variants["ale_vector"].action_space.n
        rates = {name: [] for name in variants}
        for _ in range(args.rounds):
            actions = rng.integers(0, n_actions, size=(args.steps, n_envs)).astype(np.int32)
            order = list(variants)
            random.shuffle(order)
            for name in order:
                rates[name].append(steps_per_second(variants[name], actions))
        for env in variants.values():
            env.close()
        median = {name: statistics.median(values) for name, values in rates.items()}
        ratio = lambda a, b, rates=rates: statistics.median(x / y for x, y in zip(rates[a], rates[b]))  # noqa: E731
        print(
            f"{n_envs:2d} envs: "
            + " | ".join(f"{name} {median[name]:,.0f}" for name in rates)
            + f"\n         ale_vector / sb3_subproc = {ratio('ale_vector', 'sb3_subproc'):.2f}x, "
            f"ale_vector / sb3_dummy = {ratio('ale_vector', 'sb3_dummy'):.2f}x, "
            f"ale_vector / raw_ale = {ratio('ale_vector', 'raw_ale'):.1%}"
            f"\n         raw_ale / sb3_subproc = {ratio('raw_ale', 'sb3_subproc'):.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
