"""The agents a run can train, one entry each.

Adding an agent takes one module (its settings dataclass with ``RANGES`` and ``validate``, and
``make_<agent>(env, arch, settings, seed=, device=)``) and one entry here: ``rl-coordconv train
--agent <name>``, ``--set <name>.<key>=...``, config.json, sweeps, checkpoints, evaluation and the
report then take it like the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from rl_coordconv.agents.a2c import A2CConfig, make_a2c
from rl_coordconv.agents.apex import ApeX, ApeXConfig, make_apex
from rl_coordconv.agents.dqn import DQNConfig, make_dqn
from rl_coordconv.agents.ppo import PPOConfig, make_ppo


@dataclass(frozen=True)
class AgentSpec:
    """One agent: the SB3 class that loads its checkpoints, its builder, and its settings class."""

    algorithm: type[BaseAlgorithm]
    make: Callable[..., BaseAlgorithm]  # make(env, arch, settings, seed=, device=)
    settings: type  # a dataclass: ExperimentConfig.<name>, and the keys of --set <name>.<key>=...


AGENTS: dict[str, AgentSpec] = {
    "a2c": AgentSpec(A2C, make_a2c, A2CConfig),
    "ppo": AgentSpec(PPO, make_ppo, PPOConfig),
    "dqn": AgentSpec(DQN, make_dqn, DQNConfig),
    "apex": AgentSpec(ApeX, make_apex, ApeXConfig),
}
