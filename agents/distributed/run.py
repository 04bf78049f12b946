"""One distributed Ape-X run: actors and shards built, checkpoints, actors and shards gone.

Called by :func:`rl_coordconv.agents.experiment.run_experiment` in place of ``model.learn`` when
``distributed.enabled``; the run directory, config.json, TensorBoard scalars, checkpoints and
evaluation are the single-machine agent's. With replay checkpoints, each shard writes its buffers
beside the model's checkpoint (``replay_<steps>_steps.shard<k>.actor<id>.npz``, the latest only).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from rl_coordconv.agents.apex import ApeX
from rl_coordconv.agents.distributed import DistributedTrainingStopped, ReplayShardDied, require_ray
from rl_coordconv.agents.distributed.learner import RayLearnerLoop
from rl_coordconv.agents.checkpoints import save_checkpoint
from rl_coordconv.agents.scores import write_game_score
from rl_coordconv.envs import get_game, make_atari_vec_env
from rl_coordconv.rundir import REPLAY_PREFIX

if TYPE_CHECKING:
    from rl_coordconv.agents.experiment import ExperimentConfig


def train_distributed(
    model: ApeX, config: "ExperimentConfig", run_dir: Path, *, resume: bool = False, progress_bar: bool = True
) -> None:
    """Train ``model`` to ``config.timesteps`` env transitions with rollout actors on the Ray
    session already started (:func:`rl_coordconv.agents.distributed.start_ray`), checkpointing every
    ``config.checkpoint_every``; on Ctrl-C or a dead replay shard, checkpoint and stop. Every
    actor this run started is gone when it returns."""
    ray = require_ray()
    if not ray.is_initialized():
        raise RuntimeError("start Ray first: rl_coordconv.agents.distributed.start_ray()")
    n_actors = config.distributed.resolved_actors()
    trainer = None
    try:
        n_envs = config.apex.n_envs
        factories = [
            functools.partial(make_atari_vec_env, config.game, n_envs, config.seed + actor * n_envs, config.backend)
            for actor in range(n_actors)
        ]
        trainer = RayLearnerLoop(
            model, config.arch, config.apex, config.distributed, factories, seed=config.seed,
            on_game=_game_writer(model, config),
        )
        print(f"Ray: {n_actors} rollout actors x {n_envs} envs, {config.distributed.replay_shards} replay shards")
        if resume:
            _restore_replay(trainer, model, run_dir)
        try:
            while model.num_timesteps < config.timesteps:
                next_checkpoint = (model.num_timesteps // config.checkpoint_every + 1) * config.checkpoint_every
                trainer.train(min(next_checkpoint, config.timesteps), progress_bar=progress_bar)
                trainer.log()
                _checkpoint(trainer, model, config, run_dir)
        except (KeyboardInterrupt, DistributedTrainingStopped) as stop:
            alive_replay = not isinstance(stop, ReplayShardDied)
            path = _checkpoint(trainer, model, config, run_dir, with_replay=alive_replay)
            print(f"\nStopped at {model.num_timesteps:,} steps; saved {path}. Continue with --resume.")
            raise
    finally:
        if trainer is not None:
            trainer.close()


def _game_writer(model: ApeX, config: "ExperimentConfig"):
    writer = next(
        (output.writer for output in model.logger.output_formats if hasattr(output, "writer")), None
    )
    game = get_game(config.game)

    def on_game(step: int, env: int, band: str, score: float, length: int) -> None:
        if writer is not None:
            write_game_score(writer, game, step, score, length, band)

    return on_game


def _checkpoint(trainer: RayLearnerLoop, model: ApeX, config: "ExperimentConfig", run_dir: Path, with_replay: bool = True) -> Path:
    path = save_checkpoint(model, run_dir)  # first: a shard dying during its save loses no model
    if with_replay and config.apex.replay_checkpoints:
        folder = run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        prefix = folder / f"{REPLAY_PREFIX}_{model.num_timesteps}_steps"
        written = set(trainer.save_replay(prefix))
        for older in folder.glob(f"{REPLAY_PREFIX}_*_steps.shard*.npz"):
            if str(older) not in written:
                older.unlink()
    return path


def _restore_replay(trainer: RayLearnerLoop, model: ApeX, run_dir: Path) -> None:
    prefix = run_dir / "checkpoints" / f"{REPLAY_PREFIX}_{model.num_timesteps}_steps"
    found = trainer.load_replay(prefix)
    if found == trainer.n_actors:
        sizes = sum(stats["size"] for stats in trainer.shard_stats())
        print(f"Restored the replay shards ({sizes:,} transitions) from {prefix}.shard*")
    else:
        warnings.warn(
            f"found the replay of {found} of {trainer.n_actors} rollout actors at {prefix}.shard*: the run resumes "
            "with an empty replay buffer for the others and refills it before learning",
            stacklevel=2,
        )
