"""Prioritized, frame-lean, multi-env n-step replay for an Ape-X-style DQN, in parts:

- :mod:`.sum_tree`: the priorities, a vectorized sum tree;
- :mod:`.frames`: each env's ring of single frames, every frame stored once (as Dopamine's
  ``circular_replay_buffer``): about 7.3 KB per Atari transition instead of SB3's 28 KB
  (``optimize_memory_usage=True``) or 56 KB;
- :mod:`.windows`: n-step returns computed at sample time (as SB3's ``NStepReplayBuffer``),
  each window ending at the first terminal or truncation;
- :mod:`.sampler`: proportional prioritized sampling (Schaul et al. 2016; Horgan et al. 2018),
  stratified, with importance weights, over one sum tree or a Ray shard's several;
- :mod:`.buffer`: :class:`PrioritizedReplayBuffer`, the SB3 adapter that composes them (DQN's
  ``replay_buffer_class``), with Ape-X's actor-side initial priorities.
"""

from rl_coordconv.agents.replay.buffer import (
    INITIAL_PRIORITIES,
    NStepTransitions,
    PrioritizedReplayBuffer,
    PrioritizedReplayBufferSamples,
    available_memory_bytes,
    to_device,
)
from rl_coordconv.agents.replay.sum_tree import SumTree

__all__ = [
    "INITIAL_PRIORITIES",
    "NStepTransitions",
    "PrioritizedReplayBuffer",
    "PrioritizedReplayBufferSamples",
    "SumTree",
    "available_memory_bytes",
    "to_device",
]
