"""A replay shard: the prioritized frame-lean replay of several rollout actors, in one process.

The replay keeps its env streams in lockstep (one ``add`` per step of all its envs), while rollout
actors step at their own pace; so a shard holds one
:class:`~rl_coordconv.agents.replay.PrioritizedReplayBuffer` per actor and samples across them as one
replay: stratified proportional sampling over the concatenated sum trees, importance weights from
the shard's total priority and size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from rl_coordconv.agents.distributed.blocks import StepBlock, add_block
from rl_coordconv.agents.replay import PrioritizedReplayBuffer
from rl_coordconv.agents.replay.sampler import importance_weights, stratified_sample


class ShardBatch(NamedTuple):
    """A prioritized batch as numpy arrays (cheap to send through Ray's object store); the fields
    of :class:`~rl_coordconv.agents.replay.PrioritizedReplayBufferSamples`, ``indices`` being the shard's."""

    observations: np.ndarray  # (B, C, H, W) uint8
    actions: np.ndarray  # (B, 1) int64
    next_observations: np.ndarray  # (B, C, H, W) uint8
    dones: np.ndarray  # (B, 1) float32
    rewards: np.ndarray  # (B, 1) float32
    discounts: np.ndarray  # (B, 1) float32
    weights: np.ndarray  # (B, 1) float32, max 1 in the batch
    indices: np.ndarray  # (B,) int64: actor * actor_capacity + index in that actor's buffer


class ReplayShard:
    """The replay of ``actors`` rollout actors (ids), ``capacity`` transitions shared evenly.

    :param replay_kwargs: the :class:`~rl_coordconv.agents.replay.PrioritizedReplayBuffer` keywords
        (``n_steps``, ``gamma``, ``alpha``, ``beta``, ``priority_eps``, ``initial_priority``).
    """

    def __init__(
        self,
        actors: list[int],
        envs_per_actor: int,
        capacity: int,
        observation_space: spaces.Box,
        action_space: spaces.Discrete,
        replay_kwargs: dict[str, Any],
        seed: int | None = None,
    ) -> None:
        if not actors:
            raise ValueError("a replay shard needs at least one rollout actor")
        per_actor = capacity // len(actors)
        self.actors = list(actors)
        self.buffers = [
            PrioritizedReplayBuffer(
                per_actor,
                observation_space,
                action_space,
                device="cpu",
                n_envs=envs_per_actor,
                seed=None if seed is None else seed + position,
                **replay_kwargs,
            )
            for position in range(len(actors))
        ]
        self._position = {actor: position for position, actor in enumerate(self.actors)}
        self.stride = max(buffer.capacity for buffer in self.buffers)  # indices of one buffer
        self.beta = self.buffers[0].beta
        self.rng = np.random.default_rng(seed)
        self.transitions_added = {actor: 0 for actor in self.actors}
        self.priority_updates = 0  # transitions the learner gave new priorities

    def add_block(self, actor: int, block: StepBlock) -> int:
        """Add a rollout actor's block; returns the shard's sampleable transitions."""
        add_block(self.buffers[self._position[actor]], block)
        self.transitions_added[actor] += block.transitions
        return self.size()

    def size(self) -> int:
        """Transitions that can be sampled now, over all the shard's actors."""
        return sum(buffer.size() for buffer in self.buffers)

    def sample(self, batch_size: int) -> ShardBatch | None:
        """``batch_size`` transitions drawn with probability ``p_i / sum(p)`` over the whole shard
        (one uniform draw in each of ``batch_size`` equal segments of the total priority), or
        ``None`` while the shard holds fewer sampleable transitions than that."""
        size = self.size()
        if size < batch_size:
            return None
        owners, leaves = stratified_sample([buffer.tree for buffer in self.buffers], batch_size, self.rng)
        transitions, priorities, indices = [], [], []
        for position in np.unique(owners):
            buffer, mine = self.buffers[position], leaves[owners == position]
            transitions.append(buffer.transitions(mine))
            priorities.append(buffer.tree.get(mine))
            indices.append(position * self.stride + mine)
        total = sum(buffer.tree.total for buffer in self.buffers)
        weights = importance_weights(np.concatenate(priorities), total, size, self.beta)
        return ShardBatch(
            *map(np.concatenate, zip(*transitions)),
            weights=weights.reshape(-1, 1),
            indices=np.concatenate(indices),
        )

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities ``(|td| + eps) ** alpha`` for the shard ``indices`` of a batch."""
        positions, leaves = np.divmod(np.asarray(indices, dtype=np.int64), self.stride)
        td_errors = np.asarray(td_errors).reshape(-1)
        self.priority_updates += td_errors.size
        for position in np.unique(positions):
            mine = positions == position
            self.buffers[position].update_priorities(leaves[mine], td_errors[mine])

    def stats(self) -> dict[str, Any]:
        """Size, fill and priorities, for the learner's logs."""
        priorities = np.concatenate([buffer.priorities() for buffer in self.buffers])
        capacity = sum(buffer.capacity for buffer in self.buffers)
        return {
            "size": self.size(),
            "fill": self.size() / capacity,
            "transitions_added": dict(self.transitions_added),  # per actor
            "priority_updates": self.priority_updates,
            "priority_max": float(priorities.max()) if priorities.size else 0.0,
            "priority_mean": float(priorities.mean()) if priorities.size else 0.0,
        }

    def save(self, prefix: str) -> list[str]:
        """Write each actor's buffer to ``<prefix>.actor<id>.npz``; returns the paths."""
        paths = []
        for actor, buffer in zip(self.actors, self.buffers):
            path = Path(f"{prefix}.actor{actor}.npz")
            partial = path.with_name(path.name + ".partial")
            buffer.save(partial)
            partial.replace(path)
            paths.append(str(path))
        return paths

    def load(self, prefix: str) -> int:
        """Load the buffers saved by :meth:`save` at ``prefix``; returns how many were found."""
        found = 0
        for actor, buffer in zip(self.actors, self.buffers):
            path = Path(f"{prefix}.actor{actor}.npz")
            if path.exists():
                buffer.load(path)
                found += 1
        return found
