"""How a run's model learns, behind one small interface: SB3's own learn loop on this machine
(:class:`LocalTrainer`), or the Ray learner loop with rollout actors and replay shards
(:class:`rl_coordconv.agents.distributed.run.RayTrainer`).

:func:`rl_coordconv.agents.experiment.run_experiment` chooses one trainer class once, from the
config, and from there on speaks only this interface: the class builds the env copies and the
model it needs, and the trainer restores, learns, checkpoints and closes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv

from rl_coordconv.agents.checkpoints import RunCheckpointCallback, restore_replay, save_checkpoint
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.run_config import ExperimentConfig
from rl_coordconv.agents.scores import EpisodeScoreCallback
from rl_coordconv.envs import get_game


class Trainer(Protocol):
    """What training a run takes. Build with ``Trainer(model, config, run_dir)``."""

    model: BaseAlgorithm

    @staticmethod
    def session(config: ExperimentConfig, ray_address: str | None) -> AbstractContextManager[None]:
        """What the run needs before its run directory exists, held while it runs (a Ray session)."""

    @staticmethod
    def env_copies(config: ExperimentConfig) -> int:
        """How many env copies the model itself steps (the ones it is built and loaded on)."""

    @staticmethod
    def new_model(config: ExperimentConfig, env: VecEnv) -> BaseAlgorithm:
        """A fresh model of ``config`` on ``env``."""

    def restore(self) -> None:
        """After a resume: what the model's checkpoint does not hold (its replay)."""

    def learn(self, until: int, progress_bar: bool) -> None:
        """Train to ``until`` agent steps, with a checkpoint every ``config.checkpoint_every``."""

    def checkpoint(self) -> Path:
        """Save the model (and its replay) at its current step; the checkpoint's path."""

    def close(self) -> None:
        """Release what the trainer started."""


def saves_replay(config: ExperimentConfig) -> bool:
    """Whether the agent's replay is saved beside its checkpoints (``<agent>.replay_checkpoints``)."""
    return bool(getattr(config.agent_config, "replay_checkpoints", False))


class LocalTrainer:
    """SB3's ``learn`` on this machine, with the run's callbacks: every finished game's score in
    TensorBoard and atomic checkpoints (the replay beside them for agents that keep one)."""

    def __init__(self, model: BaseAlgorithm, config: ExperimentConfig, run_dir: Path) -> None:
        self.model, self.config, self.run_dir = model, config, run_dir

    @staticmethod
    def session(config: ExperimentConfig, ray_address: str | None) -> AbstractContextManager[None]:
        return nullcontext()

    @staticmethod
    def env_copies(config: ExperimentConfig) -> int:
        return config.n_envs

    @staticmethod
    def new_model(config: ExperimentConfig, env: VecEnv) -> BaseAlgorithm:
        return AGENTS[config.agent].make(env, config.arch, config.agent_config, seed=config.seed, device=config.device)

    def restore(self) -> None:
        restore_replay(self.model, self.run_dir)

    def learn(self, until: int, progress_bar: bool) -> None:
        remaining = until - self.model.num_timesteps
        if remaining <= 0:
            return
        callbacks = CallbackList(
            [
                EpisodeScoreCallback(get_game(self.config.game)),
                RunCheckpointCallback(self.config.checkpoint_every, self.run_dir, saves_replay(self.config)),
            ]
        )
        self.model.learn(remaining, callback=callbacks, reset_num_timesteps=False, progress_bar=progress_bar)

    def checkpoint(self) -> Path:
        return save_checkpoint(self.model, self.run_dir, saves_replay(self.config))

    def close(self) -> None:
        pass


def trainer_for(config: ExperimentConfig) -> type[Trainer]:
    """The trainer of ``config``: the Ray trainer with ``distributed.enabled`` (which needs Ray),
    SB3's loop otherwise. The one place that tells the two apart."""
    if config.distributed.enabled:
        from rl_coordconv.agents.distributed.run import RayTrainer  # imports Ray

        return RayTrainer
    return LocalTrainer
