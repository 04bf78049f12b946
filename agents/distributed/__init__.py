"""Ape-X on Ray: the single-machine agent's roles (acting, replay, learning) as Ray actors.

- :mod:`~rl_coordconv.agents.distributed.rollout`: a rollout actor steps its own vectorized env with its slice
  of the epsilon ladder and a CPU copy of the network (:func:`rl_coordconv.agents.apex.act`);
- :mod:`~rl_coordconv.agents.distributed.blocks`: the frame-lean blocks of steps it sends to replay;
- :mod:`~rl_coordconv.agents.distributed.shard`: a replay shard, the prioritized frame-lean replay of its actors;
- :mod:`~rl_coordconv.agents.distributed.learner`: the learner loop in the driver (:func:`rl_coordconv.agents.apex.learner_step`),
  sampling from the shards with prefetching and publishing weights through Ray's object store.

Ray is an optional extra (``pip install -e .[distributed]``); only the learner module imports it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import ClassVar

from rl_coordconv.agents.config import AT_LEAST_ONE, NON_NEGATIVE, Range, check_ranges

INSTALL_HINT = "pip install -e .[distributed]"


@dataclass
class DistributedConfig:
    """How the Ape-X agent is spread over Ray actors (``apex.n_envs`` env copies per actor)."""

    enabled: bool = False  # train.py --distributed
    actors: int = 0  # rollout actors; 0: one per core but the learner's (at least 1)
    replay_shards: int = 1
    block_steps: int = 64  # env steps per block sent to replay: block_steps x apex.n_envs transitions
    weights_interval: int = 50  # learner steps between weight publications
    prefetch: int = 2  # sample requests in flight per replay shard
    max_actor_restarts: int = 3  # Ray restarts a dead rollout actor this many times
    # Actors wait while the learner is more than a block per actor behind apex.replay_ratio, so
    # that every arch gets the same updates per transition (a slower network would otherwise
    # learn from fewer). False: actors run freely, as in Ape-X, and the learner takes what it can.
    hold_replay_ratio: bool = True

    RANGES: ClassVar[dict[str, Range]] = {
        "actors": NON_NEGATIVE,
        "replay_shards": AT_LEAST_ONE,
        "block_steps": AT_LEAST_ONE,
        "weights_interval": AT_LEAST_ONE,
        "prefetch": AT_LEAST_ONE,
        "max_actor_restarts": NON_NEGATIVE,
    }

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        check_ranges(self, self.RANGES, "distributed")
        if self.resolved_actors() % self.replay_shards:
            # The learner takes the same number of batches from each shard, with shard-local
            # importance weights (as Ape-X's sharded replay): shards must hold equal shares.
            raise ValueError(
                f"distributed.replay_shards ({self.replay_shards}) must divide the rollout actors "
                f"({self.resolved_actors()}): each shard holds the replay of an equal share of them"
            )

    def resolved_actors(self) -> int:
        """The number of rollout actors: ``actors``, or one per core but one."""
        return self.actors or max((os.cpu_count() or 2) - 1, 1)

    def emulator_threads(self, cores: int | None = None) -> int:
        """ALE emulator threads per rollout actor: its equal share of ``cores`` (default: the cores
        this process may use), at least 1, so that the actors together start no more threads than
        there are cores. On a cluster the share is of the driver's machine."""
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if cores < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")
        return max(cores // self.resolved_actors(), 1)


class DistributedTrainingStopped(RuntimeError):
    """The distributed run cannot go on; it stops with a checkpoint."""


class ReplayShardDied(DistributedTrainingStopped):
    """A replay shard actor died: its transitions are lost."""


class RolloutActorsDied(DistributedTrainingStopped):
    """Every rollout actor died beyond its restarts."""


def check_address_form(address: str, named: tuple[str, ...] = ("auto",)) -> None:
    """Refuse a ``--ray-address`` that is none of ``named``, ``HOST:PORT`` (port 1-65535) or a
    URL (``ray://HOST:PORT``), before anything starts."""
    host, _, port = address.rpartition(":")
    if address in named or "://" in address or (host and port.isdigit() and 1 <= int(port) <= 65535):
        return
    raise ValueError(f"--ray-address {address!r} is not {', '.join(named)}, HOST:PORT (a port 1-65535) or a ray:// URL")


def check_reachable(address: str, timeout_seconds: float = 10) -> None:
    """Refuse a ``--ray-address HOST:PORT`` that nothing answers on (Ray itself would retry for
    minutes); ``auto``, ``local`` and URLs are left to Ray."""
    host, _, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_seconds).close()
    except OSError as error:
        raise ValueError(
            f"cannot reach the Ray head at --ray-address {address} ({error}); "
            f"start it there with `ray start --head --port {port}`"
        ) from None


def start_ray(
    address: str | None = None, *, min_cpus: int = 1, quiet: bool = False, purpose: str = "distributed training"
) -> bool:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT``), or start a local Ray
    (``None`` or ``local``) with a CPU for each core this process may use, and at least
    ``min_cpus``; nothing when Ray is already up. ``quiet`` leaves the workers' output out of this
    process's (the runs of a sweep log to their own train.log).

    :return: whether this call started the session (its caller shuts it down).
    :raises ImportError: Ray is not installed (the message names ``purpose`` and the install command).
    :raises ValueError: nothing answers at ``address``, or Ray cannot join it.
    """
    ray = require_ray(purpose)
    if address not in (None, "local"):
        check_reachable(address)
    if ray.is_initialized():
        return False
    logging = {"log_to_driver": False, "logging_level": "WARNING"} if quiet else {}
    try:
        if address in (None, "local"):
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            ray.init(num_cpus=max(cpus, min_cpus), include_dashboard=False, **logging)
        else:
            ray.init(address=address, **logging)
    except (ConnectionError, RuntimeError, ValueError) as error:  # ValueError: Ray's "Invalid address"
        ray.shutdown()  # a half-started session
        raise ValueError(f"cannot join the Ray cluster at --ray-address {address}: {error}") from None
    return True


def require_ray(purpose: str = "distributed training"):
    """``import ray``, or stop with the command that installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"{purpose} needs Ray, which is not installed; install it with: {INSTALL_HINT}") from None
    return ray
