"""n-step return windows over per-env rings of transition records, computed at sample time.

A window starts at a transition and takes up to ``n_steps`` of its env's following
transitions; it ends early at the first terminal or truncation, so it never crosses into
another episode (as SB3's ``NStepReplayBuffer``). Its return bootstraps with ``gamma ** k``
after the ``k`` steps actually taken, or not at all after a terminal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class NStepWindows:
    """Windows of at most ``n_steps`` transitions, discounted by ``gamma``."""

    def __init__(self, n_steps: int, gamma: float) -> None:
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)
        self._offsets = np.arange(self.n_steps)
        self._gamma_powers = self.gamma ** np.arange(self.n_steps + 1, dtype=np.float64)

    def discounts(self, lengths: np.ndarray) -> np.ndarray:
        """``gamma ** k`` for window lengths ``k``, float64 of the shape of ``lengths``."""
        return self._gamma_powers[lengths]

    def __call__(
        self,
        slots: np.ndarray,
        env_ids: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        truncations: np.ndarray,
        normalize_reward: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows starting at ring slots ``slots`` of envs ``env_ids`` (``(B,)`` each).

        :param rewards, terminals, truncations: the rings, ``(capacity_per_env, n_envs)`` each.
        :param normalize_reward: applied to the ``(B, n_steps)`` rewards of the windows.
        :return: ``(lengths, returns, last)``, ``(B,)`` each: the window length ``k``, its return
            ``sum_{i<k} gamma^i r_{t+i}`` and the ring slot of its last transition.
        """
        columns = env_ids[:, None]
        steps = (slots[:, None] + self._offsets) % terminals.shape[0]  # (B, n_steps)
        ends = terminals[steps, columns] | truncations[steps, columns]
        lengths = np.where(ends.any(axis=1), ends.argmax(axis=1) + 1, self.n_steps)
        in_window = self._offsets < lengths[:, None]
        window_rewards = rewards[steps, columns]
        if normalize_reward is not None:
            window_rewards = normalize_reward(window_rewards)
        returns = np.where(in_window, window_rewards * self._gamma_powers[: self.n_steps], 0.0).sum(axis=1)
        return lengths, returns, steps[np.arange(slots.size), lengths - 1]
