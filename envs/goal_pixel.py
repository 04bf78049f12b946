"""GoalPixel: a tiny position-sensitive image env for learning tests that finish in seconds.

A ``grid_size x grid_size`` board is drawn on a ``(1, 36, 36)`` uint8 image (36 is the smallest
input the Nature CNN accepts). The goal cell is drawn at intensity 255, the agent's cell at 128;
both are placed uniformly at random, apart, at each reset. Actions: 0 up, 1 down, 2 left,
3 right (moves into a wall leave the agent in place). Reaching the goal gives +1 and ends the
episode; any other step gives ``progress_reward`` per cell of Manhattan distance gained (negative
when moving away) minus ``step_penalty``; episodes are truncated after ``max_steps``.

A random walk often runs out of time; a policy that reads both positions from the image walks
straight to the goal, so the success rate measures learning cleanly.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

IMAGE_SIZE = 36
GOAL_INTENSITY = 255
AGENT_INTENSITY = 128
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


class GoalPixelEnv(gym.Env):
    """Move the agent's cell onto the goal cell. Observation ``(1, 36, 36)`` uint8."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        grid_size: int = 4,
        max_steps: int = 12,
        step_penalty: float = 0.05,
        progress_reward: float = 0.1,
        render_mode: str | None = None,
    ):
        if not 2 <= grid_size <= IMAGE_SIZE:
            raise ValueError(f"grid_size must be in [2, {IMAGE_SIZE}], got {grid_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.grid_size = grid_size
        self.max_steps = max_steps
        self.step_penalty = step_penalty
        self.progress_reward = progress_reward
        self.render_mode = render_mode
        self.cell_pixels = IMAGE_SIZE // grid_size
        self.observation_space = spaces.Box(0, 255, (1, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        self.action_space = spaces.Discrete(len(MOVES))
        self._agent = np.zeros(2, dtype=np.int64)
        self._goal = np.zeros(2, dtype=np.int64)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        cells = self.np_random.choice(self.grid_size**2, size=2, replace=False)
        self._goal = np.array(divmod(int(cells[0]), self.grid_size))
        self._agent = np.array(divmod(int(cells[1]), self.grid_size))
        self._steps = 0
        return self._observation(), {}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {len(MOVES) - 1}], got {action!r}")
        distance_before = self._distance()
        self._agent = np.clip(self._agent + MOVES[int(action)], 0, self.grid_size - 1)
        self._steps += 1
        reached = bool(np.array_equal(self._agent, self._goal))
        progress = self.progress_reward * (distance_before - self._distance())
        reward = 1.0 if reached else progress - self.step_penalty
        truncated = not reached and self._steps >= self.max_steps
        return self._observation(), reward, reached, truncated, {}

    def _distance(self) -> int:
        return int(np.abs(self._goal - self._agent).sum())

    def render(self) -> np.ndarray:
        return np.repeat(self._observation()[0][..., None], 3, axis=-1)

    def _observation(self) -> np.ndarray:
        image = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        for (row, column), intensity in ((self._goal, GOAL_INTENSITY), (self._agent, AGENT_INTENSITY)):
            top, left = row * self.cell_pixels, column * self.cell_pixels
            image[0, top : top + self.cell_pixels, left : left + self.cell_pixels] = intensity
        return image
