"""Evaluating a trained agent over whole games: the policy it acts by, the games, the record.

:func:`evaluate_model` plays the games; :func:`evaluation_record` is the one record of an
evaluation, the training's final one (``evaluation.json``) and ``rl-coordconv evaluate``'s of any
checkpoint (``evaluation_<steps>.json``) alike; :func:`evaluate_checkpoint` is the whole
``evaluate`` command: a run directory and a checkpoint in, the record (with videos) written and
logged to TensorBoard.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rl_coordconv import rundir
from rl_coordconv.agents.apex import ApeX
from rl_coordconv.agents.checkpoints import load_checkpoint
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.run_config import ExperimentConfig, config_from_dict
from rl_coordconv.agents.videos import VIDEO_BACKEND, Policy, add_videos, moviepy_video_support, write_videos
from rl_coordconv.devices import check_device, resolve_device
from rl_coordconv.envs import get_game, make_atari_vec_env
from rl_coordconv.precision import check_precision, use_precision

EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded config.seed + 10_000 (+ i for env i): other games than training's
MAX_EVAL_ENVS = 8  # games played at once
Announce = Callable[[str], None]  # where a line for the user goes (e.g. print)


class EvaluationError(ValueError):
    """A run directory or checkpoint that cannot be evaluated, or an evaluation that exists: one line for the user."""


class PlayedGame(NamedTuple):
    score: float  # the game's info["episode"]["r"]: raw points over all its lives
    length: int  # agent steps


def play_full_games(
    policy: Policy, env: VecEnv, n_games: int, on_game: Callable[[PlayedGame], None] | None = None
) -> list[PlayedGame]:
    """Play until ``n_games`` games have ended and return them in the order they ended.

    Env ``i`` contributes ``(n_games + i) // n_envs`` games, counted from the reset, so short
    games do not crowd out long ones (as in SB3's ``evaluate_policy``). A game ends where the env
    reports ``info["episode"]`` (SB3's ``Monitor`` convention, which both Atari backends follow):
    build ``env`` without life-loss terminals and reward clipping to score whole games in raw points.
    Lengths are counted here, in agent steps (``episode["l"]`` counts emulator frames under SB3's
    ``AtariWrapper``).

    :param policy: ``(n_envs, *obs_shape)`` observations -> ``(n_envs,)`` actions.
    :param on_game: called with each game that counts, as it ends (e.g. to advance a progress bar).
    """
    if n_games < 1:
        raise ValueError(f"n_games must be >= 1, got {n_games}")
    targets = np.array([(n_games + i) // env.num_envs for i in range(env.num_envs)])
    counts = np.zeros(env.num_envs, dtype=int)
    steps = np.zeros(env.num_envs, dtype=int)
    games: list[PlayedGame] = []
    observations = env.reset()
    while (counts < targets).any():
        observations, _, _, infos = env.step(policy(observations))
        steps += 1
        for i, info in enumerate(infos):
            episode = info.get("episode")
            if episode is None:
                continue
            if counts[i] < targets[i]:
                games.append(PlayedGame(float(episode["r"]), int(steps[i])))
                counts[i] += 1
                if on_game is not None:
                    on_game(games[-1])
            steps[i] = 0
    return games


def evaluation_policy(model: BaseAlgorithm, deterministic: bool) -> tuple[Policy, dict[str, Any]]:
    """The agent's evaluation policy, ``(n_envs, 4, 84, 84)`` -> ``(n_envs,)`` actions, and what it is.

    - A2C and PPO: actions sampled from the policy (its argmax when ``deterministic``).
    - Ape-X: greedy actions, each replaced by a random one with probability ``eval_epsilon``.
    - SB3's DQN: ``predict`` explores with probability ``exploration_rate``, the attribute saved in
      the checkpoint, i.e. the training schedule's value at that step (``exploration_final_eps``,
      0.01, once past the first ``exploration_fraction`` of the run; up to 1.0 before). One draw per
      call decides for all envs at once whether they all act at random.
    - ``deterministic``: the Q agents act greedily.
    """

    def predict(observations: np.ndarray) -> np.ndarray:
        return model.predict(observations, deterministic=deterministic)[0]

    if isinstance(model, ApeX):
        epsilon = 0.0 if deterministic else float(model.eval_epsilon)
        description = f"greedy on Q, random actions with probability eval_epsilon={epsilon}"
    elif isinstance(model, DQN):
        epsilon = 0.0 if deterministic else float(model.exploration_rate)
        description = (
            f"greedy on Q, all envs at random with probability exploration_rate={epsilon} "
            "(SB3 DQN.predict; the value saved with the checkpoint)"
        )
    elif isinstance(model, OnPolicyAlgorithm):  # A2C, PPO
        epsilon = None
        description = "argmax of the action logits" if deterministic else "actions sampled from the policy"
    else:
        epsilon = None
        description = f"{type(model).__name__}.predict(deterministic={deterministic})"
    return predict, {"deterministic": deterministic, "epsilon": epsilon, "description": description}


def summarize(games: list[PlayedGame], game: str) -> dict[str, Any]:
    """Mean / std (population) / min / max of the raw scores, the human-normalized mean, and every
    game's score and length (agent steps), in the order the games ended."""
    scores = np.array([played.score for played in games])
    normalize = get_game(game).human_normalized
    return {
        "episodes": len(games),
        "mean_score": float(scores.mean()),
        "std_score": float(scores.std()),
        "min_score": float(scores.min()),
        "max_score": float(scores.max()),
        "human_normalized_mean": float(normalize(float(scores.mean()))),
        "human_normalized_scores": [float(normalize(float(score))) for score in scores],
        "scores": scores.tolist(),
        "lengths": [played.length for played in games],
    }


def evaluate_model(
    model: BaseAlgorithm,
    game: str,
    run_seed: int,
    backend: str,
    n_games: int,
    *,
    deterministic: bool = False,
    on_game: Callable[[PlayedGame], None] | None = None,
) -> dict[str, Any]:
    """Play ``n_games`` full games (no life-loss terminals, raw points: each game's
    ``info["episode"]["r"]``) with the agent's :func:`evaluation_policy` on envs seeded
    ``run_seed + EVAL_SEED_OFFSET``, the policy's own randomness seeded alike.

    :return: the evaluation record: ``timesteps`` (the model's agent steps), ``game``, ``backend``,
        ``seed``, ``policy``, the :func:`summarize` fields, ``lengths_unit`` and ``seconds``.
    """
    seed = run_seed + EVAL_SEED_OFFSET
    set_random_seed(seed)  # A2C's sampling and the Q agents' exploration repeat
    predict, policy = evaluation_policy(model, deterministic)
    env = make_atari_vec_env(
        game, min(n_games, MAX_EVAL_ENVS), seed=seed, backend=backend, terminal_on_life_loss=False, clip_rewards=False
    )
    started = time.time()
    try:
        games = play_full_games(predict, env, n_games, on_game=on_game)
    finally:
        env.close()
    return {
        "timesteps": int(model.num_timesteps),
        "game": game,
        "backend": backend,
        "seed": seed,
        "policy": policy,
        **summarize(games, game),
        "lengths_unit": "agent steps",
        "seconds": round(time.time() - started, 1),
    }


def evaluation_record(
    model: BaseAlgorithm,
    config: ExperimentConfig,
    checkpoint: Path,
    n_games: int,
    *,
    deterministic: bool = False,
    on_game: Callable[[PlayedGame], None] | None = None,
) -> dict[str, Any]:
    """The evaluation record of ``model``, loaded from ``checkpoint`` of the run ``config``:
    ``checkpoint``, ``agent``, ``arch`` and the fields of :func:`evaluate_model` over ``n_games`` games."""
    return {
        "checkpoint": str(checkpoint),
        "agent": config.agent,
        "arch": config.arch,
        **evaluate_model(
            model, config.game, config.seed, config.backend, n_games, deterministic=deterministic, on_game=on_game
        ),
    }


# A run directory's checkpoint ---------------------------------------------------------------------


def run_config_for_evaluation(run_dir: Path, device: str, announce: Announce = print) -> ExperimentConfig:
    """The run's resolved config, from ``run_dir/config.json``, to be evaluated on ``device``; in
    fp32 (announced) when the run trained in bf16 and ``device`` does not compute it natively.

    :raises EvaluationError: not a run directory, an unreadable or invalid config, a bad device.
    """
    if not run_dir.is_dir():
        raise EvaluationError(f"{run_dir} is not a directory; give a run directory (<runs>/<game>/<agent>-<arch>/seed<k>)")
    try:
        config = config_from_dict(rundir.read_config(run_dir).settings)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from None
    except (ValueError, KeyError, TypeError) as error:
        raise EvaluationError(f"{rundir.config_path(run_dir)}: {error}") from None
    config.device = device
    try:
        check_device(device)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    try:
        check_precision(config.precision, resolve_device(device))
    except ValueError as error:  # trained in bf16 elsewhere: a checkpoint loads into either precision
        announce(f"Evaluating in fp32 rather than the run's {config.precision}: {error}")
        config.precision = "fp32"
    try:
        config.validate()
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    return config


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    """``"last"`` -> the run's latest complete checkpoint; otherwise the path given (or, when that
    does not exist, the file of that name in ``run_dir/checkpoints``), which must be a zip.

    :raises EvaluationError: no checkpoint, no such file, or not a zip.
    """
    if checkpoint == "last":
        try:
            return rundir.latest_checkpoint(run_dir)
        except FileNotFoundError:
            raise EvaluationError(
                f"no checkpoint to evaluate in {run_dir / rundir.CHECKPOINT_DIR} (model_<steps>_steps.zip)"
            ) from None
    path = Path(checkpoint)
    if not path.exists() and (run_dir / rundir.CHECKPOINT_DIR / checkpoint).exists():
        path = run_dir / rundir.CHECKPOINT_DIR / checkpoint
    if not path.is_file():
        raise EvaluationError(f"--checkpoint {checkpoint}: no such file (give 'last' or the path of a checkpoint .zip)")
    if not zipfile.is_zipfile(path):
        raise EvaluationError(f"--checkpoint {checkpoint}: not an SB3 checkpoint (a .zip saved by model.save)")
    return path


def load_for_evaluation(config: ExperimentConfig, path: Path) -> BaseAlgorithm:
    """The checkpoint at ``path`` as a ``config.agent`` model on ``config.device``, computing in ``config.precision``.

    :raises EvaluationError: a damaged file, or another agent's checkpoint.
    """
    algorithm = AGENTS[config.agent].algorithm
    try:
        model = load_checkpoint(algorithm, path, device=config.device)
    except Exception as error:
        raise EvaluationError(
            f"cannot load {path} as a {config.agent} ({algorithm.__name__}) model: {type(error).__name__}: {error}"
        ) from None
    use_precision(model.policy, config.precision)
    return model


def log_evaluation(run_dir: Path, record: dict[str, Any], announce: Announce = print) -> None:
    """``eval/mean_score``, ``eval/std_score``, ``eval/min_score``, ``eval/max_score`` and
    ``eval/human_normalized`` at the checkpoint's step, in ``run_dir/tb``, and the record's videos
    (:func:`~rl_coordconv.agents.videos.add_videos`)."""
    writer = SummaryWriter(log_dir=str(rundir.tensorboard_dir(run_dir)))
    step = record["timesteps"]
    try:
        for name in ("mean_score", "std_score", "min_score", "max_score"):
            writer.add_scalar(f"eval/{name}", record[name], step)
        writer.add_scalar("eval/human_normalized", record["human_normalized_mean"], step)
        if record["videos"] and not moviepy_video_support():
            announce(
                "TensorBoard: 8 stills per video (SummaryWriter.add_video needs moviepy 1.x); "
                f"the mp4 files are in {rundir.videos_dir(run_dir)}"
            )
        add_videos(writer, record["videos"], step)
    finally:
        writer.close()


def evaluate_checkpoint(
    run_dir: Path | str,
    checkpoint: str = "last",
    *,
    episodes: int = 30,
    device: str = "auto",
    deterministic: bool = False,
    video_games: int = 0,
    saliency: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    announce: Announce = print,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint over ``episodes`` full games with its :func:`evaluation_policy`,
    write the record to ``run_dir/evaluation_<steps>.json`` and log it to TensorBoard.

    :param checkpoint: ``"last"`` or a checkpoint's path (see :func:`resolve_checkpoint`).
    :param video_games: games to record as mp4 in ``run_dir/videos/`` (0: none), separate from the
        scored ones; ``saliency`` adds the saliency panel.
    :param announce: gets a line before the games start and one for each thing the user should know.
    :return: the record, with ``videos`` (a list, empty without them).
    :raises EvaluationError: a bad run directory or checkpoint, or an evaluation of this checkpoint
        exists and ``overwrite`` is not set.
    """
    run_dir = Path(run_dir)
    config = run_config_for_evaluation(run_dir, device, announce)
    path = resolve_checkpoint(run_dir, checkpoint)
    model = load_for_evaluation(config, path)
    steps = int(model.num_timesteps)
    out = rundir.evaluation_path(run_dir, steps)
    if out.exists() and not overwrite:
        raise EvaluationError(f"{out} exists (an evaluation of this checkpoint); pass --overwrite to replace it")

    announce(
        f"Evaluating {config.agent}-{config.arch} on {config.game} at {steps:,} steps ({path.name}): "
        f"{episodes} games on the {config.backend} backend, {evaluation_policy(model, deterministic)[1]['description']}"
    )
    bar = tqdm(total=episodes, unit="game", desc="games", disable=not progress)

    def advance(game: PlayedGame) -> None:
        bar.update(1)
        bar.set_postfix(score=f"{game.score:.0f}")

    try:
        record = evaluation_record(model, config, path, episodes, deterministic=deterministic, on_game=advance)
    finally:
        bar.close()
    record["videos"] = []
    if video_games:
        set_random_seed(record["seed"])
        predict, _ = evaluation_policy(model, deterministic)
        label = config.arch if saliency else None
        record["videos"] = write_videos(
            model, predict, config.game, record["seed"], rundir.videos_dir(run_dir), path.stem, video_games, label, progress
        )
        record["videos_note"] = (
            f"separate games on the {VIDEO_BACKEND!r} backend (full-colour screens), not among the scores above"
        )
    rundir.write_evaluation(run_dir, record, steps)
    log_evaluation(run_dir, record, announce)
    return record
