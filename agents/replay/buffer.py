"""The SB3 adapter of the replay: :class:`PrioritizedReplayBuffer`, usable as DQN's
``replay_buffer_class``.

It keeps, per env, a ring of transition records (newest frame of ``obs``, action, reward,
terminal, truncated, the acting Q-values) and composes the other parts of this package: the
frames (:mod:`.frames`), the n-step windows (:mod:`.windows`), the priorities
(:mod:`.sum_tree`) and the sampling (:mod:`.sampler`). It decides what enters and what leaves:
windows become sampleable once complete, transitions leave when their record or a frame they
need is overwritten.

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

from rl_coordconv.agents.config import DISCOUNT, POSITIVE, PROBABILITY
from rl_coordconv.agents.replay.frames import FrameRings, frame_capacity_for
from rl_coordconv.agents.replay.sampler import importance_weights, stratified_sample
from rl_coordconv.agents.replay.sum_tree import SumTree
from rl_coordconv.agents.replay.windows import NStepWindows

INITIAL_PRIORITIES = ("actor", "max")  # from the acting Q-values (Ape-X), or the largest so far
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


def to_device(array: np.ndarray, device: th.device | str) -> th.Tensor:
    """``array`` as a tensor on ``device``: on the CPU, the array's own memory (no copy); to CUDA
    through page-locked (pinned) host memory with ``non_blocking=True``, so the host goes on while
    the copy runs, in stream order before any kernel that reads the tensor. PyTorch's pinned-memory
    cache keeps the staging block until the copy is done."""
    tensor = th.as_tensor(array)
    if th.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class NStepTransitions(NamedTuple):
    """n-step transitions as numpy arrays (``B`` = batch size), without importance weights."""

    observations: np.ndarray  # (B, C, H, W) uint8, rebuilt stacks
    actions: np.ndarray  # (B, 1) int64
    next_observations: np.ndarray  # (B, C, H, W) uint8: the observation k steps later
    dones: np.ndarray  # (B, 1) float32: 1 only if a true terminal ended the window
    rewards: np.ndarray  # (B, 1) float32: n-step discounted return sum_{i<k} gamma^i r_{t+i}
    discounts: np.ndarray  # (B, 1) float32: gamma^k, k <= n_steps the steps actually taken


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
    of single frames (:class:`~rl_coordconv.agents.replay.frames.FrameRings`, which also says
    when a new chain of frames starts) and a ring of ``capacity_per_env`` transition records.
    Transitions are numbered by an ever-increasing counter per env; the ring slot is the counter
    modulo the ring size. When ``obs[e]`` does not continue the previous ``next_obs[e]`` although
    that transition was not ``done`` (the env was reset from outside), the previous transition is
    marked truncated: no window crosses the cut, and the return bootstraps there. The frame rings
    hold a little more than one frame per transition
    (:func:`~rl_coordconv.agents.replay.frames.frame_capacity_for`): about 7.3 KB per
    (4, 84, 84) transition in all.

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

    **Sampling** is stratified and its importance weights are normalized by the batch's largest
    (:mod:`~rl_coordconv.agents.replay.sampler`), with ``N = size()``.

    **Capacity.** As in SB3, the ``buffer_size`` argument counts transitions over all envs while
    the attribute ``self.buffer_size`` is the capacity of one env (SB3's loops read it so);
    :attr:`capacity_per_env` and :attr:`capacity` say which is which.

    :param buffer_size: transitions over all envs (as SB3); ``buffer_size // n_envs`` per env.
    :param observation_space: ``Box`` of shape ``(C, H, W)``, dtype uint8.
    :param action_space: ``Discrete``.
    :param device: where sampled tensors are created; to CUDA they are copied without waiting
        (:func:`to_device`).
    :param n_envs: number of env streams.
    :param optimize_memory_usage: must be False: frames are always stored once.
    :param handle_timeout_termination: read ``infos[i]["TimeLimit.truncated"]`` so that a time
        limit ends the window without cutting the bootstrap; when False a truncation counts as a
        terminal (as in SB3).
    :param n_steps: longest window of the n-step return (``n`` of ``gamma^n``; SB3's
        ``NStepReplayBuffer`` name).
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
            raise ValueError(f"n_steps must be an integer in [1, buffer_size // n_envs = {per_env}], got {n_steps!r}")
        for name, value, accepted in (("gamma", gamma, DISCOUNT), ("alpha", alpha, PROBABILITY), ("beta", beta, PROBABILITY)):
            if value not in accepted:
                raise ValueError(f"{name} must be in {accepted}, got {value!r}")
        if priority_eps not in POSITIVE:
            raise ValueError(f"priority_eps must be > 0 so that no valid transition has probability 0, got {priority_eps!r}")
        if initial_priority not in INITIAL_PRIORITIES:
            raise ValueError(f"unknown initial_priority {initial_priority!r}; choose one of {INITIAL_PRIORITIES}")

        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=int(n_envs))
        self.buffer_size = per_env  # per env, as SB3's ReplayBuffer
        self.capacity_per_env = per_env
        self.capacity = per_env * self.n_envs
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.priority_eps = float(priority_eps)
        self.initial_priority = initial_priority
        self.windows = NStepWindows(n_steps, gamma)

        self.stack_size, height, width = observation_space.shape
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

        self.frame_rings = FrameRings(
            self.n_envs, frame_capacity_for(per_env, self.stack_size), self.stack_size, height, width
        )
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
        self._reset_counters()
        self.seed(seed)

    @property
    def n_steps(self) -> int:
        return self.windows.n_steps

    @property
    def gamma(self) -> float:
        return self.windows.gamma

    @staticmethod
    def bytes_needed(capacity_per_env: int, n_envs: int, obs_shape: tuple[int, int, int]) -> int:
        """Bytes a full buffer occupies: frame rings, transition records and the sum tree."""
        stack, height, width = obs_shape
        frames = FrameRings.bytes_needed(n_envs, frame_capacity_for(capacity_per_env, stack), height, width)
        records = capacity_per_env * n_envs * (8 + 8 + 4 + 1 + 1 + 4 + 4)
        tree = 2 * (1 << max(1, math.ceil(math.log2(capacity_per_env * n_envs)))) * 8
        return frames + records + tree

    def seed(self, seed: int | None = None) -> None:
        """Reseed the generator that draws samples, so that runs repeat."""
        self._rng = np.random.default_rng(seed)

    def _reset_counters(self) -> None:
        n = self.n_envs
        self.added = 0  # transitions added to every env stream
        self.frame_rings.written[:] = 0
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
        n, per_env = self.n_envs, self.capacity_per_env
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

        continues = self.frame_rings.continues(obs)
        # A stream cut without a done (the env was reset from outside): end the previous window.
        complete_end = self.complete_end.copy()
        if self.added > 0:
            previous = (self.added - 1) % per_env
            cut = ~continues & ~self.terminals[previous] & ~self.truncations[previous]
            if cut.any():
                self.truncations[previous, cut] = True
                complete_end[cut] = self.added
        newest_obs_frame = self.frame_rings.append(obs, next_obs, continues)

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
        first_whole_stack = self.frame_rings.first_whole_stack()
        while True:
            stale = (oldest < self.added) & (self.obs_frames[oldest % per_env, self._env_ids] < first_whole_stack)
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
        return (transitions % self.capacity_per_env) * self.n_envs + np.repeat(self._env_ids, lengths)

    # ---------------------------------------------------------------- sampling

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        if self.device.type == "cuda":
            return to_device(array, self.device)  # a copy, not waited for
        return super().to_torch(array, copy)

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
        _, leaves = stratified_sample([self.tree], batch_size, self._rng)
        return self._get_samples(leaves, env=env)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> PrioritizedReplayBufferSamples:
        """The n-step transitions at global indices ``batch_inds`` with their importance weights."""
        indices = np.asarray(batch_inds, dtype=np.int64).reshape(-1)
        transitions = self.transitions(indices, env)
        weights = importance_weights(self.tree.get(indices), self.tree.total, self.size(), self.beta)
        return PrioritizedReplayBufferSamples(
            *(self.to_torch(array, copy=False) for array in transitions),
            weights=self.to_torch(weights.reshape(-1, 1), copy=False),
            indices=indices,
        )

    def transitions(self, indices: np.ndarray, env: VecNormalize | None = None) -> NStepTransitions:
        """The n-step transitions at global ``indices`` (``(B,)``; each must be sampleable), as numpy.

        :param env: SB3's ``VecNormalize`` wrapper, if any, to normalize observations and rewards.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        priorities = self.tree.get(indices)
        if not (priorities > 0).all():
            raise ValueError(f"indices {indices[priorities <= 0][:10].tolist()} are not sampleable transitions")
        slots, env_ids = np.divmod(indices, self.n_envs)
        lengths, returns, last = self._windows(slots, env_ids, env)
        stacks = self.frame_rings.stacks
        return NStepTransitions(
            observations=self._normalize_obs(stacks(env_ids, self.obs_frames[slots, env_ids]), env),
            actions=self.actions[slots, env_ids].reshape(-1, 1),
            next_observations=self._normalize_obs(stacks(env_ids, self.obs_frames[last, env_ids] + 1), env),
            dones=self.terminals[last, env_ids].astype(np.float32).reshape(-1, 1),
            rewards=returns.astype(np.float32).reshape(-1, 1),
            discounts=self.windows.discounts(lengths).astype(np.float32).reshape(-1, 1),
        )

    def _windows(
        self, slots: np.ndarray, env_ids: np.ndarray, env: VecNormalize | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lengths, returns, last slots) of the windows at ``(slots, env_ids)``: :class:`NStepWindows`."""
        normalize = None if env is None else (lambda rewards: self._normalize_reward(rewards, env))
        return self.windows(slots, env_ids, self.rewards, self.terminals, self.truncations, normalize)

    def priorities(self) -> np.ndarray:
        """The priorities ``p = (|td| + priority_eps) ** alpha`` of every sampleable transition."""
        leaves = self.tree.leaf_values()
        return leaves[leaves > 0]

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
        newest = (self.added - 1) % self.capacity_per_env
        newest_ended = self.terminals[newest] | self.truncations[newest]
        # Windows that end at the newest transition without a terminal need s_{t+k}, acted on next.
        ready_end = np.where(newest_ended, self.complete_end, np.minimum(self.complete_end, self.added - self.n_steps))
        indices = self._leaves_of_ranges(np.maximum(self.announced_end, self.oldest), ready_end)
        self.announced_end = np.maximum(self.announced_end, ready_end)
        slots, env_ids = np.divmod(indices, self.n_envs)
        lengths, returns, last = self._windows(slots, env_ids)
        terminal = self.terminals[last, env_ids]
        bootstrap = np.where(terminal, 0.0, self.acting_q_max[(last + 1) % self.capacity_per_env, env_ids])
        td_errors = returns + self.windows.discounts(lengths) * bootstrap - self.acting_q_taken[slots, env_ids]
        bootstrapped = ~self.truncations[last, env_ids]
        return indices[bootstrapped], td_errors[bootstrapped]

    # ------------------------------------------------------------ save / load

    # The saved names of the state arrays (format 2), and where they live.
    _RECORD_ARRAYS = (
        "obs_frames",
        "actions",
        "rewards",
        "terminals",
        "truncations",
        "acting_q_taken",
        "acting_q_max",
        "oldest",
        "complete_end",
        "announced_end",
    )

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array :meth:`save` writes, by its saved name (the live arrays, not copies)."""
        arrays = {name: getattr(self, name) for name in self._RECORD_ARRAYS}
        arrays["frames"], arrays["frames_added"] = self.frame_rings.frames, self.frame_rings.written
        return arrays

    def _settings(self) -> dict[str, Any]:
        return {
            "format": _SAVE_FORMAT,
            "obs_shape": list(self.obs_shape),
            "n_actions": int(self.action_space.n),
            "n_envs": self.n_envs,
            "capacity_per_env": self.capacity_per_env,
            "frame_capacity": self.frame_rings.capacity,
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
        arrays = self.state_arrays()
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
                differ = {
                    key: (saved.get(key), mine.get(key))
                    for key in sorted(set(saved) | set(mine))
                    if saved.get(key) != mine.get(key)
                }
                raise ValueError(
                    f"{os.fspath(path)!r} was saved by a buffer with other settings; (saved, this buffer): {differ}"
                )
            for name, array in self.state_arrays().items():
                np.copyto(array, data[name])
            np.copyto(self.tree.nodes, data["tree"])
            added, self.max_priority, self.beta = data["scalars"].tolist()
            self.added = int(added)
            self._rng.bit_generator.state = json.loads(str(data["rng_state"]))
        self.pos = self.added % self.capacity_per_env
        self.full = self.added >= self.capacity_per_env


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
        raise ValueError(
            f"PrioritizedReplayBuffer is for DQN-style agents: it accepts a Discrete action space, got {action_space}"
        )


def _per_env(values: Any, n_envs: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size != n_envs:
        raise ValueError(f"{name} must hold one value per env ({n_envs}), got shape {values.shape}")
    return values.reshape(n_envs)
