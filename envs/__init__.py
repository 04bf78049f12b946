"""Environments: vectorized Atari for SB3, the game suite, and the tiny GoalPixel env."""

import gymnasium as gym

from rl_coordconv.envs.atari import BACKENDS, AleVecEnv, make_atari_vec_env
from rl_coordconv.games import GAMES, Game, get_game

GOAL_PIXEL_ID = "GoalPixel-v0"
if GOAL_PIXEL_ID not in gym.registry:
    gym.register(GOAL_PIXEL_ID, entry_point="rl_coordconv.envs.goal_pixel:GoalPixelEnv")

__all__ = ["BACKENDS", "GAMES", "GOAL_PIXEL_ID", "AleVecEnv", "Game", "get_game", "make_atari_vec_env"]
