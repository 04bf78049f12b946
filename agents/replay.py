"""Prioritized, frame-lean, multi-env n-step replay for an Ape-X-style DQN.

:class:`PrioritizedReplayBuffer` is an SB3 ``ReplayBuffer`` (usable as DQN's
``replay_buffer_class``) that combines:

- **frames stored once** (as Dopamine's ``circular_replay_buffer``): each env keeps a ring of
  single ``(H, W)`` frames and every transition points at the newest frame of its observation;
  the ``(C, H, W)`` stacks are rebuilt at sample time. About 7.3 KB per Atari transition instead
  of SB3's 28 KB (``optimize_memory_usage=True``) or 56 KB;
- **n-step returns** computed at sample time (as SB3's ``NStepReplayBuffer``), each window ending
  at the first terminal or truncation, never crossing into another episode or env, and only
  sampled once complete;
- **proportional prioritization** (Schaul et al. 2016; Horgan et al. 2018) with a vectorized sum
  tree: stratified sampling, importance-sampling weights, new transitions at the max priority,
  optionally Ape-X's actor-side initial priorities from the acting network's own Q-values
  (:meth:`PrioritizedReplayBuffer.actor_td_errors`).

Written here rather than taken from a library: SB3 and sb3-contrib have no prioritized replay;
the prioritized buffer of SB3's open pull request walks its sum tree in a Python loop per sampled
item and only ever samples env 0 when ``n_envs > 1``; cpprb's frame compression
(``next_of``/``stack_compress``) cannot be combined with its n-step mode; torchrl's C++
``PrioritizedSampler`` is fast (``scripts/bench_replay.py`` compares it) but stores nothing
frame-lean and knows no env streams or episode boundaries.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

INITIAL_PRIORITIES = ("actor", "max")  # from the acting Q-values (Ape-X), or the largest so far
# Spare frames per env, as a fraction of the transition capacity: see PrioritizedReplayBuffer.
FRAME_SLACK = 0.03
_SAVE_FORMAT = 2


def available_memory_bytes() -> int | None:
    """Bytes of memory available to a new allocation: ``psutil``'s ``available``, else
    ``MemAvailable`` from ``/proc/meminfo``; ``None`` when neither can be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class SumTree:
    """A binary sum tree over ``capacity`` non-negative leaves, in one flat float64 array.

    Node ``i`` has children ``2i`` and ``2i + 1``; the root is node 1 and leaf ``k`` is node
    ``n_leaves + k``, with ``n_leaves`` the power of two ``>= capacity``. Every operation works on a
    batch at once, one level of the tree per numpy call: no Python loop per item. The top
    ``DENSE_LEVELS`` levels (1023 nodes) are handled whole: a batch of hundreds touches most of
    them anyway, and one call over a contiguous level costs less than a gather and a scatter.
    """

    DENSE_LEVELS = 10

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a sum tree needs at least one leaf, got capacity={capacity}")
        self.capacity = int(capacity)
        self.depth = max(1, math.ceil(math.log2(self.capacity)))
        self.n_leaves = 1 << self.depth
        self.nodes = np.zeros(2 * self.n_leaves, dtype=np.float64)
        self._top = min(self.depth, self.DENSE_LEVELS)  # levels above this one are dense

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.nodes[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        """Values of ``leaves`` (int array, any shape)."""
        return self.nodes[np.asarray(leaves) + self.n_leaves]

    def leaf_values(self) -> np.ndarray:
        """A view of all ``capacity`` leaf values."""
        return self.nodes[self.n_leaves : self.n_leaves + self.capacity]

    def update(self, leaves: np.ndarray, values: np.ndarray) -> None:
        """Set ``leaves[i]`` to ``values[i]``; where a leaf repeats, its last value wins.

        Parents are recomputed as the sum of their two children, level by level, rather than
        shifted by deltas: sums do not drift, and a parent listed twice is written twice with
        the same value, so repeated indices need no special care above the leaves.
        """
        leaves = np.asarray(leaves, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if leaves.size == 0:
            return
        # np.unique keeps the first occurrence: run it on the reversed batch to keep the last.
        unique, first_in_reversed = np.unique(leaves[::-1], return_index=True)
        nodes = self.nodes
        index = unique + self.n_leaves
        nodes[index] = values[::-1][first_in_reversed]
        for _ in range(self.depth - self._top):
            index >>= 1
            left = index << 1
            nodes[index] = nodes[left] + nodes[left + 1]
        for level in range(self._top - 1, -1, -1):
            first = 1 << level
            nodes[first : 2 * first] = nodes[2 * first : 4 * first : 2] + nodes[2 * first + 1 : 4 * first : 2]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each ``u`` in ``prefix_sums`` (``0 <= u < total``), the leaf ``k`` whose interval
        ``[sum(leaves[:k]), sum(leaves[:k + 1]))`` holds ``u``: a draw proportional to the leaves.

        The dense top levels are crossed in one step, by a binary search in the cumulative sums
        of the nodes below them; the descent goes on level by level. Never returns a zero leaf
        while ``total > 0``: the rare draw that rounding pushes past the end of a subtree is
        redone with a descent that never enters an empty subtree.
        """
        nodes = self.nodes
        prefix_sums = np.asarray(prefix_sums, dtype=np.float64).reshape(-1)
        level = nodes[1 << self._top : 2 << self._top]
        edges = np.zeros(level.size + 1)
        np.cumsum(level, out=edges[1:])
        start = np.clip(np.searchsorted(edges, prefix_sums, side="right") - 1, 0, level.size - 1)
        remaining = prefix_sums - edges[start]
        index = start + (1 << self._top)
        for _ in range(self.depth - self._top):
            index <<= 1
            left_sum = nodes[index]
            go_right = remaining >= left_sum
            remaining -= left_sum * go_right
            index += go_right
        stray = nodes[index] <= 0.0
        if stray.any():
            index[stray] = self._guarded_descent(prefix_sums[stray])
        return index - self.n_leaves

    def _guarded_descent(self, prefix_sums: np.ndarray) -> np.ndarray:
        """Node indices of the leaves for ``prefix_sums``, going right only into a non-empty
        subtree: ends on a non-zero leaf whenever the total is positive."""
        nodes = self.nodes
        remaining = prefix_sums.copy()
        index = np.ones(remaining.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = index << 1
            left_sum = nodes[left]
            go_right = (remaining >= left_sum) & (nodes[left + 1] > 0.0)
            remaining -= left_sum * go_right
            index = left + go_right
        return index

    def stratified_sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` leaves drawn proportionally to their values, one uniform draw in each of
        ``batch_size`` equal segments of the total (as Schaul et al. and Dopamine do)."""
        segment = self.total / batch_size
        return self.find((np.arange(batch_size) + rng.random(batch_size)) * segment)


class PrioritizedReplayBufferSamples(NamedTuple):
    """A prioritized batch of n-step transitions (``B`` = batch size)."""

    observations: th.Tensor  # (B, C, H, W) uint8, rebuilt stacks
    actions: th.Tensor  # (B, 1) int64
    next_observations: th.Tensor  # (B, C, H, W) uint8: the observation k steps later
    dones: th.Tensor  # (B, 1) float32: 1 only if a true terminal ended the window
    rewards: th.Tensor  # (B, 1) float32: n-step discounted return sum_{i<k} gamma^i r_{t+i}
    discounts: th.Tensor  # (B, 1) float32: gamma^k, k <= n_steps the steps actually taken
    weights: th.Tensor  # (B, 1) float32 importance-sampling weights, max 1 in the batch
    indices: np.ndarray  # (B,) int64, to pass back to update_priorities


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized n-step replay over ``n_envs`` env streams, each frame stored once.

    **Storage.** Observations must be stacks of ``C`` single-channel frames, ``(C, H, W)`` uint8,
    oldest first, each step shifting the stack by one frame (SB3's ``VecFrameStack``, ale-py's
    ``AtariVectorEnv``; ``C = 1`` for unstacked images). Each env ``e`` has its own stream: a ring
    of ``frame_capacity`` single frames ``(H, W)`` and a ring of ``buffer_size // n_envs``
    transition records (absolute index of the newest frame of ``obs``, action, reward, terminal,
    truncated). Frames and transitions are numbered by ever-increasing absolute counters per env;
    the ring slot is the counter modulo the ring size. ``add`` compares ``obs[e]`` with the stack
    the env's previous ``next_obs`` left in the ring: when equal (the usual step, and a life loss
    where the env reports ``done`` but the game goes on) only the newest frame of ``next_obs[e]``
    is written; otherwise (the first add, a new game after a game over or a time limit) a new
    chain starts with all ``C`` frames of ``obs[e]`` then the newest frame of ``next_obs[e]``. The
    newest frame of ``next_obs`` is therefore always the frame written right after the newest
    frame of ``obs``, so one frame index per transition serves both, and a rebuilt stack equals
    exactly what the env returned, zero-padded stacks at a reset included. When ``obs[e]`` does
    not continue the previous ``next_obs[e]`` although that transition was not ``done`` (the env
    was reset from outside), the previous transition is marked truncated: no window crosses the
    cut, and the return bootstraps there.

    **Frame slack.** A chain costs ``C`` frames more than its transitions, so the frame ring holds
    ``transition capacity + C + ceil(3 % of it)`` frames: enough for every transition while
    chains (games, not lives) average at least ``C / 0.03`` steps (133 for ``C = 4``; an Atari
    game lasts hundreds to thousands of agent steps). With shorter chains the frame ring runs out
    first and evicts the oldest transitions a little earlier; nothing else changes. The slack
    costs 3 % of the frame memory: about 7.3 KB per (4, 84, 84) transition in all.

    **Validity** lives in the sum tree: a transition gets a non-zero priority once its n-step
    window is complete (``n_steps - 1`` later transitions added to its env, or a terminal or
    truncation inside the window) and back to zero when it, or a frame it needs, is overwritten.
    Everything is FIFO per env, so each env keeps the range ``[oldest, complete_end)`` of its
    sampleable transitions. ``sample`` thus never returns an incomplete or overwritten window, and
    :meth:`size` is the number of non-zero leaves.

    **Indices.** Transition ``t`` of env ``e`` has the global index ``(t % capacity_per_env) *
    n_envs + e``, SB3's layout of ``(buffer_size, n_envs)`` arrays; the sum tree has one leaf per
    index (padded to a power of two).

    **Priorities.** The tree holds ``p = (|td_error| + priority_eps) ** alpha``. A newly complete
    transition enters with the largest ``p`` seen so far (1.0 at the start), so it is likely to be
    replayed at least once (Schaul et al. 2016). With ``initial_priority="actor"`` the agent also
    hands over, before each :meth:`add`, the acting network's Q-values of the observations it acted
    on (:meth:`set_acting_values`, 8 bytes a transition), and :meth:`actor_td_errors` turns them
    into each new window's TD error, as Ape-X's actors do with their copy of the network: no
    forward pass is spent on priorities.

    **Sampling** is stratified: one uniform draw in each of ``B`` equal segments of the total
    priority. The importance-sampling weight of transition ``i`` is ``w_i = (N * P(i)) ** -beta``
    with ``P(i) = p_i / sum(p)`` and ``N = size()``, divided by the largest ``w`` of the batch
    (as Dopamine's prioritized replay and Rainbow do; this makes ``w_i = (min_batch(p) / p_i) **
    beta``, so weights only ever scale the loss down).

    :param buffer_size: transitions over all envs (as SB3); ``buffer_size // n_envs`` per env.
        As in SB3's ``ReplayBuffer``, the attribute ``self.buffer_size`` is the per-env capacity.
    :param observation_space: ``Box`` of shape ``(C, H, W)``, dtype uint8.
    :param action_space: ``Discrete``.
    :param device: where sampled tensors are created.
    :param n_envs: number of env streams.
    :param optimize_memory_usage: must be False: frames are always stored once.
    :param handle_timeout_termination: read ``infos[i]["TimeLimit.truncated"]`` so that a time
        limit ends the window without cutting the bootstrap; when False a truncation counts as a
        terminal (as in SB3).
    :param n_steps: longest window of the n-step return (``n`` of ``gamma^n``).
    :param gamma: discount factor in (0, 1].
    :param alpha: priority exponent in [0, 1] (0: uniform).
    :param beta: importance-sampling exponent in [0, 1] (0: no correction); may be changed
        between calls (annealing).
    :param priority_eps: added to ``|td_error|`` so no valid transition gets probability 0.
    :param initial_priority: ``"max"`` or ``"actor"`` (see above).
    :param seed: seed of the buffer's own random generator (see :meth:`seed`).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        n_steps: int = 3,
        gamma: float = 0.99,
        alpha: float = 0.6,
        beta: float = 0.4,
        priority_eps: float = 1e-6,
        initial_priority: str = "max",
        seed: int | None = None,
    ) -> None:
        _check_spaces(observation_space, action_space)
        if optimize_memory_usage:
            raise ValueError(
                "PrioritizedReplayBuffer does not take optimize_memory_usage=True: it always stores "
                "each frame once (leaner than SB3's optimized layout); pass optimize_memory_usage=False"
            )
        if not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        if not isinstance(buffer_size, (int, np.integer)) or buffer_size < 1 or buffer_size < n_envs:
            raise ValueError(
                f"buffer_size must be a positive integer >= n_envs ({n_envs}): it counts transitions "
                f"over all envs, buffer_size // n_envs per env; got {buffer_size!r}"
            )
        per_env = int(buffer_size) // int(n_envs)
        if not isinstance(n_steps, (int, np.integer)) or not 1 <= n_steps <= per_env:
            raise ValueError(
                f"n_steps must be an integer in [1, buffer_size // n_envs = {per_env}], got {n_steps!r}"
            )
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta!r}")
        if not priority_eps > 0.0:
            raise ValueError(f"priority_eps must be > 0 so that no valid transition has probability 0, got {priority_eps!r}")
        if initial_priority not in INITIAL_PRIORITIES:
            raise ValueError(f"unknown initial_priority {initial_priority!r}; choose one of {INITIAL_PRIORITIES}")

        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=int(n_envs))
        self.buffer_size = per_env  # per env, as SB3's ReplayBuffer
        self.capacity = per_env * self.n_envs
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.priority_eps = float(priority_eps)
        self.initial_priority = initial_priority

        self.stack_size, height, width = observation_space.shape
        self.frame_capacity = per_env + self.stack_size + math.ceil(FRAME_SLACK * per_env)
        needed = self.bytes_needed(per_env, self.n_envs, (self.stack_size, height, width))
        available = available_memory_bytes()
        if available is not None and needed > available:
            per_transition = needed / self.capacity
            fits = max(self.n_envs, int(0.9 * available / per_transition) // self.n_envs * self.n_envs)
            raise MemoryError(
                f"PrioritizedReplayBuffer(buffer_size={buffer_size}) needs {needed} bytes "
                f"({needed / 2**30:.2f} GiB) but only {available} bytes ({available / 2**30:.2f} GiB) are "
                f"available; lower buffer_size (e.g. --set apex.buffer_size={fits})"
            )

        # np.zeros maps untouched pages lazily: memory grows with the fill, not at construction.
        self.frames = np.zeros((self.n_envs, self.frame_capacity, height, width), dtype=np.uint8)
        self.obs_frames = np.zeros((per_env, self.n_envs), dtype=np.int64)  # newest frame of obs
        self.actions = np.zeros((per_env, self.n_envs), dtype=np.int64)
        self.rewards = np.zeros((per_env, self.n_envs), dtype=np.float32)
        self.terminals = np.zeros((per_env, self.n_envs), dtype=bool)
        self.truncations = np.zeros((per_env, self.n_envs), dtype=bool)
        # The acting network's Q(s_t, a_t) and max_a Q(s_t, a), for actor-side priorities.
        self.acting_q_taken = np.zeros((per_env, self.n_envs), dtype=np.float32)
        self.acting_q_max = np.zeros((per_env, self.n_envs), dtype=np.float32)
        self.tree = SumTree(self.capacity)

        self._env_ids = np.arange(self.n_envs)
        self._stack_offsets = np.arange(self.stack_size)
        self._window_offsets = np.arange(self.n_steps)
        self._gamma_powers = self.gamma ** np.arange(self.n_steps + 1, dtype=np.float64)
        self._reset_counters()
        self.seed(seed)

    @staticmethod
    def bytes_needed(capacity_per_env: int, n_envs: int, obs_shape: tuple[int, int, int]) -> int:
        """Bytes a full buffer occupies: frame rings, transition records and the sum tree."""
        stack, height, width = obs_shape
        frame_capacity = capacity_per_env + stack + math.ceil(FRAME_SLACK * capacity_per_env)
        frames = n_envs * frame_capacity * height * width
        records = capacity_per_env * n_envs * (8 + 8 + 4 + 1 + 1 + 4 + 4)
        tree = 2 * (1 << max(1, math.ceil(math.log2(capacity_per_env * n_envs)))) * 8
        return frames + records + tree

    def seed(self, seed: int | None = None) -> None:
        """Reseed the generator that draws samples, so that runs repeat."""
        self._rng = np.random.default_rng(seed)

    def _reset_counters(self) -> None:
        n = self.n_envs
        self.added = 0  # transitions added to every env stream
        self.frames_added = np.zeros(n, dtype=np.int64)
        self.oldest = np.zeros(n, dtype=np.int64)  # oldest transition still stored
        self.complete_end = np.zeros(n, dtype=np.int64)  # transitions before it have complete windows
        self.announced_end = np.zeros(n, dtype=np.int64)  # actor_td_errors returned those before it
        self._pending_acting_values: tuple[np.ndarray, np.ndarray] | None = None
        self.max_priority = 1.0
        self.pos = 0
        self.full = False

    def reset(self) -> None:
        """Forget every transition (the memory stays allocated)."""
        self._reset_counters()
        self.tree.nodes[:] = 0.0

    def size(self) -> int:
        """Number of transitions that can be sampled now (non-zero priorities)."""
        return int(np.maximum(self.complete_end - self.oldest, 0).sum())

    # ------------------------------------------------------------------ adding

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Add one transition per env, as SB3's off-policy loop calls it.

        :param obs: ``(n_envs, C, H, W)`` uint8.
        :param next_obs: ``(n_envs, C, H, W)`` uint8; for a finished episode the true last
            observation (``infos[i]["terminal_observation"]``), not the reset one.
        :param action: ``(n_envs,)`` or ``(n_envs, 1)`` integer actions.
        :param reward: ``(n_envs,)``.
        :param done: ``(n_envs,)`` terminal or truncated.
        :param infos: one dict per env; ``"TimeLimit.truncated"`` marks a truncation.
        """
        n, stack, per_env, frame_capacity = self.n_envs, self.stack_size, self.buffer_size, self.frame_capacity
        obs = self._check_stacks(obs, "obs")
        next_obs = self._check_stacks(next_obs, "next_obs")
        action = _per_env(action, n, "action")
        reward = _per_env(reward, n, "reward").astype(np.float32)
        done = _per_env(done, n, "done").astype(bool)
        if len(infos) != n:
            raise ValueError(f"expected {n} infos (one per env), got {len(infos)}")
        if self.initial_priority == "actor" and self._pending_acting_values is None:
            raise ValueError(
                "initial_priority='actor' takes the acting network's Q-values of each batch: call "
                "set_acting_values(q_taken, q_max) before add(), or build the buffer with initial_priority='max'"
            )
        if self.handle_timeout_termination:
            truncated = done & np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        else:
            truncated = np.zeros(n, dtype=bool)
        if stack > 1:
            shifted = (next_obs[:, :-1] == obs[:, 1:]).reshape(n, -1).all(axis=1)
            if not shifted.all():
                raise ValueError(
                    f"next_obs[:-1] must equal obs[1:] (stacks of single frames, shifted by one frame "
                    f"per step), but not for envs {np.flatnonzero(~shifted).tolist()}: "
                    "PrioritizedReplayBuffer stores each frame once and needs frame-stacked observations"
                )

        env_ids, frames_added = self._env_ids, self.frames_added
        previous_stack = (frames_added[:, None] - stack + self._stack_offsets) % frame_capacity
        continues = (frames_added > 0) & (
            (self.frames[env_ids[:, None], previous_stack] == obs).reshape(n, -1).all(axis=1)
        )
        # A stream cut without a done (the env was reset from outside): end the previous window.
        complete_end = self.complete_end.copy()
        if self.added > 0:
            previous = (self.added - 1) % per_env
            cut = ~continues & ~self.terminals[previous] & ~self.truncations[previous]
            if cut.any():
                self.truncations[previous, cut] = True
                complete_end[cut] = self.added

        newest_obs_frame = np.where(continues, frames_added - 1, frames_added + stack - 1)
        fresh = np.flatnonzero(~continues)
        if fresh.size:
            self.frames[fresh[:, None], (frames_added[fresh, None] + self._stack_offsets) % frame_capacity] = obs[fresh]
        self.frames[env_ids, (newest_obs_frame + 1) % frame_capacity] = next_obs[:, -1]
        self.frames_added = newest_obs_frame + 2

        slot = self.added % per_env
        self.obs_frames[slot] = newest_obs_frame
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminals[slot] = done & ~truncated
        self.truncations[slot] = truncated
        if self._pending_acting_values is not None:
            self.acting_q_taken[slot], self.acting_q_max[slot] = self._pending_acting_values
            self._pending_acting_values = None
        self.added += 1
        self.pos = self.added % per_env
        self.full = self.added >= per_env

        # Evict what the transition ring and then the frame ring overwrote (FIFO: a prefix).
        old_oldest = self.oldest
        oldest = np.maximum(old_oldest, self.added - per_env)
        first_needed_frame = self.frames_added - frame_capacity + stack - 1
        while True:
            stale = (oldest < self.added) & (self.obs_frames[oldest % per_env, env_ids] < first_needed_frame)
            if not stale.any():
                break
            oldest += stale
        self.oldest = oldest

        complete_end = np.where(done, self.added, np.maximum(complete_end, self.added - self.n_steps + 1))
        evicted = self._leaves_of_ranges(old_oldest, oldest)
        completed = self._leaves_of_ranges(np.maximum(self.complete_end, oldest), complete_end)
        self.complete_end = complete_end
        self.tree.update(
            np.concatenate([evicted, completed]),
            np.concatenate([np.zeros(evicted.size), np.full(completed.size, self.max_priority)]),
        )

    def _check_stacks(self, stacks: np.ndarray, name: str) -> np.ndarray:
        stacks = np.asarray(stacks)
        shape = (self.n_envs, *self.obs_shape)
        if stacks.dtype != np.uint8 or stacks.size != math.prod(shape):
            raise ValueError(f"{name} must be uint8 of shape {shape}, got {stacks.dtype} of shape {stacks.shape}")
        return stacks.reshape(shape)

    def _leaves_of_ranges(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Global indices of transitions ``starts[e] <= t < ends[e]`` of each env ``e``."""
        lengths = np.maximum(ends - starts, 0)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        first = np.cumsum(lengths) - lengths
        transitions = np.repeat(starts, lengths) + np.arange(total) - np.repeat(first, lengths)
        return (transitions % self.buffer_size) * self.n_envs + np.repeat(self._env_ids, lengths)

    # ---------------------------------------------------------------- sampling

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:
        """Draw ``batch_size`` complete n-step transitions with probability ``p_i / sum(p)``.

        :param batch_size: at most :meth:`size`.
        :param env: SB3's ``VecNormalize`` wrapper, if any, to normalize observations and rewards.
        """
        valid = self.size()
        if not 1 <= batch_size <= valid:
            raise ValueError(
                f"cannot sample a batch of {batch_size}: the buffer holds {valid} valid transitions "
                f"(complete {self.n_steps}-step windows); add more before sampling"
            )
        return self._get_samples(self.tree.stratified_sample(batch_size, self._rng), env=env)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> PrioritizedReplayBufferSamples:
        """The n-step transitions at global indices ``batch_inds`` (each must be sampleable)."""
        indices = np.asarray(batch_inds, dtype=np.int64).reshape(-1)
        priorities = self.tree.get(indices)
        if not (priorities > 0).all():
            raise ValueError(f"indices {indices[priorities <= 0][:10].tolist()} are not sampleable transitions")
        slots, env_ids = np.divmod(indices, self.n_envs)
        lengths, returns, last = self._windows(slots, env_ids, env)

        observations = self._normalize_obs(self._stacks(env_ids, self.obs_frames[slots, env_ids]), env)
        next_observations = self._normalize_obs(self._stacks(env_ids, self.obs_frames[last, env_ids] + 1), env)
        weights = (self.size() * priorities / self.tree.total) ** -self.beta
        return PrioritizedReplayBufferSamples(
            observations=self.to_torch(observations, copy=False),
            actions=self.to_torch(self.actions[slots, env_ids].reshape(-1, 1), copy=False),
            next_observations=self.to_torch(next_observations, copy=False),
            dones=self.to_torch(self.terminals[last, env_ids].astype(np.float32).reshape(-1, 1), copy=False),
            rewards=self.to_torch(returns.astype(np.float32).reshape(-1, 1), copy=False),
            discounts=self.to_torch(self._gamma_powers[lengths].astype(np.float32).reshape(-1, 1), copy=False),
            weights=self.to_torch((weights / weights.max()).astype(np.float32).reshape(-1, 1), copy=False),
            indices=indices,
        )

    def _windows(
        self, slots: np.ndarray, env_ids: np.ndarray, env: VecNormalize | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the transitions at ``(slots, env_ids)``: the length ``k`` of each n-step window (it
        ends at the first terminal or truncation), its return ``sum_{i<k} gamma^i r_{t+i}`` and the
        slot of its last transition; ``(B,)`` each."""
        columns = env_ids[:, None]
        steps = (slots[:, None] + self._window_offsets) % self.buffer_size  # (B, n_steps)
        ends = self.terminals[steps, columns] | self.truncations[steps, columns]
        lengths = np.where(ends.any(axis=1), ends.argmax(axis=1) + 1, self.n_steps)
        in_window = self._window_offsets < lengths[:, None]
        rewards = self._normalize_reward(self.rewards[steps, columns], env)
        returns = np.where(in_window, rewards * self._gamma_powers[: self.n_steps], 0.0).sum(axis=1)
        return lengths, returns, steps[np.arange(slots.size), lengths - 1]

    def priorities(self) -> np.ndarray:
        """The priorities ``p = (|td| + priority_eps) ** alpha`` of every sampleable transition."""
        leaves = self.tree.leaf_values()
        return leaves[leaves > 0]

    def _stacks(self, env_ids: np.ndarray, newest_frames: np.ndarray) -> np.ndarray:
        """``(B, C, H, W)`` stacks whose newest frames are ``newest_frames`` (absolute, per env)."""
        frames = newest_frames[:, None] - (self.stack_size - 1) + self._stack_offsets
        return self.frames[env_ids[:, None], frames % self.frame_capacity]

    # -------------------------------------------------------------- priorities

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray | th.Tensor) -> None:
        """Set the priorities of ``indices`` (from :meth:`sample` or :meth:`actor_td_errors`) to
        ``(|td_errors| + priority_eps) ** alpha``.

        Indices that stopped being sampleable since they were handed out (evicted) are skipped; a
        repeated index takes its last value.

        :param indices: ``(B,)`` global indices.
        :param td_errors: ``(B,)`` or ``(B, 1)`` TD errors, numpy or torch (any device).
        """
        if isinstance(td_errors, th.Tensor):
            td_errors = td_errors.detach().to("cpu", th.float64).numpy()
        td_errors = np.asarray(td_errors, dtype=np.float64).reshape(-1)
        indices = np.asarray(indices).reshape(-1)
        if not np.issubdtype(indices.dtype, np.integer) and indices.size:
            raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
        indices = indices.astype(np.int64)
        if indices.size != td_errors.size:
            raise ValueError(f"got {indices.size} indices but {td_errors.size} TD errors")
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise ValueError(f"indices must be in [0, {self.capacity}), got values in [{indices.min()}, {indices.max()}]")
        if not np.isfinite(td_errors).all():
            raise ValueError("TD errors must be finite: a NaN or inf would corrupt the sum tree")
        priorities = (np.abs(td_errors) + self.priority_eps) ** self.alpha
        live = self.tree.get(indices) > 0
        self.tree.update(indices[live], priorities[live])
        if live.any():
            self.max_priority = max(self.max_priority, float(priorities[live].max()))

    def set_acting_values(self, q_taken: np.ndarray, q_max: np.ndarray) -> None:
        """The acting network's ``Q(s, a)`` of the actions taken and ``max_a Q(s, .)``, ``(n_envs,)``
        each, for the observations of the next :meth:`add` (``initial_priority="actor"``)."""
        self._pending_acting_values = (
            np.asarray(q_taken, dtype=np.float32).reshape(self.n_envs),
            np.asarray(q_max, dtype=np.float32).reshape(self.n_envs),
        )

    def actor_td_errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Ape-X's actor-side initial priorities from the stored acting values, no forward pass:
        ``R + gamma^k * max_a Q(s_{t+k}, a) - Q(s_t, a_t)`` for every window completed since the
        last call, the bootstrap dropped after a terminal. ``Q(s_{t+k}, .)`` is known once the
        actor has acted on ``s_{t+k}``: a window becomes ready one step after it completes. A window
        ended by a time limit has no acted-on bootstrap observation and keeps the max priority.

        :return: ``(indices, td_errors)``, ``(M,)`` each, for :meth:`update_priorities`.
        """
        if self.initial_priority != "actor":
            raise ValueError(
                "actor_td_errors is for actor-side priorities: build the buffer with "
                f"initial_priority='actor' (it has {self.initial_priority!r})"
            )
        if self.added == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        newest = (self.added - 1) % self.buffer_size
        newest_ended = self.terminals[newest] | self.truncations[newest]
        # Windows that end at the newest transition without a terminal need s_{t+k}, acted on next.
        ready_end = np.where(newest_ended, self.complete_end, np.minimum(self.complete_end, self.added - self.n_steps))
        indices = self._leaves_of_ranges(np.maximum(self.announced_end, self.oldest), ready_end)
        self.announced_end = np.maximum(self.announced_end, ready_end)
        slots, env_ids = np.divmod(indices, self.n_envs)
        lengths, returns, last = self._windows(slots, env_ids)
        terminal = self.terminals[last, env_ids]
        bootstrap = np.where(terminal, 0.0, self.acting_q_max[(last + 1) % self.buffer_size, env_ids])
        td_errors = returns + self._gamma_powers[lengths] * bootstrap - self.acting_q_taken[slots, env_ids]
        bootstrapped = ~self.truncations[last, env_ids]
        return indices[bootstrapped], td_errors[bootstrapped]

    # ------------------------------------------------------------ save / load

    _STATE_ARRAYS = ("frames", "obs_frames", "actions", "rewards", "terminals", "truncations", "acting_q_taken",
                     "acting_q_max", "frames_added", "oldest", "complete_end", "announced_end")

    def _settings(self) -> dict[str, Any]:
        return {
            "format": _SAVE_FORMAT,
            "obs_shape": list(self.obs_shape),
            "n_actions": int(self.action_space.n),
            "n_envs": self.n_envs,
            "capacity_per_env": self.buffer_size,
            "frame_capacity": self.frame_capacity,
            "n_steps": self.n_steps,
            "gamma": self.gamma,
            "alpha": self.alpha,
            "priority_eps": self.priority_eps,
            "initial_priority": self.initial_priority,
            "handle_timeout_termination": self.handle_timeout_termination,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write everything needed to continue (frames, records, tree, counters, max priority,
        beta, random state) to one uncompressed ``.npz`` file at exactly ``path``."""
        arrays = {name: getattr(self, name) for name in self._STATE_ARRAYS}
        with open(path, "wb") as file:
            np.savez(
                file,
                settings=np.array(json.dumps(self._settings())),
                rng_state=np.array(json.dumps(self._rng.bit_generator.state)),
                tree=self.tree.nodes,
                scalars=np.array([self.added, self.max_priority, self.beta], dtype=np.float64),
                **arrays,
            )

    def load(self, path: str | os.PathLike) -> None:
        """Restore a buffer written by :meth:`save` into this one, built with the same settings."""
        with np.load(path, allow_pickle=False) as data:
            saved, mine = json.loads(str(data["settings"])), self._settings()
            if saved != mine:
                differ = {key: (saved.get(key), mine.get(key)) for key in sorted(set(saved) | set(mine)) if saved.get(key) != mine.get(key)}
                raise ValueError(
                    f"{os.fspath(path)!r} was saved by a buffer with other settings; (saved, this buffer): {differ}"
                )
            for name in self._STATE_ARRAYS:
                np.copyto(getattr(self, name), data[name])
            np.copyto(self.tree.nodes, data["tree"])
            added, self.max_priority, self.beta = data["scalars"].tolist()
            self.added = int(added)
            self._rng.bit_generator.state = json.loads(str(data["rng_state"]))
        self.pos = self.added % self.buffer_size
        self.full = self.added >= self.buffer_size


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    if not (
        isinstance(observation_space, spaces.Box)
        and len(observation_space.shape) == 3
        and observation_space.dtype == np.uint8
        and min(observation_space.shape) >= 1
    ):
        raise ValueError(
            f"PrioritizedReplayBuffer stores stacked uint8 frames: it accepts a Box observation space of "
            f"shape (C, H, W) and dtype uint8, C >= 1 stacked single-channel frames (e.g. Atari's "
            f"(4, 84, 84)); got {observation_space}"
        )
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"PrioritizedReplayBuffer is for DQN-style agents: it accepts a Discrete action space, got {action_space}")


def _per_env(values: Any, n_envs: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size != n_envs:
        raise ValueError(f"{name} must hold one value per env ({n_envs}), got shape {values.shape}")
    return values.reshape(n_envs)
