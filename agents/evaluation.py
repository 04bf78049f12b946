"""Playing whole games with a trained policy, for evaluation: scores, video frames, saliency.

:func:`evaluate_model` is the one evaluation of a run: the training's final one
(``evaluation.json``) and ``rl-coordconv evaluate``'s of any checkpoint (``evaluation_<steps>.json``)
play the same games with the same policy and write the same record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from rl_coordconv.agents.apex import ApeX
from rl_coordconv.envs import get_game, make_atari_vec_env

Policy = Callable[[np.ndarray], np.ndarray]  # (n_envs, *obs_shape) observations -> (n_envs,) actions
EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded config.seed + 10_000 (+ i for env i): other games than training's
MAX_EVAL_ENVS = 8  # games played at once


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


# Saliency ----------------------------------------------------------------------------------------

ActionScores = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) float -> (B, n_actions)


def evaluation_policy(model: BaseAlgorithm, deterministic: bool) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
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


# Video -------------------------------------------------------------------------------------------


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
