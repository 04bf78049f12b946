"""A2C with the rl-zoo3 Atari hyperparameters and any feature extractor from ``ARCHS``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stable_baselines3 import A2C
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
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
class A2CConfig:
    """rl-zoo3's ``a2c.yml`` Atari entry (frame stack 4 comes from the env)."""

    n_envs: int = 16
    n_steps: int = 5
    learning_rate: float = 7e-4
    ent_coef: float = 0.01
    vf_coef: float = 0.25
    gamma: float = 0.99
    gae_lambda: float = 1.0
    max_grad_norm: float = 0.5
    rmsprop_eps: float = 1e-5  # RMSpropTFLike: epsilon inside the square root, as in TF

    RANGES: ClassVar[dict[str, Range]] = {
        "n_envs": AT_LEAST_ONE,
        "n_steps": AT_LEAST_ONE,
        "learning_rate": POSITIVE,
        "ent_coef": NON_NEGATIVE,
        "vf_coef": NON_NEGATIVE,
        "gamma": DISCOUNT,
        "gae_lambda": PROBABILITY,
        "max_grad_norm": POSITIVE,
        "rmsprop_eps": POSITIVE,
    }

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of its range and what is accepted."""
        check_ranges(self, self.RANGES, "a2c")


def make_a2c(env: VecEnv, arch: str, config: A2CConfig, *, seed: int | None = None, device: str = "auto") -> A2C:
    """An SB3 ``A2C`` on ``env`` whose CNN is ``ARCHS[arch]``, optimised with ``RMSpropTFLike``."""
    check_env_copies(env, config, "a2c")
    policy_kwargs = policy_kwargs_for(arch)
    policy_kwargs.update(optimizer_class=RMSpropTFLike, optimizer_kwargs={"eps": config.rmsprop_eps})
    return A2C(
        "CnnPolicy",
        env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device=device,
        verbose=0,
    )
