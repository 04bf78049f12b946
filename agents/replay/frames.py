"""Per-env rings of single frames: each Atari frame stored once, stacks rebuilt on demand.

As Dopamine's ``circular_replay_buffer``, a transition does not store its ``(C, H, W)``
observations: it points at the newest frame of ``obs`` in its env's ring, and the stack is the
``C`` frames ending there. Frames are numbered per env by an ever-increasing absolute counter;
a frame's slot in the ring is its number modulo the ring size.
"""

from __future__ import annotations

import math

import numpy as np

# Spare frames per env, as a fraction of the transition capacity: see frame_capacity_for.
FRAME_SLACK = 0.03


def frame_capacity_for(transitions_per_env: int, stack_size: int) -> int:
    """Frames per env ring for ``transitions_per_env`` transitions of ``stack_size`` stacks.

    A chain of steps (one game) costs ``stack_size`` frames more than its transitions, so the
    ring holds ``transitions + stack_size + ceil(3 % of transitions)`` frames: enough for every
    transition while chains average at least ``stack_size / 0.03`` steps (133 for 4; an Atari
    game lasts hundreds to thousands of agent steps). With shorter chains the ring runs out
    first and the oldest transitions go a little earlier; nothing else changes.
    """
    return transitions_per_env + stack_size + math.ceil(FRAME_SLACK * transitions_per_env)


class FrameRings:
    """``n_envs`` rings of ``capacity`` frames ``(H, W)`` uint8, for stacks of ``stack_size``.

    :meth:`append` takes one step of every env: when ``obs[e]`` is the stack the env's previous
    ``next_obs`` left in its ring (the usual step, and a life loss where the game goes on) only
    the newest frame of ``next_obs[e]`` is written; otherwise (the first step, a new game) a new
    chain starts with all frames of ``obs[e]``, then the newest frame of ``next_obs[e]``. So the
    newest frame of ``next_obs`` is always the frame right after the newest frame of ``obs``, and
    a rebuilt stack equals exactly what the env returned, zero-padded stacks at a reset included.
    """

    def __init__(self, n_envs: int, capacity: int, stack_size: int, height: int, width: int) -> None:
        self.n_envs, self.capacity, self.stack_size = n_envs, capacity, stack_size
        # np.zeros maps untouched pages lazily: memory grows with the fill, not at construction.
        self.frames = np.zeros((n_envs, capacity, height, width), dtype=np.uint8)
        self.written = np.zeros(n_envs, dtype=np.int64)  # frames written to each ring so far
        self._env_ids = np.arange(n_envs)
        self._stack_offsets = np.arange(stack_size)

    @staticmethod
    def bytes_needed(n_envs: int, capacity: int, height: int, width: int) -> int:
        return n_envs * capacity * height * width

    def continues(self, obs: np.ndarray) -> np.ndarray:
        """``(n_envs,)`` bool: whether ``obs[e]`` (``(n_envs, C, H, W)``) is the newest stack of ring ``e``."""
        newest_stack = (self.written[:, None] - self.stack_size + self._stack_offsets) % self.capacity
        equal = (self.frames[self._env_ids[:, None], newest_stack] == obs).reshape(self.n_envs, -1).all(axis=1)
        return (self.written > 0) & equal

    def append(self, obs: np.ndarray, next_obs: np.ndarray, continues: np.ndarray) -> np.ndarray:
        """Write one step of every env (see the class docstring).

        :param obs: ``(n_envs, C, H, W)`` uint8.
        :param next_obs: ``(n_envs, C, H, W)`` uint8, ``next_obs[:, :-1] == obs[:, 1:]``.
        :param continues: :meth:`continues` of ``obs``.
        :return: ``(n_envs,)`` absolute number of the newest frame of each ``obs``; the newest
            frame of ``next_obs`` is the one after it.
        """
        stack, capacity, written = self.stack_size, self.capacity, self.written
        if stack > 1:
            shifted = (next_obs[:, :-1] == obs[:, 1:]).reshape(self.n_envs, -1).all(axis=1)
            if not shifted.all():
                raise ValueError(
                    f"next_obs[:-1] must equal obs[1:] (stacks of single frames, shifted by one frame "
                    f"per step), but not for envs {np.flatnonzero(~shifted).tolist()}: "
                    "PrioritizedReplayBuffer stores each frame once and needs frame-stacked observations"
                )
        newest_obs_frame = np.where(continues, written - 1, written + stack - 1)
        fresh = np.flatnonzero(~continues)
        if fresh.size:
            self.frames[fresh[:, None], (written[fresh, None] + self._stack_offsets) % capacity] = obs[fresh]
        self.frames[self._env_ids, (newest_obs_frame + 1) % capacity] = next_obs[:, -1]
        self.written = newest_obs_frame + 2
        return newest_obs_frame

    def first_whole_stack(self) -> np.ndarray:
        """``(n_envs,)``: the oldest newest-frame number whose whole stack is still in its ring."""
        return self.written - self.capacity + self.stack_size - 1

    def stacks(self, env_ids: np.ndarray, newest_frames: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` stacks of envs ``env_ids`` whose newest frames are ``newest_frames``."""
        frames = newest_frames[:, None] - (self.stack_size - 1) + self._stack_offsets
        return self.frames[env_ids[:, None], frames % self.capacity]
