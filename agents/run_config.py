"""The settings of one run: :class:`ExperimentConfig`, what config.json's ``config`` section holds.

Below the experiment and the trainers (they import it; it imports neither), so that every module
that speaks of a run's settings sees one plain dataclass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rl_coordconv.agents.a2c import A2CConfig
from rl_coordconv.agents.apex import ApeXConfig
from rl_coordconv.agents.config import AT_LEAST_ONE, NON_NEGATIVE, SEED, Range, with_current_names
from rl_coordconv.agents.distributed import DistributedConfig
from rl_coordconv.agents.dqn import DQNConfig
from rl_coordconv.agents.ppo import PPOConfig
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.devices import check_device, resolve_device
from rl_coordconv.envs import BACKENDS, get_game
from rl_coordconv.extractors import ARCHS
from rl_coordconv.precision import check_precision


@dataclass
class ExperimentConfig:
    """What defines one run: the game, agent, arch, seed and budget, and the settings of every
    agent of the registry (one field each, ``a2c``, ``ppo``, ``dqn``, ``apex``), of which only the
    chosen agent's are used. Defaults: A2C on Ms. Pac-Man for 10M agent steps."""

    game: str = "MsPacman"
    agent: str = "a2c"
    arch: str = "conv"
    seed: int = 0
    timesteps: int = 10_000_000  # agent steps (4 emulator frames each), summed over envs
    device: str = "auto"
    backend: str = "ale_vector"
    checkpoint_every: int = 500_000  # agent steps
    eval_episodes: int = 10  # full games in the final evaluation; 0 skips it
    precision: str = "fp32"  # "bf16": the feature extractor computes in bfloat16 (rl_coordconv.precision)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # apex only
    # One field per agent of rl_coordconv.agents.registry.AGENTS, named as there.
    a2c: A2CConfig = field(default_factory=A2CConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    apex: ApeXConfig = field(default_factory=ApeXConfig)

    RANGES: ClassVar[dict[str, Range]] = {
        "seed": SEED,
        "timesteps": AT_LEAST_ONE,
        "checkpoint_every": AT_LEAST_ONE,
        "eval_episodes": NON_NEGATIVE,
    }

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        get_game(self.game)
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose one of {tuple(AGENTS)}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        self.agent_config.validate()
        for name, accepted in self.RANGES.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"{name} must be in {accepted}, got {getattr(self, name)}")
        check_device(self.device)
        check_precision(self.precision, resolve_device(self.device))
        if self.distributed.enabled:
            if self.agent != "apex":
                raise ValueError(f"distributed training is for the apex agent, not {self.agent!r}")
            self.distributed.validate()
            check_precision(self.precision, "cpu")  # the rollout actors act on CPU

    @property
    def agent_config(self) -> Any:
        """The settings of the chosen agent, e.g. ``self.a2c``."""
        return getattr(self, self.agent)

    @property
    def n_envs(self) -> int:
        return self.agent_config.n_envs


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """The inverse of ``dataclasses.asdict`` for :class:`ExperimentConfig`."""
    values = dict(values)
    for field_ in dataclasses.fields(ExperimentConfig):
        nested = field_.default_factory if field_.default_factory is not dataclasses.MISSING else None
        if nested is not None and field_.name in values:
            values[field_.name] = nested(**with_current_names(nested, values[field_.name]))
    return ExperimentConfig(**values)


def agent_of(override: str) -> str | None:
    """The agent whose settings ``override`` changes (``"apex.batch_size=64"`` -> ``"apex"``), or None."""
    prefix = override.split("=", 1)[0].strip().split(".")[0]
    return prefix if prefix in AGENTS else None


def check_overrides(overrides: list[str], agents: list[str], options: dict[str, str]) -> None:
    """Refuse a ``--set`` that would be ignored or would go behind a command's option: one for an
    agent not in ``agents``, or one of ``options``' keys (a setting -> the option that sets it,
    e.g. ``{"seed": "--seeds"}``)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in options:
            raise ValueError(f"--set {item!r}: use {options[key]} for the {key}")
        if agent_of(item) not in (None, *agents):
            raise ValueError(
                f"--set {item!r}: a setting of {agent_of(item)}, which does not run here (the agents are {', '.join(agents)})"
            )
