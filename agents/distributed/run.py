"""The Ray trainer: one distributed Ape-X run's actors and shards built, its checkpoints, and
its actors and shards gone at the end (:class:`rl_coordconv.agents.trainers.Trainer`).

:func:`rl_coordconv.agents.experiment.run_experiment` uses it in place of SB3's loop when
``distributed.enabled``; the run directory, config.json, TensorBoard scalars, checkpoints and
evaluation are the single-machine agent's. With replay checkpoints, each shard writes its buffers
beside the model's checkpoint (``replay_<steps>_steps.shard<k>.actor<id>.npz``, the latest only).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stable_baselines3.common.vec_env import VecEnv

from rl_coordconv import rundir
from rl_coordconv.agents.apex import ApeX, apex_kwargs
from rl_coordconv.agents.checkpoints import save_checkpoint
from rl_coordconv.agents.distributed import ReplayShardDied, require_ray, start_ray
from rl_coordconv.agents.distributed.learner import RayLearnerLoop
from rl_coordconv.agents.run_config import ExperimentConfig
from rl_coordconv.agents.scores import write_game_score
from rl_coordconv.envs import get_game, make_atari_vec_env


class RayTrainer:
    """Trains an :class:`ApeX` (the learner, in this process) with ``distributed.resolved_actors()``
    rollout actors and ``distributed.replay_shards`` replay shards on the Ray session of
    :meth:`session`; checkpoints every ``config.checkpoint_every`` agent steps."""

    def __init__(self, model: ApeX, config: ExperimentConfig, run_dir: Path) -> None:
        ray = require_ray()
        if not ray.is_initialized():
            raise RuntimeError("start Ray first: RayTrainer.session() or rl_coordconv.agents.distributed.start_ray()")
        self.model, self.config, self.run_dir = model, config, run_dir
        self.replay_lost = False  # a shard died: its transitions are gone, checkpoints hold the model only
        n_actors, n_envs = config.distributed.resolved_actors(), config.apex.n_envs
        self.loop = RayLearnerLoop(
            model,
            config.arch,
            config.apex,
            config.distributed,
            rollout_env_factories(config),
            seed=config.seed,
            on_game=_game_writer(model, config),
        )
        print(f"Ray: {n_actors} rollout actors x {n_envs} envs, {config.distributed.replay_shards} replay shards")

    @staticmethod
    @contextmanager
    def session(config: ExperimentConfig, ray_address: str | None) -> Iterator[None]:
        """Join the Ray cluster at ``ray_address`` (or start a local one) for the run; a Ray this
        started is shut down after it. Before the run directory exists: a cluster that cannot be
        joined leaves nothing behind."""
        started = start_ray(ray_address, min_cpus=config.distributed.resolved_actors())
        try:
            yield
        finally:
            if started:
                require_ray().shutdown()

    @staticmethod
    def env_copies(config: ExperimentConfig) -> int:
        return 1  # the learner's env only gives the model its spaces: the rollout actors play

    @staticmethod
    def new_model(config: ExperimentConfig, env: VecEnv) -> ApeX:
        """The learner's :class:`ApeX` (network, optimizer, counters, logger, ``save``), built as the
        single-process agent is, without a replay of its own: the shards hold the transitions."""
        return ApeX(
            "CnnPolicy",
            env,
            seed=config.seed,
            device=config.device,
            local_replay=False,
            **apex_kwargs(config.arch, config.apex),
        )

    def restore(self) -> None:
        prefix = self._replay_prefix()
        found = self.loop.load_replay(prefix)
        if found == self.loop.n_actors:
            sizes = sum(stats["size"] for stats in self.loop.shard_stats())
            print(f"Restored the replay shards ({sizes:,} transitions) from {prefix}.shard*")
        else:
            warnings.warn(
                f"found the replay of {found} of {self.loop.n_actors} rollout actors at {prefix}.shard*: the run "
                "resumes with an empty replay buffer for the others and refills it before learning",
                stacklevel=2,
            )

    def learn(self, until: int, progress_bar: bool) -> None:
        model, every = self.model, self.config.checkpoint_every
        try:
            while model.num_timesteps < until:
                self.loop.train(min((model.num_timesteps // every + 1) * every, until), progress_bar=progress_bar)
                self.loop.log()
                if model.num_timesteps < until:
                    self.checkpoint()
        except ReplayShardDied:
            self.replay_lost = True
            raise

    def checkpoint(self) -> Path:
        """The model first (a shard dying during its save loses no model), then every shard's
        replay, older shard replays pruned."""
        path = save_checkpoint(self.model, self.run_dir)
        if self.config.apex.replay_checkpoints and not self.replay_lost:
            try:
                written = self.loop.save_replay(self._replay_prefix())
            except ReplayShardDied:
                self.replay_lost = True
                raise
            rundir.prune_replays(self.run_dir, keep=[Path(name) for name in written])
        return path

    def close(self) -> None:
        self.loop.close()

    def _replay_prefix(self) -> Path:
        return rundir.replay_path(self.run_dir, self.model.num_timesteps, suffix="")


def rollout_env_factories(config: ExperimentConfig) -> list[functools.partial]:
    """One env builder per rollout actor: ``apex.n_envs`` copies of the game seeded after the
    previous actor's, stepped by the actor's share of the cores
    (:meth:`~rl_coordconv.agents.distributed.DistributedConfig.emulator_threads`)."""
    n_actors, n_envs = config.distributed.resolved_actors(), config.apex.n_envs
    threads = config.distributed.emulator_threads()
    return [
        functools.partial(
            make_atari_vec_env, config.game, n_envs, config.seed + actor * n_envs, config.backend, num_threads=threads
        )
        for actor in range(n_actors)
    ]


def _game_writer(model: ApeX, config: ExperimentConfig):
    writer = next((output.writer for output in model.logger.output_formats if hasattr(output, "writer")), None)
    game = get_game(config.game)

    def on_game(step: int, env: int, band: str, score: float, length: int) -> None:
        if writer is not None:
            write_game_score(writer, game, step, score, length, band)

    return on_game
