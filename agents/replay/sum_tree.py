"""A vectorized sum tree: the priorities of a proportional prioritized replay."""

from __future__ import annotations

import math

import numpy as np


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
