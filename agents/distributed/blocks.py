"""Frame-lean blocks of env steps: what a rollout actor sends to its replay shard.

A rollout actor steps ``N`` env copies and sends every ``T`` steps one :class:`StepBlock`. As the
replay stores each frame once, the block carries each new frame once: the ``N`` stacks at the
block's start, then per step only the newest frame of each env's next observation (the true last
frame where an episode ended), plus the whole stack of each env that was reset. About 7.1 KB per
Atari transition instead of 56 KB for an ``(obs, next_obs)`` pair of stacks.

:class:`StepBlockBuilder` turns the steps of a ``VecEnv`` into a block; :func:`add_block` replays
a block into a :class:`~rl_coordconv.agents.replay.PrioritizedReplayBuffer` through its ordinary ``add``, so the
replay sees exactly the observations the env returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl_coordconv.agents.replay import PrioritizedReplayBuffer


@dataclass
class StepBlock:
    """``T`` consecutive steps of ``N`` env copies (``C`` frames of ``H x W`` per observation)."""

    first_observations: np.ndarray  # (N, C, H, W) uint8: the observations the block starts from
    next_frames: np.ndarray  # (T, N, H, W) uint8: newest frame of each step's (true) next observation
    actions: np.ndarray  # (T, N) int64
    rewards: np.ndarray  # (T, N) float32
    dones: np.ndarray  # (T, N) bool: terminal or truncated
    truncations: np.ndarray  # (T, N) bool: ended by a time limit
    q_taken: np.ndarray  # (T, N) float32: the acting network's Q(s, a)
    q_max: np.ndarray  # (T, N) float32: its max_a Q(s, a)
    # (step, env, (C, H, W) stack): where the env was reset, the observation it restarted from.
    resets: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    @property
    def transitions(self) -> int:
        """Steps x env copies."""
        return self.actions.size

    @property
    def nbytes(self) -> int:
        """Bytes of array data the block carries."""
        arrays = (
            self.first_observations,
            self.next_frames,
            self.actions,
            self.rewards,
            self.dones,
            self.truncations,
            self.q_taken,
            self.q_max,
        )
        return sum(array.nbytes for array in arrays) + sum(stack.nbytes + 16 for _, _, stack in self.resets)


class StepBlockBuilder:
    """Collects the steps of one ``VecEnv`` (SB3's step API) into :class:`StepBlock` s.

    :param first_observations: ``(N, C, H, W)``, the observations the env returned last.
    """

    def __init__(self, first_observations: np.ndarray) -> None:
        self._start_block(first_observations)

    def _start_block(self, first_observations: np.ndarray) -> None:
        self._start = np.array(first_observations, copy=True)
        self._steps: list[tuple[Any, ...]] = []
        self._resets: list[tuple[int, int, np.ndarray]] = []

    def add(
        self,
        actions: np.ndarray,
        q_taken: np.ndarray,
        q_max: np.ndarray,
        next_observations: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Record one step: the actions taken and what ``env.step(actions)`` returned."""
        true_next = np.array(next_observations, copy=True)
        truncations = np.zeros(len(dones), dtype=bool)
        for env, done in enumerate(dones):
            if done:
                true_next[env] = infos[env]["terminal_observation"]
                truncations[env] = bool(infos[env].get("TimeLimit.truncated", False))
                # A life loss continues the same game: the env goes on from the terminal frame.
                if not np.array_equal(true_next[env], next_observations[env]):
                    self._resets.append((len(self._steps), env, np.array(next_observations[env], copy=True)))
        self._steps.append((true_next[:, -1], actions, rewards, dones, truncations, q_taken, q_max))

    def __len__(self) -> int:
        return len(self._steps)

    def build(self, next_start: np.ndarray) -> StepBlock:
        """The block of the steps recorded so far; the builder then starts a new block from
        ``next_start``, the observations the env returned last."""
        frames, actions, rewards, dones, truncations, q_taken, q_max = zip(*self._steps)
        block = StepBlock(
            first_observations=self._start,
            next_frames=np.stack(frames),
            actions=np.stack(actions).astype(np.int64),
            rewards=np.stack(rewards).astype(np.float32),
            dones=np.stack(dones).astype(bool),
            truncations=np.stack(truncations),
            q_taken=np.stack(q_taken).astype(np.float32),
            q_max=np.stack(q_max).astype(np.float32),
            resets=self._resets,
        )
        self._start_block(next_start)
        return block


def add_block(replay: PrioritizedReplayBuffer, block: StepBlock) -> None:
    """Add the block's steps to ``replay`` (built for its ``N`` envs) in order, rebuilding each
    step's ``(obs, next_obs)`` stacks from the block's frames; with actor-side priorities, the
    acting values go along and the windows completed get their initial priorities."""
    observations = block.first_observations.copy()
    resets_at: dict[int, list[tuple[int, np.ndarray]]] = {}
    for step, env, stack in block.resets:
        resets_at.setdefault(step, []).append((env, stack))
    actor_priorities = replay.initial_priority == "actor"
    for t in range(block.n_steps):
        next_observations = np.concatenate([observations[:, 1:], block.next_frames[t][:, None]], axis=1)
        infos = [{"TimeLimit.truncated": bool(truncated)} for truncated in block.truncations[t]]
        if actor_priorities:
            replay.set_acting_values(block.q_taken[t], block.q_max[t])
        replay.add(observations, next_observations, block.actions[t], block.rewards[t], block.dones[t], infos)
        observations = next_observations
        for env, stack in resets_at.get(t, ()):
            observations[env] = stack
    if actor_priorities:
        replay.update_priorities(*replay.actor_td_errors())
