"""PPO with the rl-zoo3 Atari hyperparameters and any feature extractor from ``ARCHS``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.utils import LinearSchedule
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
class PPOConfig:
    """rl-zoo3's ``ppo.yml`` Atari entry (frame stack 4 comes from the env): the learning rate and
    the clip range fall linearly to 0 over the run (``lin_2.5e-4``, ``lin_0.1``)."""

    n_envs: int = 8
    n_steps: int = 128  # env steps per env per rollout
    batch_size: int = 256  # minibatch, in transitions
    n_epochs: int = 4
    learning_rate: float = 2.5e-4  # at the start; linear to 0
    clip_range: float = 0.1  # at the start; linear to 0
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5

    RANGES: ClassVar[dict[str, Range]] = {
        "n_envs": AT_LEAST_ONE,
        "n_steps": AT_LEAST_ONE,
        "batch_size": Range(2),
        "n_epochs": AT_LEAST_ONE,
        "learning_rate": POSITIVE,
        "clip_range": POSITIVE,
        "ent_coef": NON_NEGATIVE,
        "vf_coef": NON_NEGATIVE,
        "gamma": DISCOUNT,
        "gae_lambda": PROBABILITY,
        "max_grad_norm": POSITIVE,
    }

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        check_ranges(self, self.RANGES, "ppo")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(
                f"ppo.batch_size ({self.batch_size}) must be at most a rollout, ppo.n_steps x "
                f"ppo.n_envs = {self.n_steps * self.n_envs} transitions"
            )


def make_ppo(env: VecEnv, arch: str, config: PPOConfig, *, seed: int | None = None, device: str = "auto") -> PPO:
    """An SB3 ``PPO`` on ``env`` whose CNN is ``ARCHS[arch]`` (Adam, SB3's default optimizer)."""
    check_env_copies(env, config, "ppo")
    return PPO(
        "CnnPolicy",
        env,
        learning_rate=LinearSchedule(config.learning_rate, 0.0, 1.0),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=LinearSchedule(config.clip_range, 0.0, 1.0),
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs_for(arch),
        seed=seed,
        device=device,
        verbose=0,
    )
