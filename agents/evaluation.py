"""Playing whole games with a trained policy, for evaluation."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from stable_baselines3.common.vec_env import VecEnv


class PlayedGame(NamedTuple):
    score: float  # the game's info["episode"]["r"]: raw points over all its lives
    length: int  # agent steps


def play_full_games(policy: Callable[[np.ndarray], np.ndarray], env: VecEnv, n_games: int) -> list[PlayedGame]:
    """Play until ``n_games`` games have ended and return them in the order they ended.

    Env ``i`` contributes ``(n_games + i) // n_envs`` games, counted from the reset, so short
    games do not crowd out long ones (as in SB3's ``evaluate_policy``). A game ends where the env
    reports ``info["episode"]`` (SB3's ``Monitor`` convention, which both Atari backends follow):
    build ``env`` without life-loss terminals and reward clipping to score whole games in raw points.

    :param policy: ``(n_envs, *obs_shape)`` observations -> ``(n_envs,)`` actions.
    """
    if n_games < 1:
        raise ValueError(f"n_games must be >= 1, got {n_games}")
    targets = np.array([(n_games + i) // env.num_envs for i in range(env.num_envs)])
    counts = np.zeros(env.num_envs, dtype=int)
    games: list[PlayedGame] = []
    observations = env.reset()
    while (counts < targets).any():
        observations, _, _, infos = env.step(policy(observations))
        for i, info in enumerate(infos):
            episode = info.get("episode")
            if episode is not None and counts[i] < targets[i]:
                games.append(PlayedGame(float(episode["r"]), int(episode["l"])))
                counts[i] += 1
    return games
