"""Evaluate a run's checkpoint over full games; optionally record videos with saliency.

    rl-coordconv evaluate runs/MsPacman/a2c-coordconv/seed0                  # 30 games, last checkpoint
    rl-coordconv evaluate RUN_DIR --episodes 100 --checkpoint RUN_DIR/checkpoints/model_500000_steps.zip
    rl-coordconv evaluate RUN_DIR --video --video-games 3 --saliency          # + RUN_DIR/videos/*.mp4

Scores: full games (no life-loss terminals, raw points: the games' info["episode"]["r"]) on the
run's own backend, with the agent's evaluation policy: A2C samples its actions (argmax with
--deterministic); the Q agents act through their own predict(): Ape-X at its eval_epsilon, SB3's
DQN at the exploration_rate saved in the checkpoint (see evaluation_policy). Written to
RUN_DIR/evaluation_<steps>.json and to TensorBoard (eval/*) at the checkpoint's step.

Videos: separate games, on the "sb3" backend (ale-py's vector env has no full-colour screens),
seeded alike but not the scored games (the backends draw their noop starts from other RNGs), one mp4
per game in RUN_DIR/videos/, with the running score; --saliency adds the gradient of the chosen
action's logit (A2C) or Q value beside the game. TensorBoard gets the video when moviepy 1.x is
installed (SummaryWriter.add_video needs it), otherwise 8 stills per game.
"""

from __future__ import annotations

import argparse
import functools
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rl_coordconv import rundir
from rl_coordconv.agents.checkpoints import load_checkpoint
from rl_coordconv.agents.evaluation import (
    EVAL_SEED_OFFSET,
    PlayedGame,
    action_saliency,
    evaluate_model,
    evaluation_policy,
    policy_action_scores,
    render_games,
    video_frame,
)
from rl_coordconv.agents.experiment import ExperimentConfig, config_from_dict
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.commands import HelpFormatter
from rl_coordconv.devices import check_device, resolve_device
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.precision import check_precision, use_precision

VIDEO_GAMES = 2  # games recorded with --video when --video-games is not given
VIDEO_BACKEND = "sb3"
VIDEO_FPS = 15  # real time: 60 Hz emulator, 4 frames per agent step
TENSORBOARD_STILLS = 8  # images per video in TensorBoard without moviepy
TENSORBOARD_VIDEO_FRAMES = 300  # at most, per video in TensorBoard with moviepy (a GIF)


class UsageError(ValueError):
    """A bad command line or run directory: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _positive_int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number >= 1, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="rl-coordconv evaluate", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory: <runs>/<game>/<agent>-<arch>/seed<k>")
    parser.add_argument("--episodes", type=_positive_int("--episodes"), default=30, help="full games to score")
    parser.add_argument(
        "--checkpoint",
        default="last",
        help="'last' (the latest complete checkpoint of the run) or the path of a checkpoint .zip",
    )
    parser.add_argument("--video", action="store_true", help="record mp4 videos of separate games in RUN_DIR/videos/")
    parser.add_argument(
        "--video-games",
        type=_positive_int("--video-games"),
        default=None,
        help=f"games to record with --video (default {VIDEO_GAMES})",
    )
    parser.add_argument(
        "--saliency",
        action="store_true",
        help="beside the game, the gradient of the chosen action's logit or Q value (implies --video)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1")
    parser.add_argument(
        "--deterministic", action="store_true", help="greedy actions: A2C's argmax, the Q agents without exploration"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an evaluation of the same checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    args.video = args.video or args.saliency
    if args.video_games is not None and not args.video:
        parser.error(f"--video-games {args.video_games} applies with --video or --saliency")
    args.video_games = args.video_games or VIDEO_GAMES
    return args


def load_run_config(run_dir: Path, device: str) -> ExperimentConfig:
    """The run's resolved config, from ``RUN_DIR/config.json``, to be evaluated on ``device``."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory; give a run directory (<runs>/<game>/<agent>-<arch>/seed<k>)")
    try:
        config = config_from_dict(rundir.read_config(run_dir).settings)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{rundir.config_path(run_dir)}: {error}") from None
    config.device = device
    try:
        check_device(device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        check_precision(config.precision, resolve_device(device))
    except ValueError as error:  # trained in bf16 elsewhere: a checkpoint loads into either precision
        print(f"Evaluating in fp32 rather than the run's {config.precision}: {error}")
        config.precision = "fp32"
    try:
        config.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    return config


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    """``"last"`` -> the run's latest complete checkpoint; otherwise the path given (or, when that
    does not exist, the file of that name in ``RUN_DIR/checkpoints``), which must be a zip."""
    if checkpoint == "last":
        try:
            return rundir.latest_checkpoint(run_dir)
        except FileNotFoundError:
            raise UsageError(
                f"no checkpoint to evaluate in {run_dir / rundir.CHECKPOINT_DIR} (model_<steps>_steps.zip)"
            ) from None
    path = Path(checkpoint)
    if not path.exists() and (run_dir / rundir.CHECKPOINT_DIR / checkpoint).exists():
        path = run_dir / rundir.CHECKPOINT_DIR / checkpoint
    if not path.is_file():
        raise UsageError(f"--checkpoint {checkpoint}: no such file (give 'last' or the path of a checkpoint .zip)")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"--checkpoint {checkpoint}: not an SB3 checkpoint (a .zip saved by model.save)")
    return path


def load_model(config: ExperimentConfig, path: Path, device: str) -> BaseAlgorithm:
    algorithm = AGENTS[config.agent].algorithm
    try:
        model = load_checkpoint(algorithm, path, device=device)
    except Exception as error:  # a damaged file, or another agent's checkpoint
        raise UsageError(
            f"cannot load {path} as a {config.agent} ({algorithm.__name__}) model: {type(error).__name__}: {error}"
        ) from None
    use_precision(model.policy, config.precision)
    return model


def write_videos(
    model: BaseAlgorithm,
    config: ExperimentConfig,
    predict: Callable[[np.ndarray], np.ndarray],
    folder: Path,
    stem: str,
    n_games: int,
    with_saliency: bool,
    progress: bool,
) -> list[dict[str, Any]]:
    """Play ``n_games`` games on the ``sb3`` backend and write ``folder/<stem>_game<k>.mp4`` each
    (``_saliency`` before ``.mp4`` with saliency). :return: per video its path, score, agent steps, frames."""
    import imageio.v2 as imageio

    env = make_atari_vec_env(
        config.game,
        1,
        seed=config.seed + EVAL_SEED_OFFSET,
        backend=VIDEO_BACKEND,
        terminal_on_life_loss=False,
        clip_rewards=False,
        render_mode="rgb_array",
    )
    saliency = functools.partial(action_saliency, policy_action_scores(model.policy)) if with_saliency else None
    label = config.arch if with_saliency else None
    folder.mkdir(parents=True, exist_ok=True)
    videos: list[dict[str, Any]] = []
    writer, frames = None, 0
    bar = tqdm(total=n_games, unit="video", desc="videos", disable=not progress)
    try:
        for frame in render_games(predict, env, n_games, saliency):
            if writer is None:
                path = folder / f"{stem}_game{frame.game + 1}{'_saliency' if with_saliency else ''}.mp4"
                writer = imageio.get_writer(
                    path, format="FFMPEG", fps=VIDEO_FPS, codec="libx264", quality=6, pixelformat="yuv420p", macro_block_size=2
                )
                frames = 0
            writer.append_data(video_frame(frame, label))
            frames += 1
            if frame.last:
                writer.close()
                writer = None
                videos.append(
                    {
                        "path": str(path),
                        "backend": VIDEO_BACKEND,
                        "score": frame.score,
                        "agent_steps": frame.step,
                        "frames": frames,
                        "saliency": with_saliency,
                    }
                )
                bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        env.close()
    return videos


def _moviepy_video_support() -> bool:
    """``SummaryWriter.add_video`` encodes through ``moviepy.editor`` (moviepy 1.x); without it,
    it prints a line and logs nothing."""
    try:
        from moviepy import editor  # noqa: F401
    except ImportError:
        return False
    return True


def log_to_tensorboard(run_dir: Path, step: int, result: dict[str, Any]) -> None:
    """``eval/mean_score``, ``eval/std_score``, ``eval/min_score``, ``eval/max_score`` and
    ``eval/human_normalized`` at the checkpoint's step, in ``RUN_DIR/tb``; and per video
    ``eval/video_game<k>``: the video (at most 300 frames, evenly spaced, when moviepy 1.x is
    installed) or 8 stills from it."""
    import imageio.v2 as imageio

    writer = SummaryWriter(log_dir=str(rundir.tensorboard_dir(run_dir)))
    try:
        for name in ("mean_score", "std_score", "min_score", "max_score"):
            writer.add_scalar(f"eval/{name}", result[name], step)
        writer.add_scalar("eval/human_normalized", result["human_normalized_mean"], step)
        as_video = _moviepy_video_support()
        if result["videos"] and not as_video:
            print(
                f"TensorBoard: {TENSORBOARD_STILLS} stills per video (SummaryWriter.add_video needs moviepy 1.x); "
                f"the mp4 files are in {run_dir / 'videos'}"
            )
        for index, video in enumerate(result["videos"], start=1):
            count = video["frames"]
            if as_video:
                stride = -(-count // TENSORBOARD_VIDEO_FRAMES)
                keep = set(range(0, count, stride))
            else:
                keep = set(np.linspace(0, count - 1, TENSORBOARD_STILLS).round().astype(int).tolist())
            with imageio.get_reader(video["path"], format="FFMPEG") as reader:
                frames = np.stack([frame for number, frame in enumerate(reader) if number in keep])
            if as_video:
                writer.add_video(f"eval/video_game{index}", frames.transpose(0, 3, 1, 2)[None], step, fps=VIDEO_FPS / stride)
            else:
                writer.add_images(f"eval/video_game{index}", frames, step, dataformats="NHWC")
    finally:
        writer.close()


def evaluate_run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.run_dir)
    config = load_run_config(run_dir, args.device)
    checkpoint = resolve_checkpoint(run_dir, args.checkpoint)
    model = load_model(config, checkpoint, config.device)
    steps = int(model.num_timesteps)
    out = rundir.evaluation_path(run_dir, steps)
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists (an evaluation of this checkpoint); pass --overwrite to replace it")

    print(
        f"Evaluating {config.agent}-{config.arch} on {config.game} at {steps:,} steps ({checkpoint.name}): "
        f"{args.episodes} games on the {config.backend} backend, "
        f"{evaluation_policy(model, args.deterministic)[1]['description']}"
    )
    bar = tqdm(total=args.episodes, unit="game", desc="games", disable=args.no_progress)

    def advance(game: PlayedGame) -> None:
        bar.update(1)
        bar.set_postfix(score=f"{game.score:.0f}")

    try:
        record = evaluate_model(
            model, config.game, config.seed, config.backend, args.episodes, deterministic=args.deterministic, on_game=advance
        )
    finally:
        bar.close()
    result = {"checkpoint": str(checkpoint), "agent": config.agent, "arch": config.arch, **record, "videos": []}
    if args.video:
        set_random_seed(result["seed"])
        predict, _ = evaluation_policy(model, args.deterministic)
        result["videos"] = write_videos(
            model, config, predict, run_dir / "videos", checkpoint.stem, args.video_games, args.saliency, not args.no_progress
        )
        result["videos_note"] = (
            f"separate games on the {VIDEO_BACKEND!r} backend (full-colour screens), not among the scores above"
        )
    rundir.write_evaluation(run_dir, result, steps)
    log_to_tensorboard(run_dir, steps, result)
    print(
        f"Mean score {result['mean_score']:.1f} +- {result['std_score']:.1f} (min {result['min_score']:.0f}, "
        f"max {result['max_score']:.0f}), human-normalized {result['human_normalized_mean']:.3f} -> {out}"
    )
    for video in result["videos"]:
        print(f"Video: {video['path']} (score {video['score']:.0f}, {video['agent_steps']} agent steps)")
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        evaluate_run(parse_args(argv))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
