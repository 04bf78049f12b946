"""SB3's own DQN with the rl-zoo3 Atari hyperparameters: the vanilla reference for the Ape-X agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import VecEnv

from rl_coordconv.agents.config import (
    AT_LEAST_ONE,
    DISCOUNT,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    Range,
    check_env_copies,
    check_ranges,
)
from rl_coordconv.extractors import policy_kwargs_for


@dataclass
class DQNConfig:
    """rl-zoo3's ``dqn.yml`` Atari entry (frame stack 4 comes from the env)."""

    n_envs: int = 1
    buffer_size: int = 100_000
    learning_starts: int = 100_000
    batch_size: int = 32
    learning_rate: float = 1e-4
    target_update_interval: int = 1000  # env steps
    train_freq: int = 4  # env steps per gradient step
    gradient_steps: int = 1
    gamma: float = 0.99
    exploration_fraction: float = 0.1  # of the run's timesteps
    exploration_final_eps: float = 0.01
    optimize_memory_usage: bool = False

    RANGES: ClassVar[dict[str, Range]] = {
        "n_envs": AT_LEAST_ONE,
        "buffer_size": AT_LEAST_ONE,
        "learning_starts": NON_NEGATIVE,
        "batch_size": AT_LEAST_ONE,
        "learning_rate": POSITIVE,
        "target_update_interval": AT_LEAST_ONE,
        "train_freq": AT_LEAST_ONE,
        "gradient_steps": AT_LEAST_ONE,
        "gamma": DISCOUNT,
        "exploration_fraction": PROBABILITY,
        "exploration_final_eps": PROBABILITY,
    }

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of its range and what is accepted."""
        check_ranges(self, self.RANGES, "dqn")


def make_dqn(env: VecEnv, arch: str, config: DQNConfig, *, seed: int | None = None, device: str = "auto") -> DQN:
    """An SB3 ``DQN`` on ``env`` whose CNN is ``ARCHS[arch]`` (Adam, SB3's default optimizer)."""
    check_env_copies(env, config, "dqn")
    return DQN(
        "CnnPolicy",
        env,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        gamma=config.gamma,
        train_freq=config.train_freq,
        gradient_steps=config.gradient_steps,
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.exploration_fraction,
        exploration_final_eps=config.exploration_final_eps,
        optimize_memory_usage=config.optimize_memory_usage,
        # SB3 refuses optimize_memory_usage with its timeout handling; rl-zoo3 turns the latter off.
        replay_buffer_kwargs={"handle_timeout_termination": not config.optimize_memory_usage},
        policy_kwargs=policy_kwargs_for(arch),
        seed=seed,
        device=device,
        verbose=0,
    )
