"""Proportional prioritized sampling over one sum tree or several (a Ray shard's buffers).

A batch is drawn as Schaul et al. (2016) and Dopamine do: the total priority is cut into ``B``
equal segments and one uniform draw lands in each, so a batch covers the whole distribution.
Over several trees the segments run across their concatenated leaves: the result is the same
as one tree holding all of them, which is how a shard samples its actors' buffers as one replay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rl_coordconv.agents.replay.sum_tree import SumTree


def stratified_sample(trees: Sequence[SumTree], batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` leaves drawn with probability ``leaf / (sum over all trees)``.

    :return: ``(owners, leaves)``, ``(B,)`` int64 each: the position of each draw's tree in
        ``trees`` and the leaf in that tree, in the order of the segments.
    """
    segments = np.arange(batch_size) + rng.random(batch_size)
    if len(trees) == 1:  # the single-process replay: no owners to find
        return np.zeros(batch_size, dtype=np.int64), trees[0].find(segments * (trees[0].total / batch_size))
    totals = np.array([tree.total for tree in trees], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(totals)])
    targets = segments * (edges[-1] / batch_size)
    owners = np.clip(np.searchsorted(edges, targets, side="right") - 1, 0, len(trees) - 1)
    leaves = np.empty(batch_size, dtype=np.int64)
    for owner in np.unique(owners):
        mine = owners == owner
        # Rounding may put a draw a hair past its tree's total; keep it inside that tree.
        inside = np.minimum(targets[mine] - edges[owner], np.nextafter(totals[owner], 0.0))
        leaves[mine] = trees[owner].find(inside)
    return owners, leaves


def importance_weights(priorities: np.ndarray, total: float, size: int, beta: float) -> np.ndarray:
    """``w_i = (N * P(i)) ** -beta`` with ``P(i) = p_i / total`` and ``N = size``, divided by the
    batch's largest ``w`` (as Dopamine and Rainbow): weights only ever scale the loss down.

    :param priorities: ``(B,)`` the sampled leaves' priorities ``p_i > 0``.
    :return: ``(B,)`` float32 in ``(0, 1]``.
    """
    weights = (size * np.asarray(priorities, dtype=np.float64) / total) ** -beta
    return (weights / weights.max()).astype(np.float32)
