"""The replay ratio as one object: how many learner batches the transitions inserted so far allow.

Both Ape-X loops ask it, the single-process one (:class:`~rl_coordconv.agents.apex.ApeX`) and the
Ray learner loop: Reverb's ``SampleToInsertRatio`` rate limiter plays this part in Acme. The
count starts when the replay first holds ``min_size_to_sample`` transitions (as SB3 counts from
``learning_starts``), also after a resume, so a run resumed without its replay refills it first
and then learns at the ratio again, without a burst of batches owed for the refill.
"""

from __future__ import annotations

import math


class SampleToInsertRatio:
    """``samples_per_insert`` learner samples per inserted transition, in batches of ``batch_size``.

    :param samples_per_insert: the replay ratio (``apex.replay_ratio``), > 0.
    :param batch_size: transitions per learner batch.
    :param min_size_to_sample: the replay's size before which nothing is sampled.
    """

    def __init__(self, samples_per_insert: float, batch_size: int, min_size_to_sample: int) -> None:
        if not samples_per_insert > 0 or batch_size < 1:
            raise ValueError(
                f"a replay ratio needs samples_per_insert > 0 and batch_size >= 1, got {samples_per_insert!r} and {batch_size!r}"
            )
        self.samples_per_insert = float(samples_per_insert)
        self.batch_size = int(batch_size)
        self.min_size_to_sample = int(min_size_to_sample)
        self.origin: tuple[int, int] | None = None  # (inserted, learner batches) when sampling began

    def start(self, inserted: int, replay_size: int, learner_batches: int) -> bool:
        """Start counting once ``replay_size`` reaches ``min_size_to_sample``; whether it has started."""
        if self.origin is None and replay_size >= self.min_size_to_sample:
            self.origin = (int(inserted), int(learner_batches))
        return self.origin is not None

    def batches_allowed(self, inserted: int) -> float:
        """Learner batches in all that ``inserted`` transitions allow (call :meth:`start` first)."""
        if self.origin is None:
            raise RuntimeError("the replay ratio is not counting yet: call start() once the replay is full enough")
        origin_inserted, origin_batches = self.origin
        return origin_batches + self.samples_per_insert * (inserted - origin_inserted) / self.batch_size

    def batches_due(self, inserted: int, learner_batches: int) -> int:
        """Whole batches the learner may take now, having taken ``learner_batches``."""
        return max(0, math.floor(self.batches_allowed(inserted) - learner_batches + 1e-9))

    def batches_for(self, transitions: int) -> float:
        """Learner batches that ``transitions`` more inserts allow."""
        return self.samples_per_insert * transitions / self.batch_size
