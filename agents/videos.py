"""Videos of games played by a trained policy: every screen with the running score, and the
gradient saliency of the chosen action beside it.

Played on the ``sb3`` backend (ale-py's vector env has no full-colour screens), seeded like the
scored games but not among them (the backends draw their noop starts from other RNGs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.vec_env import VecEnv
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rl_coordconv.envs import make_atari_vec_env

Policy = Callable[[np.ndarray], np.ndarray]  # (n_envs, *obs_shape) observations -> (n_envs,) actions
VIDEO_BACKEND = "sb3"
VIDEO_FPS = 15  # real time: 60 Hz emulator, 4 frames per agent step
TENSORBOARD_STILLS = 8  # images per video in TensorBoard without moviepy
TENSORBOARD_VIDEO_FRAMES = 300  # at most, per video in TensorBoard with moviepy (a GIF)


# Saliency ----------------------------------------------------------------------------------------

ActionScores = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) float -> (B, n_actions)


def policy_action_scores(policy: BasePolicy) -> ActionScores:
    """The scores an SB3 policy chooses its action by, as a differentiable function of the raw
    observations ``(B, 4, 84, 84)`` (float, 0-255, any device) -> ``(B, n_actions)``:

    - actor-critic policies (A2C): the action logits, ``action_net``'s output before the softmax;
    - Q policies (DQN, Ape-X, anything with a ``q_net``): the Q values.
    """
    policy.set_training_mode(False)
    if isinstance(policy, ActorCriticPolicy):

        def logits(observations: torch.Tensor) -> torch.Tensor:
            features = BasePolicy.extract_features(policy, observations.to(policy.device), policy.pi_features_extractor)
            return policy.action_net(policy.mlp_extractor.forward_actor(features))

        return logits
    if isinstance(getattr(policy, "q_net", None), torch.nn.Module):
        return lambda observations: policy.q_net(observations.to(policy.device))
    raise TypeError(f"no action scores for a {type(policy).__name__}: expected an actor-critic or a Q policy")


def action_saliency(scores: ActionScores, observations: np.ndarray | torch.Tensor, actions: np.ndarray) -> np.ndarray:
    """Gradient saliency of the chosen actions: ``|d scores(obs)[b, actions[b]] / d obs[b]|``,
    summed over the stacked frames and divided by its maximum per observation.

    :param scores: ``(B, C, H, W)`` float observations -> ``(B, n_actions)``, e.g.
        :func:`policy_action_scores`; each row must depend on its own observation only.
    :param observations: ``(B, C, H, W)``, uint8 or float (0-255).
    :param actions: ``(B,)`` the actions taken.
    :return: ``(B, H, W)`` float32 in ``[0, 1]``: 1 at the most influential pixel, 0 where the
        pixel has no influence (all zeros when nothing has any).
    """
    inputs = torch.as_tensor(np.asarray(observations), dtype=torch.float32).requires_grad_(True)
    chosen = torch.as_tensor(np.asarray(actions), dtype=torch.long).reshape(-1, 1)
    with torch.enable_grad():
        values = scores(inputs)
        taken = values.gather(1, chosen.to(values.device))
        (gradient,) = torch.autograd.grad(taken.sum(), inputs)
    saliency = gradient.abs().sum(dim=1)
    peak = saliency.flatten(1).max(dim=1).values.clamp_min(torch.finfo(saliency.dtype).tiny)
    return (saliency / peak.view(-1, 1, 1)).numpy().astype(np.float32)


# Screens ----------------------------------------------------------------------------------------


class VideoFrame(NamedTuple):
    game: int  # 0-based index of the game
    step: int  # agent steps played in this game before this screen
    score: float  # points scored in this game up to this screen
    screen: np.ndarray  # (210, 160, 3) uint8, the full-colour screen
    saliency: np.ndarray | None  # (84, 84) in [0, 1] for the action chosen on this screen; None on a game's last screen
    last: bool  # the game's last screen


def render_games(
    policy: Policy, env: VecEnv, n_games: int, saliency: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
) -> Iterator[VideoFrame]:
    """Play ``n_games`` games one after the other and yield every screen: the first one after the
    reset, then one per agent step, the game's last one read from ``info["terminal_frame"]``; a game
    of ``T`` agent steps yields ``T + 1`` frames.

    :param env: one env, with full-colour screens: ``make_atari_vec_env(..., backend="sb3",
        render_mode="rgb_array")``, without life-loss terminals and reward clipping (scores in points).
    :param saliency: ``(1, 4, 84, 84)`` observations, ``(1,)`` actions -> ``(1, 84, 84)``, e.g.
        :func:`action_saliency` with the policy's scores; ``None`` for no saliency.
    """
    if env.num_envs != 1:
        raise ValueError(f"render_games plays one env, got {env.num_envs}")
    if getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError(
            f"render_games needs full-colour screens: build the env with backend='sb3', render_mode='rgb_array' "
            f"(its render_mode is {getattr(env, 'render_mode', None)!r})"
        )
    observations = env.reset()
    for game in range(n_games):
        step, score = 0, 0.0
        while True:
            actions = policy(observations)
            (screen,) = env.get_images()
            frame_saliency = saliency(observations, actions)[0] if saliency is not None else None
            yield VideoFrame(game, step, score, screen, frame_saliency, False)
            observations, rewards, _, infos = env.step(actions)
            step, score = step + 1, score + float(rewards[0])
            if "episode" in infos[0]:
                yield VideoFrame(game, step, score, infos[0]["terminal_frame"], None, True)
                break


BANNER_HEIGHT = 16  # pixels above the screen, for the score
_TEXT = {"fontFace": cv2.FONT_HERSHEY_SIMPLEX, "fontScale": 0.35, "thickness": 1, "lineType": cv2.LINE_AA}


def saliency_heat_map(saliency: np.ndarray, screen: np.ndarray) -> np.ndarray:
    """``(h, w)`` saliency in ``[0, 1]`` upsampled (bilinear) to the ``(H, W, 3)`` uint8 screen,
    coloured (inferno: black at 0, yellow at 1) over the screen's dimmed grayscale: ``(H, W, 3)`` uint8."""
    height, width = screen.shape[:2]
    upsampled = cv2.resize(saliency.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(upsampled * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    gray = cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    return np.clip(0.3 * gray + 0.7 * heat, 0, 255).astype(np.uint8)


def video_frame(frame: VideoFrame, saliency_label: str | None = None) -> np.ndarray:
    """One frame of the video: a black banner with the running score and the step over the screen,
    ``(16 + 210, 160, 3)`` uint8; with ``saliency_label`` (e.g. the arch), the saliency heat map
    beside the screen, titled with the label: ``(16 + 210, 320, 3)`` (black on a game's last screen)."""
    panels = [frame.screen]
    if saliency_label is not None:
        saliency = frame.saliency if frame.saliency is not None else np.zeros((84, 84), np.float32)
        panels.append(saliency_heat_map(saliency, frame.screen))
    image = np.concatenate(panels, axis=1)
    banner = np.zeros((BANNER_HEIGHT, image.shape[1], 3), dtype=np.uint8)
    white = (255, 255, 255)
    cv2.putText(banner, f"score {frame.score:,.0f}", (3, 11), color=white, **_TEXT)
    cv2.putText(banner, f"step {frame.step}", (frame.screen.shape[1] - 62, 11), color=white, **_TEXT)
    if saliency_label is not None:
        cv2.putText(banner, f"saliency: {saliency_label}", (frame.screen.shape[1] + 3, 11), color=white, **_TEXT)
    return np.ascontiguousarray(np.concatenate([banner, image], axis=0))


# Files and TensorBoard ---------------------------------------------------------------------------


def write_videos(
    model: BaseAlgorithm,
    predict: Policy,
    game: str,
    seed: int,
    folder: Path,
    stem: str,
    n_games: int,
    saliency_label: str | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Play ``n_games`` games of ``game`` on the ``sb3`` backend, its env seeded ``seed``, and write
    ``folder/<stem>_game<k>.mp4`` each (``_saliency`` before ``.mp4`` with ``saliency_label``, the
    title of the saliency panel, e.g. the arch).

    :return: per video its path, backend, score (points), agent steps, frames and whether it has saliency.
    """
    import imageio.v2 as imageio

    env = make_atari_vec_env(
        game, 1, seed=seed, backend=VIDEO_BACKEND, terminal_on_life_loss=False, clip_rewards=False, render_mode="rgb_array"
    )
    with_saliency = saliency_label is not None
    saliency = functools.partial(action_saliency, policy_action_scores(model.policy)) if with_saliency else None
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
            writer.append_data(video_frame(frame, saliency_label))
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


def moviepy_video_support() -> bool:
    """``SummaryWriter.add_video`` encodes through ``moviepy.editor`` (moviepy 1.x); without it,
    it prints a line and logs nothing."""
    try:
        from moviepy import editor  # noqa: F401
    except ImportError:
        return False
    return True


def add_videos(writer: SummaryWriter, videos: list[dict[str, Any]], step: int) -> None:
    """Per video of :func:`write_videos`, ``eval/video_game<k>`` at ``step``: the video (at most 300
    frames, evenly spaced) when moviepy 1.x is installed, otherwise 8 stills from it."""
    import imageio.v2 as imageio

    as_video = moviepy_video_support()
    for index, video in enumerate(videos, start=1):
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
