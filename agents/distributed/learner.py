"""The distributed Ape-X learner: rollout actors and replay shards on Ray, the learner in the driver.

The driver runs one event loop over Ray object refs:

- a finished rollout block goes straight from its actor to its replay shard (the driver passes
  the ``ObjectRef`` on, it never copies the frames), and the actor gets its next block to play,
  with the newest weights when they changed (fetched by Ray before the block starts, so stepping
  never waits on the learner);
- a finished sample request is one :func:`rl_coordconv.agents.apex.learner_step`; its new priorities go back
  to the shard without waiting, and another request replaces it (``prefetch`` in flight per
  shard, so the learner does not wait on the network). On CUDA (``model.prefetching``) the batch
  goes to the GPU from pinned memory without waiting, and a step's priorities and stats come back
  in one copy that is read after the next step is launched, or when the loop would otherwise
  wait: the driver hands on blocks and stages the next batch while the GPU trains;
- every ``weights_interval`` learner steps the online network is put in Ray's object store once.

Learner samples are kept at most ``replay_ratio`` per env transition, as in the single-machine
agent; with ``hold_replay_ratio`` (the default) rollout actors also wait while the learner is
more than a block per actor behind that ratio, so the ratio holds whatever the network's speed. A rollout actor that dies is
restarted by Ray (``max_actor_restarts``) and its blocks resume; a replay shard that dies stops
the run with :class:`ReplayShardDied`.
"""

from __future__ import annotations

import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

from rl_coordconv.agents.apex import (
    ApeX,
    ApeXConfig,
    HostCopy,
    epsilon_band,
    epsilon_ladder,
    learner_step,
    replay_kwargs,
    sync_target,
)
from rl_coordconv.agents.distributed import DistributedConfig, ReplayShardDied, RolloutActorsDied, require_ray
from rl_coordconv.agents.distributed.rollout import RolloutStats, RolloutWorker
from rl_coordconv.agents.distributed.shard import ReplayShard, ShardBatch
from rl_coordconv.agents.rate_limiter import SampleToInsertRatio
from rl_coordconv.agents.replay import PrioritizedReplayBufferSamples, to_device
from rl_coordconv.precision import precision_of

FRAMES_PER_STEP = 4  # Atari's frame skip: an agent step is 4 emulator frames
RETRY_SECONDS = 0.2  # before asking a restarting rollout actor again


@dataclass
class _Flight:
    """What an in-flight object ref is waiting for."""

    kind: str  # "rollout", "add" or "sample"
    index: int  # actor or shard
    block: Any = None  # a rollout's block ref, passed on to its shard
    life: int = 0  # a rollout's actor life: how many deaths of its actor came before it
    # A rollout sent while its actor was restarting may still fail as "unavailable" after a
    # later one succeeds: that is the same death, not a new one.
    sent_recovering: bool = False


@dataclass
class _Meter:
    """Counts since the last log line."""

    since: float = field(default_factory=time.perf_counter)
    transitions: int = 0
    learner_steps: int = 0
    actor_transitions: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    actor_seconds: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    weight_lags: list[int] = field(default_factory=list)
    bytes_sent: int = 0


class RayLearnerLoop:
    """Trains ``model`` (an :class:`~rl_coordconv.agents.apex.ApeX`, the learner) with rollout actors on Ray.

    :param model: the learner's model: its policy, optimizer, step counters, logger and ``save``
        are those of the single-machine agent; its own replay is not used.
    :param config: the agent's settings; ``config.n_envs`` env copies per rollout actor.
    :param env_factories: one picklable callable per rollout actor building its ``VecEnv``.
    :param on_game: called with ``(step, env_index, band, score, length)`` for each finished game.
    :param log_interval_seconds: how often :meth:`train` writes the throughput scalars.
    """

    def __init__(
        self,
        model: ApeX,
        arch: str,
        config: ApeXConfig,
        distributed: DistributedConfig,
        env_factories: list[Callable[[], VecEnv]],
        *,
        seed: int = 0,
        on_game: Callable[[int, int, str, float, int], None] | None = None,
        log_interval_seconds: float = 10.0,
    ) -> None:
        self.ray = require_ray()
        if not self.ray.is_initialized():
            raise RuntimeError("call ray.init() before building RayLearnerLoop")
        self.model, self.config, self.distributed = model, config, distributed
        self.on_game = on_game
        self.log_interval_seconds = log_interval_seconds
        n_actors, n_envs = len(env_factories), config.n_envs
        self.n_actors = n_actors
        ladder = epsilon_ladder(n_actors * n_envs)
        self.shard_of_actor = [actor % distributed.replay_shards for actor in range(n_actors)]
        shard_class = self.ray.remote(num_cpus=0, max_restarts=0)(ReplayShard)
        self.shards = []
        for shard in range(distributed.replay_shards):
            actors = [actor for actor in range(n_actors) if self.shard_of_actor[actor] == shard]
            capacity = config.buffer_size * len(actors) // n_actors
            self.shards.append(
                shard_class.remote(
                    actors, n_envs, capacity, model.observation_space, model.action_space, replay_kwargs(config), seed + shard
                )
            )
        worker_class = self.ray.remote(num_cpus=1, max_restarts=distributed.max_actor_restarts, max_task_retries=0)(
            RolloutWorker
        )
        self.actors = [
            worker_class.remote(
                actor,
                factory,
                arch,
                ladder[actor * n_envs : (actor + 1) * n_envs],
                actor * n_envs,
                seed * 1000 + actor,
                precision=precision_of(model.policy),
            )
            for actor, factory in enumerate(env_factories)
        ]
        self.alive = set(range(n_actors))
        self.restarts = 0
        self._lives = [0] * n_actors  # deaths seen per actor
        self._recovering: set[int] = set()  # actors dead since their last block: Ray restarts them
        self._last_failure = ""
        self._sent_version: dict[int, int | None] = {actor: None for actor in range(n_actors)}
        self._pending: dict[Any, _Flight] = {}
        self._samples_requested = model.learner_steps  # samples so far, for the replay ratio
        self.limiter = SampleToInsertRatio(config.replay_ratio, config.batch_size, config.learning_starts)
        self._shard_turn = 0
        self._shard_sizes = [0] * len(self.shards)
        self._waiting: set[int] = set()  # actors held back until the learner catches up
        self._unreported: tuple[int, np.ndarray, float, HostCopy] | None = None  # see _report_step
        self._publish_weights()
        self._meter = _Meter()

    # ---------------------------------------------------------------------------------- the loop

    def train(self, until: int, progress_bar: bool = False) -> None:
        """Play and learn until ``until`` env transitions in all (``model.num_timesteps``)."""
        model = self.model
        bar = tqdm(total=until, initial=model.num_timesteps, unit="step", disable=not progress_bar, dynamic_ncols=True)
        self._waiting.clear()
        try:
            for actor in sorted(self.alive):
                for _ in range(2 - self._rollouts_in_flight(actor)):  # one playing, one queued
                    self._submit_rollout(actor, until)
            while model.num_timesteps < until or self._rollouts_in_flight() > 0:
                if not self.alive:
                    raise RolloutActorsDied(
                        f"every rollout actor died beyond its {self.distributed.max_actor_restarts} restarts; "
                        f"the last error: {self._last_failure}"
                    )
                self._request_samples()
                if not self._pending:
                    raise RuntimeError("the distributed loop has nothing in flight; this is a bug, please report it")
                if self._unreported is not None and not self.ray.wait(list(self._pending), timeout=0)[0]:
                    self._report_step()  # nothing ready: wait for the last step rather than idle
                ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=30.0)
                for ref in ready:
                    before = model.num_timesteps
                    self._handle(ref, self._pending.pop(ref), until)
                    bar.update(model.num_timesteps - before)
                if time.perf_counter() - self._meter.since >= self.log_interval_seconds:
                    self.log()
            self._report_step()
        finally:
            bar.close()

    def _rollouts_in_flight(self, actor: int | None = None) -> int:
        return sum(f.kind == "rollout" and (actor is None or f.index == actor) for f in self._pending.values())

    def _submitted_transitions(self) -> int:
        return self.model.num_timesteps + self._rollouts_in_flight() * self.distributed.block_steps * self.config.n_envs

    def _learning_allowed(self, transitions: int) -> float | None:
        """Learner steps the replay ratio allows after ``transitions``; ``None`` until the replay
        first holds ``learning_starts`` (also after a resume without the replay: refill it first)."""
        if not self.limiter.start(self.model.num_timesteps, sum(self._shard_sizes), self.model.learner_steps):
            return None
        return self.limiter.batches_allowed(transitions)

    def _learner_behind(self) -> bool:
        """Whether the learner owes more than one block per actor of ``replay_ratio``."""
        allowed = self._learning_allowed(self._submitted_transitions())
        if not self.distributed.hold_replay_ratio or allowed is None:
            return False
        slack = self.limiter.batches_for(self.n_actors * self.distributed.block_steps * self.config.n_envs)
        return allowed - self.model.learner_steps > slack

    def _submit_rollout(self, actor: int, until: int) -> None:
        if self._submitted_transitions() >= until:
            return
        if self._learner_behind():
            self._waiting.add(actor)
            return
        weights = None
        if self._sent_version[actor] != self._weights_version:
            weights, self._sent_version[actor] = self._weights_ref, self._weights_version
        block, stats = (
            self.actors[actor]
            .rollout.options(num_returns=2)
            .remote(self.distributed.block_steps, weights, self._weights_version)
        )
        self._pending[stats] = _Flight("rollout", actor, block, self._lives[actor], actor in self._recovering)

    def _request_samples(self) -> None:
        """Keep ``prefetch`` sample requests in flight per shard, within the replay ratio."""
        config = self.config
        allowed = self._learning_allowed(self.model.num_timesteps)
        if allowed is None:
            return
        in_flight = defaultdict(int)
        for flight in self._pending.values():
            if flight.kind == "sample":
                in_flight[flight.index] += 1
        for _ in range(len(self.shards)):
            shard = self._shard_turn
            self._shard_turn = (self._shard_turn + 1) % len(self.shards)
            while in_flight[shard] < self.distributed.prefetch and self._samples_requested < allowed:
                self._pending[self.shards[shard].sample.remote(config.batch_size)] = _Flight("sample", shard)
                self._samples_requested += 1
                in_flight[shard] += 1

    def _handle(self, ref: Any, flight: _Flight, until: int) -> None:
        exceptions = self.ray.exceptions
        if flight.kind == "rollout":
            try:
                stats: RolloutStats = self.ray.get(ref)
            except exceptions.ActorUnavailableError as error:
                if flight.sent_recovering or flight.index in self._recovering:  # restarting: ask again shortly
                    time.sleep(RETRY_SECONDS)
                    self._submit_rollout(flight.index, until)
                else:
                    self._actor_failed(flight, error, until)
                return
            except exceptions.RayActorError as error:
                self._actor_failed(flight, error, until)
                return
            self._recovering.discard(stats.actor)
            self._on_rollout(stats, flight.block, until)
            return
        try:
            result = self.ray.get(ref)
        except exceptions.RayActorError as error:
            raise ReplayShardDied(
                f"replay shard {flight.index} died ({type(error).__name__}); its transitions are lost. "
                "The run stops here; --resume continues from the checkpoint"
            ) from error
        if flight.kind == "add":
            self._shard_sizes[flight.index] = result
        elif result is None:  # the shard is still filling: ask again later
            self._samples_requested -= 1
        else:
            self._learn(flight.index, result, until)

    def _on_rollout(self, stats: RolloutStats, block: Any, until: int) -> None:
        shard = self.shard_of_actor[stats.actor]
        self._pending[self.shards[shard].add_block.remote(stats.actor, block)] = _Flight("add", shard)
        self.model.num_timesteps += stats.transitions
        meter = self._meter
        meter.transitions += stats.transitions
        meter.actor_transitions[stats.actor] += stats.transitions
        meter.actor_seconds[stats.actor] += stats.seconds
        meter.weight_lags.append(self.model.learner_steps - max(stats.weights_version, 0))
        meter.bytes_sent += stats.block_bytes
        if self.on_game is not None:
            n_envs = self.n_actors * self.config.n_envs
            for game in stats.games:
                self.on_game(self.model.num_timesteps, game.env, epsilon_band(game.env, n_envs), game.score, game.length)
        self._submit_rollout(stats.actor, until)

    def _actor_failed(self, flight: _Flight, error: Exception, until: int) -> None:
        actor = flight.index
        self._last_failure = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        if flight.life == self._lives[actor]:  # a new death, not a second block of the same one
            self._lives[actor] += 1
            self._recovering.add(actor)
            self._sent_version[actor] = None  # a restarted actor starts from fresh weights
            if self._lives[actor] > self.distributed.max_actor_restarts:
                self.alive.discard(actor)
                print(f"rollout actor {actor} died with no restarts left; training goes on with {len(self.alive)} actors")
                return
            self.restarts += 1
            print(f"rollout actor {actor} died ({type(error).__name__}); Ray restarts it and training goes on")
        if actor in self.alive:
            self._submit_rollout(actor, until)

    def _learn(self, shard: int, batch: ShardBatch, until: int) -> None:
        model = self.model
        model.policy.set_training_mode(True)
        model._update_learning_rate(model.policy.optimizer)
        step = learner_step(model.policy, _to_torch(batch, model.device), self.config.max_grad_norm)
        # On CUDA the previous step's priorities are read now, behind the step just launched
        # rather than before it, so they reach their shard one learner step later: the shards
        # serve batches drawn with older priorities anyway (prefetch requests in flight).
        self._report_step()
        self._unreported = (shard, batch.indices, float(batch.weights.min()), HostCopy(step.td_errors, step.loss, step.mean_q))
        if not model.prefetching:
            self._report_step()
        model.learner_steps += 1
        model._n_updates += 1
        self._meter.learner_steps += 1
        if model.learner_steps % self.config.target_update_interval == 0:
            sync_target(model.policy)
        if model.learner_steps % self.distributed.weights_interval == 0:
            self._publish_weights()
        for actor in sorted(self._waiting):
            if self._learner_behind():
                break
            self._waiting.discard(actor)
            self._submit_rollout(actor, until)

    def _report_step(self) -> None:
        """Send the last learner step's new priorities to its shard and log its stats, once its
        device-to-host copy is done; nothing when every step is reported."""
        if self._unreported is None:
            return
        (shard, indices, weight_min, copy), self._unreported = self._unreported, None
        td_errors, loss, mean_q = copy.wait()
        self.shards[shard].update_priorities.remote(indices, td_errors)
        record_mean = self.model.logger.record_mean  # over the learner steps between two log lines
        record_mean("train/loss", float(loss[0]))
        record_mean("train/mean_q", float(mean_q[0]))
        record_mean("train/mean_abs_td", float(np.abs(td_errors).mean()))
        self.model.logger.record("train/is_weight_min", weight_min)

    def _publish_weights(self) -> None:
        weights = {name: value.detach().cpu() for name, value in self.model.q_net.state_dict().items()}
        self._weights_ref = self.ray.put(weights)
        self._weights_version = self.model.learner_steps

    # ------------------------------------------------------------------------- logs, checkpoints

    def log(self) -> dict[str, float]:
        """Write the throughput and replay scalars to the model's logger and dump them."""
        meter, model, now = self._meter, self.model, time.perf_counter()
        seconds = max(now - meter.since, 1e-9)
        record = model.logger.record
        values = {
            "distributed/frames_per_s": FRAMES_PER_STEP * meter.transitions / seconds,
            "distributed/learner_updates_per_s": meter.learner_steps / seconds,
            "distributed/actors_alive": len(self.alive),
            "distributed/actor_restarts": self.restarts,
            "distributed/bytes_per_transition_sent": meter.bytes_sent / max(meter.transitions, 1),
            "train/learner_steps": model.learner_steps,
        }
        for actor, transitions in meter.actor_transitions.items():
            values[f"distributed/actor{actor}_frames_per_s"] = (
                FRAMES_PER_STEP * transitions / max(meter.actor_seconds[actor], 1e-9)
            )
        if meter.weight_lags:
            values["distributed/weight_lag_mean"] = float(np.mean(meter.weight_lags))
            values["distributed/weight_lag_max"] = float(np.max(meter.weight_lags))
        for shard, size in enumerate(self._shard_sizes):
            values[f"replay/shard{shard}_size"] = size
        values["replay/size"] = sum(self._shard_sizes)
        for name, value in values.items():
            record(name, value)
        model.logger.dump(model.num_timesteps)
        self._meter = _Meter()
        return values

    def _from_shards(self, method: str, *args_of_shard: Callable[[int], Any]) -> list[Any]:
        """Call ``method`` on every shard (``args_of_shard(k)`` its arguments) and wait for all;
        a dead shard raises :class:`ReplayShardDied`."""
        self._report_step()  # the shards' state includes the last step's priorities
        calls = [getattr(shard, method).remote(*(arg(k) for arg in args_of_shard)) for k, shard in enumerate(self.shards)]
        results = []
        for index, call in enumerate(calls):
            try:
                results.append(self.ray.get(call))
            except self.ray.exceptions.RayActorError as error:
                raise ReplayShardDied(
                    f"replay shard {index} died ({type(error).__name__}) during {method}; its transitions are lost. "
                    "The run stops here; --resume continues from the checkpoint"
                ) from error
        return results

    def shard_stats(self) -> list[dict[str, Any]]:
        """Each shard's :meth:`ReplayShard.stats`."""
        return self._from_shards("stats")

    def save_replay(self, prefix: Path) -> list[str]:
        """Each shard writes its buffers to ``<prefix>.shard<k>.actor<id>.npz``."""
        return [path for paths in self._from_shards("save", lambda k: f"{prefix}.shard{k}") for path in paths]

    def load_replay(self, prefix: Path) -> int:
        """Load what :meth:`save_replay` wrote at ``prefix``; returns the buffers found."""
        found = sum(self._from_shards("load", lambda k: f"{prefix}.shard{k}"))
        self._shard_sizes = [stats["size"] for stats in self.shard_stats()]
        return found

    def close(self) -> None:
        """Stop every rollout actor and replay shard (the Ray session itself stays up)."""
        for handle in [*self.actors, *self.shards]:
            self.ray.kill(handle, no_restart=True)
        self._pending.clear()


def _to_torch(batch: ShardBatch, device: torch.device) -> PrioritizedReplayBufferSamples:
    def tensor(array: np.ndarray) -> torch.Tensor:
        # Ray hands out read-only views of its object store; the learner only reads them.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return to_device(array, device)

    return PrioritizedReplayBufferSamples(
        observations=tensor(batch.observations),
        actions=tensor(batch.actions),
        next_observations=tensor(batch.next_observations),
        dones=tensor(batch.dones),
        rewards=tensor(batch.rewards),
        discounts=tensor(batch.discounts),
        weights=tensor(batch.weights),
        indices=batch.indices,
    )
