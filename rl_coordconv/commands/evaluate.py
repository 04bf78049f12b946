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
import sys
from collections.abc import Callable
from typing import NoReturn

from rl_coordconv import rundir
from rl_coordconv.agents.evaluation import EvaluationError, evaluate_checkpoint
from rl_coordconv.commands import HelpFormatter

VIDEO_GAMES = 2  # games recorded with --video when --video-games is not given


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


def evaluate_run(args: argparse.Namespace) -> dict:
    """Evaluate as ``args`` say and print the result; see :func:`rl_coordconv.agents.evaluation.evaluate_checkpoint`."""
    record = evaluate_checkpoint(
        args.run_dir,
        args.checkpoint,
        episodes=args.episodes,
        device=args.device,
        deterministic=args.deterministic,
        video_games=args.video_games if args.video else 0,
        saliency=args.saliency,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"Mean score {record['mean_score']:.1f} +- {record['std_score']:.1f} (min {record['min_score']:.0f}, "
        f"max {record['max_score']:.0f}), human-normalized {record['human_normalized_mean']:.3f} -> "
        f"{rundir.evaluation_path(args.run_dir, record['timesteps'])}"
    )
    for video in record["videos"]:
        print(f"Video: {video['path']} (score {video['score']:.0f}, {video['agent_steps']} agent steps)")
    return record


def main(argv: list[str] | None = None) -> int:
    try:
        evaluate_run(parse_args(argv))
    except (UsageError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
