"""Distributed Ape-X throughput on Ms. Pac-Man: 1 and 2 rollout actors vs the single-machine agent.

Each variant trains the same network (conv), batch, learning rate and envs per actor, first to
``--warmup`` transitions (past ``learning_starts``), then ``--steps`` more, over which it reports
env frames/s (4 per agent step) and learner updates/s. Distributed variants run free (as Ape-X:
actors never wait, ``hold_replay_ratio=False``) and held at the replay ratio (the default); the
single-machine agent is held by construction. Also measured, without Ray: what one replay shard
can take in (transitions/s through ``add_block``) and serve (batches/s), and the bytes per
transition an actor sends, which with the per-actor frame rate model the scaling in
docs/scaling.md.

    python scripts/bench_distributed.py [--actors 1,2] [--envs 16] [--batch 128] [--steps 20000] [--device cuda]
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np
import ray
import torch
from stable_baselines3.common.logger import Logger

from rl_coordconv.agents.allocator import keep_freed_memory
from rl_coordconv.agents.apex import ApeX, ApeXConfig, apex_kwargs, make_apex, replay_kwargs
from rl_coordconv.agents.distributed import DistributedConfig
from rl_coordconv.agents.distributed.blocks import StepBlockBuilder
from rl_coordconv.agents.distributed.learner import RayLearnerLoop
from rl_coordconv.agents.distributed.shard import ReplayShard
from rl_coordconv.envs import make_atari_vec_env

GAME = "MsPacman"


def apex_config(args: argparse.Namespace) -> ApeXConfig:
    return ApeXConfig(n_envs=args.envs, buffer_size=200_000, learning_starts=args.warmup // 2, batch_size=args.batch)


def single_machine(args: argparse.Namespace) -> dict[str, float]:
    config = apex_config(args)
    model = make_apex(make_atari_vec_env(GAME, config.n_envs, seed=0), "conv", config, seed=0, device=args.device)
    model.learn(args.warmup)
    steps, start = model.learner_steps, time.perf_counter()
    model.learn(args.steps, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    return {"frames_per_s": 4 * args.steps / seconds, "updates_per_s": (model.learner_steps - steps) / seconds}


def distributed(args: argparse.Namespace, actors: int, hold: bool) -> dict[str, float]:
    config = apex_config(args)
    env = make_atari_vec_env(GAME, 1, seed=0)
    model = ApeX("CnnPolicy", env, seed=0, device=args.device, **{**apex_kwargs("conv", config), "buffer_size": 64})
    model.set_logger(Logger(None, []))
    factories = [functools.partial(make_atari_vec_env, GAME, config.n_envs, actor * config.n_envs) for actor in range(actors)]
    settings = DistributedConfig(enabled=True, actors=actors, hold_replay_ratio=hold)
    # One log line over the whole measured window: no periodic logs inside it.
    trainer = RayLearnerLoop(model, "conv", config, settings, factories, seed=0, log_interval_seconds=float("inf"))
    try:
        trainer.train(args.warmup)
        trainer.log()  # starts the measured window
        steps, transitions, start = model.learner_steps, model.num_timesteps, time.perf_counter()
        trainer.train(args.warmup + args.steps)
        seconds = time.perf_counter() - start
        values = trainer.log()
    finally:
        trainer.close()
    per_actor = [
        values[f"distributed/actor{k}_frames_per_s"] for k in range(actors) if f"distributed/actor{k}_frames_per_s" in values
    ]
    return {
        "frames_per_s": 4 * (model.num_timesteps - transitions) / seconds,
        "updates_per_s": (model.learner_steps - steps) / seconds,
        "actor_frames_per_s": float(np.mean(per_actor)),
        "bytes_per_transition": values["distributed/bytes_per_transition_sent"],
        "weight_lag_mean": values.get("distributed/weight_lag_mean", float("nan")),
    }


def shard_capacity(args: argparse.Namespace) -> dict[str, float]:
    """One shard in this process: transitions/s it adds from blocks, batches/s it samples."""
    config = apex_config(args)
    env = make_atari_vec_env(GAME, config.n_envs, seed=0)
    observations = env.reset()
    builder, blocks = StepBlockBuilder(observations), []
    rng = np.random.default_rng(0)
    for _ in range(8):
        for _ in range(64):
            actions = rng.integers(env.action_space.n, size=config.n_envs)
            q = rng.normal(size=config.n_envs).astype(np.float32)
            observations, rewards, dones, infos = env.step(actions)
            builder.add(actions, q, q, observations, rewards, dones, infos)
        blocks.append(builder.build(observations))
    shard = ReplayShard([0], config.n_envs, 200_000, env.observation_space, env.action_space, replay_kwargs(config), seed=0)
    env.close()
    start = time.perf_counter()
    for block in blocks:
        shard.add_block(0, block)
    add_rate = sum(block.transitions for block in blocks) / (time.perf_counter() - start)
    start, batches = time.perf_counter(), 20
    for _ in range(batches):
        batch = shard.sample(512)
        shard.update_priorities(batch.indices, rng.normal(size=512))
    return {
        "add_transitions_per_s": add_rate,
        "sample_batches_512_per_s": batches / (time.perf_counter() - start),
        "block_bytes_per_transition": blocks[0].nbytes / blocks[0].transitions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=16, help="env copies per actor (and of the single-machine agent)")
    parser.add_argument("--batch", type=int, default=128, help="learner batch size")
    parser.add_argument("--warmup", type=int, default=8000, help="transitions before the measured window")
    parser.add_argument("--steps", type=int, default=20000, help="transitions measured")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--actors", default="1,2", help="rollout actor counts to measure, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as train.py's runs do (the rollout actors set it themselves)
    print(
        f"{os.cpu_count()} cores, torch {torch.__version__}, ray {ray.__version__}, device {args.device}; "
        f"{args.envs} envs per actor, batch {args.batch}, replay ratio 1, {args.steps:,} transitions measured"
    )

    shard = shard_capacity(args)
    print(
        f"one replay shard, one core: adds {shard['add_transitions_per_s']:,.0f} transitions/s from blocks, "
        f"samples {shard['sample_batches_512_per_s']:.0f} batches of 512/s with priority updates; "
        f"{shard['block_bytes_per_transition']:,.0f} bytes sent per transition"
    )

    results = {"single-machine agent": single_machine(args)}
    counts = [int(count) for count in args.actors.split(",")]
    ray.init(num_cpus=max(os.cpu_count() or 1, *counts), include_dashboard=False, log_to_driver=False)
    try:
        for actors in counts:
            for hold in (False, True):
                results[f"{actors} actor{'s' if actors > 1 else ''}, {'held at ratio 1' if hold else 'free'}"] = distributed(
                    args, actors, hold
                )
    finally:
        ray.shutdown()
    base = results["single-machine agent"]
    print(f"{'variant':<28} {'frames/s':>9} {'x single':>9} {'updates/s':>10} {'per actor':>10} {'weight lag':>10}")
    for name, values in results.items():
        print(
            f"{name:<28} {values['frames_per_s']:9.0f} {values['frames_per_s'] / base['frames_per_s']:9.2f} "
            f"{values['updates_per_s']:10.2f} {values.get('actor_frames_per_s', float('nan')):10.0f} "
            f"{values.get('weight_lag_mean', float('nan')):10.1f}"
        )


if __name__ == "__main__":
    main()
