"""Training throughput on Ms. Pac-Man, measured side by side in one process.

``--agent a2c`` (default): A2C, our stack vs the rl-zoo3 setup, conv and CoordConv.

- ``zoo``: SB3's make_atari_env (AtariWrapper) in a DummyVecEnv + VecFrameStack(4), as rl-zoo3
  trains A2C on Atari;
- ``ours``: AleVecEnv (ale-py's native vector env behind SB3's VecEnv contract).

Both use the same A2C (rl-zoo3 hyperparameters: 16 envs, n_steps 5, RMSpropTFLike) and the same
extractor per arch. Variants are interleaved in rounds; the median agent steps/s over rounds and
the median within-round ratio are reported. ``--profile`` then shows where one update's time goes.

``--agent apex``: our Ape-X-style agent (AleVecEnv, frame-lean prioritized replay, dueling
double-Q 3-step learner, actor-side priorities) vs SB3's DQN with the same envs, batch (512),
replay ratio (one batch per 512 transitions) and 3-step returns, on SB3's own pieces: rl-zoo3's
env stack (DummyVecEnv), ``NStepReplayBuffer``, uniform sampling. Env steps/s and learner
updates/s, after both have filled their replay past ``learning_starts``.

    python scripts/bench_train.py [--device cuda] [--rounds 5] [--steps 2000] [--profile]
    python scripts/bench_train.py --precision fp32,bf16 --threads 1,2   # ours in both precisions vs zoo in fp32
    python scripts/bench_train.py --agent apex [--envs 32] [--initial-priority actor|max] [--with-ray]
    python scripts/bench_train.py --agent apex-learner --precision fp32,bf16   # one learner step, batch 512

``--precision`` (:mod:`rl_coordconv.precision`): our stack in each precision listed; the zoo setup
stays fp32, as rl-zoo3 trains. ``--threads``: the whole measurement at each torch thread count.

``--with-ray`` adds the same agent distributed on a local Ray (``rl_coordconv.agents.distributed``): one rollout
actor with the same envs, the learner in this process, held at the same replay ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import time

import torch

from rl_coordconv.agents.a2c import A2CConfig, make_a2c
from rl_coordconv.agents.allocator import keep_freed_memory
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.precision import PRECISIONS, check_precision, use_precision

BACKENDS = {"zoo": "sb3", "ours": "ale_vector"}


def make_model(stack: str, arch: str, device: str, precision: str = "fp32"):
    config = A2CConfig()
    env = make_atari_vec_env("MsPacman", config.n_envs, seed=0, backend=BACKENDS[stack])
    model = make_a2c(env, arch, config, seed=0, device=device)
    use_precision(model.policy, precision)
    model.learn(config.n_envs * config.n_steps * 5)  # warm-up: first rollouts, allocator, kernels
    return model


def steps_per_second(model, steps: int) -> float:
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def profile(model, steps: int) -> dict[str, float]:
    """Seconds per update spent stepping the env, in rollout inference, in the update, and elsewhere."""
    profiler = cProfile.Profile()
    profiler.enable()
    model.learn(steps, reset_num_timesteps=False)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    cumulative = {}
    for (filename, _, function), (_, _, _, cumtime, _) in stats.items():
        key = (filename.rsplit("/", 2)[-1], function)
        cumulative[key] = cumulative.get(key, 0.0) + cumtime
    total = cumulative[("on_policy_algorithm.py", "learn")]
    env = cumulative[("base_vec_env.py", "step")]
    rollouts = cumulative[("on_policy_algorithm.py", "collect_rollouts")]
    update = cumulative[("a2c.py", "train")]
    updates = steps / (A2CConfig().n_envs * A2CConfig().n_steps)
    parts = {"env step": env, "rollout inference + buffer": rollouts - env, "update (forward+backward+RMSprop)": update}
    parts["other"] = total - rollouts - update
    return {name: 1e3 * seconds / updates for name, seconds in parts.items()}


class RayApeX:
    """The distributed agent (one rollout actor, learner here) behind the ``learn`` call the
    benchmark times."""

    def __init__(self, config, device: str) -> None:
        import functools

        import ray
        from stable_baselines3.common.logger import Logger

        from rl_coordconv.agents.apex import ApeX, apex_kwargs
        from rl_coordconv.agents.distributed import DistributedConfig
        from rl_coordconv.agents.distributed.learner import RayLearnerLoop

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        model = ApeX(
            "CnnPolicy",
            make_atari_vec_env("MsPacman", 1, seed=0),
            seed=0,
            device=device,
            **{**apex_kwargs("conv", config), "buffer_size": 64},
        )
        model.set_logger(Logger(None, []))
        factory = functools.partial(make_atari_vec_env, "MsPacman", config.n_envs, 0)
        self.model = model
        self.trainer = RayLearnerLoop(
            model,
            "conv",
            config,
            DistributedConfig(enabled=True, actors=1),
            [factory],
            seed=0,
            log_interval_seconds=float("inf"),
        )

    def learn(self, steps: int, reset_num_timesteps: bool = True) -> None:
        self.trainer.train(self.model.num_timesteps + steps)

    @property
    def _n_updates(self) -> int:
        return self.model._n_updates

    def close(self) -> None:
        import ray

        self.trainer.close()
        ray.shutdown()


def make_q_agents(n_envs: int, initial_priority: str, device: str, with_ray: bool = False) -> dict:
    """Ours and SB3's DQN with Ape-X's batch and replay ratio, filled past learning_starts."""
    from stable_baselines3 import DQN

    from rl_coordconv.agents.apex import ApeXConfig, make_apex

    config = ApeXConfig(n_envs=n_envs, buffer_size=100_000, learning_starts=10_000, initial_priority=initial_priority)
    ours = make_apex(make_atari_vec_env("MsPacman", n_envs, seed=0), "conv", config, seed=0, device=device)
    # SB3's DQN keeps the replay ratio by a schedule: one batch every train_freq vectorized steps.
    train_freq = max(round(config.batch_size / (n_envs * config.replay_ratio)), 1)
    gradient_steps = max(round(n_envs * config.replay_ratio * train_freq / config.batch_size), 1)
    sb3 = DQN(
        "CnnPolicy",
        make_atari_vec_env("MsPacman", n_envs, seed=0, backend="sb3"),
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
        n_steps=config.return_horizon,
        gamma=config.gamma,
        target_update_interval=2500 * 16,
        seed=0,
        device=device,
    )
    models = {"ours_apex": ours, "sb3_dqn": sb3}
    if with_ray:
        models["ours_apex_ray"] = RayApeX(config, device)
    for model in models.values():
        model.learn(config.learning_starts + 8 * config.batch_size)  # fill, then a few updates: allocator, kernels
    return models


def updates(model) -> int:
    return model._n_updates


def bench_learner(args) -> None:
    """Ape-X learner steps (sample a batch of 512 with its stacks rebuilt, double-Q n-step targets,
    backward, the RMSprop step, priorities back) in each precision, interleaved, on a replay
    filled from Ms. Pac-Man."""
    from rl_coordconv.agents.apex import ApeXConfig, learner_step, make_apex

    fill = 20_000
    config = ApeXConfig(n_envs=16, buffer_size=50_000, learning_starts=fill + 1)  # fill without learning
    models = {}
    for precision in args.precision:
        model = make_apex(make_atari_vec_env("MsPacman", config.n_envs, seed=0), "conv", config, seed=0, device=args.device)
        model.learn(fill)
        use_precision(model.policy, precision)
        models[precision] = model

    def learn(model, steps: int) -> None:
        for _ in range(steps):
            batch = model.replay_buffer.sample(config.batch_size)
            step = learner_step(model.policy, batch, model.max_grad_norm)
            model.replay_buffer.update_priorities(batch.indices, step.td_errors.detach().cpu().numpy())

    for model in models.values():
        learn(model, 2)  # warm-up: allocator, kernels
    print(
        f"Ape-X learner step, batch {config.batch_size}, Nature CNN (conv); device {args.device}; torch threads "
        f"{torch.get_num_threads()}; median of {args.rounds} rounds of {args.updates} steps"
    )
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        for name in random.sample(list(models), len(models)):
            start = time.perf_counter()
            learn(models[name], args.updates)
            rates[name].append(args.updates / (time.perf_counter() - start))
    for name, values in rates.items():
        print(f"  {name:5s} {statistics.median(values):6.2f} learner steps/s")
    if {"fp32", "bf16"} <= set(rates):
        print(f"  bf16 / fp32: {statistics.median(b / f for b, f in zip(rates['bf16'], rates['fp32'])):.2f}x")


def bench_a2c(args) -> None:
    print(
        f"A2C on MsPacman, 16 envs, n_steps 5; device {args.device}; torch threads {torch.get_num_threads()}; "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    variants = [("zoo", arch, "fp32") for arch in ("conv", "coordconv")]
    variants += [("ours", arch, precision) for precision in args.precision for arch in ("conv", "coordconv")]
    models = {
        f"{stack}_{arch}_{precision}": make_model(stack, arch, args.device, precision) for stack, arch, precision in variants
    }
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        order = list(models)
        random.shuffle(order)
        for name in order:
            rates[name].append(steps_per_second(models[name], args.steps))
    for name, values in rates.items():
        print(f"  {name:20s} {statistics.median(values):7.0f} steps/s")

    def ratio(numerator: str, denominator: str) -> float:
        return statistics.median(n / d for n, d in zip(rates[numerator], rates[denominator]))

    for arch in ("conv", "coordconv"):
        for precision in args.precision:
            print(f"  ours {precision} / zoo fp32 ({arch}): {ratio(f'ours_{arch}_{precision}', f'zoo_{arch}_fp32'):.2f}x")
        if {"fp32", "bf16"} <= set(args.precision):
            print(f"  ours bf16 / ours fp32 ({arch}): {ratio(f'ours_{arch}_bf16', f'ours_{arch}_fp32'):.2f}x")
    first = args.precision[0]
    print(
        f"  CoordConv cost on our stack, {first} (conv / coordconv steps/s): "
        f"{ratio(f'ours_conv_{first}', f'ours_coordconv_{first}'):.3f}x"
    )
    if args.profile:
        print("ms per update (80 agent steps):")
        for name in ("zoo_conv_fp32", f"ours_conv_{first}"):
            parts = profile(models[name], args.steps)
            print(
                f"  {name:15s} "
                + " | ".join(f"{part} {ms:.1f}" for part, ms in parts.items())
                + f" | total {sum(parts.values()):.1f}"
            )


def comma_list(text: str, accepted: tuple[str, ...] | None = None, kind=str) -> list:
    values = [kind(item) for item in text.split(",") if item]
    if accepted is not None and (not values or any(value not in accepted for value in values)):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(accepted)}")
    return values


def bench_q_agents(args) -> None:
    print(
        f"Ape-X-style agent vs SB3 DQN on MsPacman, {args.envs} envs, batch 512, replay ratio 1, 3-step; "
        f"initial priorities {args.initial_priority}; device {args.device}; torch threads {torch.get_num_threads()}; "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    models = make_q_agents(args.envs, args.initial_priority, args.device, args.with_ray)
    rates = {name: [] for name in models}
    update_rates = {name: [] for name in models}
    for _ in range(args.rounds):
        order = list(models)
        random.shuffle(order)
        for name in order:
            before, start = updates(models[name]), time.perf_counter()
            models[name].learn(args.steps, reset_num_timesteps=False)
            seconds = time.perf_counter() - start
            rates[name].append(args.steps / seconds)
            update_rates[name].append((updates(models[name]) - before) / seconds)
    for name in models:
        print(
            f"  {name:10s} {statistics.median(rates[name]):7.0f} env steps/s  {statistics.median(update_rates[name]):6.2f} learner updates/s"
        )
    ratio = statistics.median(o / s for o, s in zip(rates["ours_apex"], rates["sb3_dqn"]))
    print(f"  ours / SB3 DQN: {ratio:.2f}x")
    if "ours_apex_ray" in rates:
        ratio = statistics.median(o / s for o, s in zip(rates["ours_apex_ray"], rates["sb3_dqn"]))
        print(f"  ours on Ray (1 actor, held at the replay ratio) / SB3 DQN: {ratio:.2f}x")
        models["ours_apex_ray"].close()


def main() -> None:
    keep_freed_memory()  # as train.py's runs do; for every variant alike, in this one process
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="a2c", choices=("a2c", "apex", "apex-learner"))
    parser.add_argument(
        "--precision",
        default=["fp32"],
        type=lambda text: comma_list(text, PRECISIONS),
        help="comma-separated: fp32, bf16 (default: fp32)",
    )
    parser.add_argument(
        "--threads",
        default=None,
        type=lambda text: comma_list(text, kind=int),
        help="comma-separated torch thread counts, each measured in turn (default: torch's)",
    )
    parser.add_argument("--updates", type=int, default=10, help="learner steps per measurement (apex-learner)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="agent steps per measurement")
    parser.add_argument("--profile", action="store_true", help="also break one measurement down by phase (a2c)")
    parser.add_argument("--envs", type=int, default=32, help="env copies (apex)")
    parser.add_argument("--initial-priority", default="actor", choices=("actor", "max"), help="apex")
    parser.add_argument("--with-ray", action="store_true", help="apex: also the distributed agent on a local Ray")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    try:
        for precision in args.precision:
            check_precision(precision, args.device)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    bench = {"a2c": bench_a2c, "apex": bench_q_agents, "apex-learner": bench_learner}[args.agent]
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        bench(args)


if __name__ == "__main__":
    main()
