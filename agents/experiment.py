"""Run one experiment: build the env and the agent, train with callbacks and checkpoints, evaluate.

This is the one place that joins an agent to an environment. Every script and sweep calls
:func:`run_experiment` rather than re-assembling it. A run lives in its own directory::

    <runs>/<game>/<agent>-<arch>/seed<k>/
        config.json        every resolved setting, package versions, git commit
        tb/                TensorBoard events: SB3's scalars + episode/score per game
        checkpoints/       model_<steps>_steps.zip, the latest one resumes the run (and for
                           agents with a replay, replay_<steps>_steps.npz beside the latest)
        evaluation.json    final evaluation over full games, raw scores
        train.log          the console output, when the sweep started the run

An existing run directory (anything in it but ``train.log``) is refused unless ``resume=True``.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch.nn as nn
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter

from rl_coordconv import rundir
from rl_coordconv.agents.allocator import keep_freed_memory
from rl_coordconv.agents.checkpoints import load_checkpoint
from rl_coordconv.agents.distributed import DistributedTrainingStopped
from rl_coordconv.agents.evaluation import evaluation_record
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.run_config import ExperimentConfig, config_from_dict
from rl_coordconv.agents.trainers import Trainer, trainer_for
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.layers import CoordConv2d
from rl_coordconv.precision import use_precision
from rl_coordconv.rundir import run_directory

__all__ = ["ExperimentConfig", "config_from_dict", "run_experiment", "run_directory"]


def run_experiment(
    config: ExperimentConfig,
    runs: Path | str = "runs",
    *,
    resume: bool = False,
    progress_bar: bool = True,
    ray_address: str | None = None,
) -> Path:
    """Train (or resume) one run to ``config.timesteps`` agent steps and evaluate it.

    :param ray_address: with ``config.distributed.enabled``, the Ray cluster to join
        (``"auto"``, ``"HOST:PORT"``); ``None`` starts a local Ray sized to the machine.
    :return: the run directory.
    """
    config.validate()
    keep_freed_memory()
    trainer_class = trainer_for(config)
    with trainer_class.session(config, ray_address):
        return _run_experiment(config, trainer_class, runs, resume, progress_bar)


def _run_experiment(
    config: ExperimentConfig, trainer_class: type[Trainer], runs: Path | str, resume: bool, progress_bar: bool
) -> Path:
    run_dir = run_directory(runs, config)
    if resume:
        config = _config_for_resume(run_dir, config)
        checkpoint = rundir.latest_checkpoint(run_dir)
    else:
        rundir.check_new_run_dir(run_dir)
        checkpoint = None
    run_dir.mkdir(parents=True, exist_ok=True)

    env = make_atari_vec_env(config.game, trainer_class.env_copies(config), config.seed, config.backend)
    try:
        if checkpoint is None:
            model = trainer_class.new_model(config, env)
        else:
            model = load_checkpoint(AGENTS[config.agent].algorithm, checkpoint, env=env, device=config.device)
        use_precision(model.policy, config.precision)
        _write_config(run_dir, config, model)
        # A resumed run may follow a process that was killed after its last checkpoint: TensorBoard
        # drops that process's events after the checkpoint's step, so no step is drawn twice. (The
        # resumed run logs nothing at the checkpoint's step itself: its first step comes after.)
        purge_step = model.num_timesteps + 1 if checkpoint is not None else None
        model.set_logger(tensorboard_logger(rundir.tensorboard_dir(run_dir), purge_step))
        trainer = trainer_class(model, config, run_dir)
        try:
            if checkpoint is not None:
                trainer.restore()
            try:
                trainer.learn(config.timesteps, progress_bar)
            except (KeyboardInterrupt, DistributedTrainingStopped) as stop:
                path = trainer.checkpoint()
                why = "Interrupted" if isinstance(stop, KeyboardInterrupt) else "Stopped"
                print(f"\n{why} at {model.num_timesteps:,} steps; saved {path}. Continue with --resume.")
                raise
            trainer.checkpoint()
        finally:
            trainer.close()
    finally:
        env.close()
    if config.eval_episodes > 0:
        evaluate(model, config, run_dir)
    return run_dir


def build_agent(config: ExperimentConfig, env: VecEnv) -> BaseAlgorithm:
    """A fresh agent of ``config.agent`` with the network ``ARCHS[config.arch]`` on ``env``, as the
    run's trainer builds it."""
    return trainer_for(config).new_model(config, env)


def describe_network(model: BaseAlgorithm) -> dict[str, Any]:
    """What was built, read from the model itself: the feature extractor's class, each conv
    layer in order (``"Conv2d"``, ``"CoordConv2d"`` or ``"CoordConv2d+r"``) and the parameter count."""
    extractor = next(module for module in model.policy.modules() if isinstance(module, BaseFeaturesExtractor))
    return {
        "features_extractor": type(extractor).__name__,
        "conv_layers": [_conv_kind(layer) for layer in extractor.modules() if isinstance(layer, nn.Conv2d)],
        "policy_parameters": sum(parameter.numel() for parameter in model.policy.parameters()),
    }


def _conv_kind(layer: nn.Conv2d) -> str:
    if isinstance(layer, CoordConv2d):
        return "CoordConv2d+r" if layer.with_r else "CoordConv2d"
    return type(layer).__name__


class _TensorBoardOutput(TensorBoardOutputFormat):
    """SB3's TensorBoard output, with the writer's ``purge_step``."""

    def __init__(self, folder: str, purge_step: int | None) -> None:
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def tensorboard_logger(folder: Path, purge_step: int | None = None) -> Logger:
    """An SB3 logger writing TensorBoard events to ``folder``; with ``purge_step``, TensorBoard
    discards the events that earlier writers in ``folder`` logged at that step or later."""
    return Logger(str(folder), [_TensorBoardOutput(str(folder), purge_step)])


def evaluate(model: BaseAlgorithm, config: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The run's final evaluation: :func:`~rl_coordconv.agents.evaluation.evaluation_record` over
    ``config.eval_episodes`` full games, written to ``evaluation.json`` (the record
    ``rl-coordconv evaluate`` writes for any checkpoint) and ``eval/mean_score`` to TensorBoard."""
    record = evaluation_record(model, config, rundir.checkpoint_path(run_dir, model.num_timesteps), config.eval_episodes)
    rundir.write_evaluation(run_dir, record)
    model.logger.record("eval/mean_score", record["mean_score"])
    model.logger.dump(model.num_timesteps)
    return record


def _config_for_resume(run_dir: Path, requested: ExperimentConfig) -> ExperimentConfig:
    """The saved config, with the requested ``timesteps`` and ``device``; any other difference
    from the saved run is an error, except in the settings of agents the run does not use."""
    if not rundir.config_path(run_dir).exists():
        raise FileNotFoundError(f"nothing to resume: {rundir.config_path(run_dir)} does not exist")
    saved = config_from_dict(rundir.read_config(run_dir).settings)
    unused_agents = set(AGENTS) - {saved.agent}
    differences = [
        name
        for name, value in dataclasses.asdict(requested).items()
        if name not in ("timesteps", "device", *unused_agents) and dataclasses.asdict(saved)[name] != value
    ]
    if differences:
        raise ValueError(f"--resume with settings that differ from the saved run in {run_dir}: {differences}")
    return dataclasses.replace(saved, timesteps=requested.timesteps, device=requested.device)


def _write_config(run_dir: Path, config: ExperimentConfig, model: BaseAlgorithm) -> None:
    record = {
        "config": dataclasses.asdict(config),
        "network": describe_network(model),
        "resolved_device": str(model.device),
        "versions": _package_versions(),
        "git_commit": _git_commit(),
        "command": sys.argv,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rundir.write_config(run_dir, record)


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("rl-coordconv", "torch", "stable-baselines3", "gymnasium", "ale-py", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
