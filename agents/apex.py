"""Ape-X-style DQN on one machine (Horgan et al., 2018, "Distributed Prioritized Experience Replay").

The N copies of a vectorized env play Ape-X's actors, copy ``i`` with its own constant epsilon
``0.4 ** (1 + 7 * i / (N - 1))``; one learner trains a dueling network on large prioritized
batches with double-Q n-step targets. Three roles with narrow interfaces, so that a distributed
version only changes where they run:

- acting: :func:`epsilon_ladder`, :class:`EpsilonGreedy` (greedy actions in, actions out); the
  acting network's Q-values go to the replay, which turns them into Ape-X's actor-side initial
  priorities without another forward pass;
- replay: :class:`~rl_coordconv.agents.replay.PrioritizedReplayBuffer` (add / sample / update priorities);
- learning: :func:`learner_step` (loss, optimizer step, new priorities) and :func:`sync_target`.

:class:`ApeX` wires them into SB3's ``DQN`` learn loop, so callbacks, logging, ``save``/``load``
and ``predict`` work as for any SB3 algorithm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy, QNetwork

from rl_coordconv.agents.config import AT_LEAST_ONE, DISCOUNT, POSITIVE, PROBABILITY, Range, check_env_copies, check_ranges
from rl_coordconv.agents.rate_limiter import SampleToInsertRatio
from rl_coordconv.agents.replay import INITIAL_PRIORITIES, PrioritizedReplayBuffer, PrioritizedReplayBufferSamples
from rl_coordconv.extractors import policy_kwargs_for

EPSILON_BANDS = ("exploratory", "middle", "greedy")


@dataclass
class ApeXConfig:
    """Ape-X's Atari settings (Horgan et al., 2018), scaled to one machine. SB3's names where SB3 has one."""

    n_envs: int = 32  # env copies = actors, each with its own epsilon
    buffer_size: int = 1_000_000  # transitions over all envs (Ape-X: 2M)
    learning_starts: int = 50_000  # transitions in replay before the learner starts
    batch_size: int = 512
    replay_ratio: float = 1.0  # learner samples per env transition: one batch of 512 per 512 new
    target_update_interval: int = 2500  # learner steps between target network copies
    gamma: float = 0.99
    return_horizon: int = 3  # n of the n-step return (the replay's n_steps)
    alpha: float = 0.6  # priority exponent
    beta: float = 0.4  # importance-sampling exponent
    priority_eps: float = 1e-6
    initial_priority: str = "actor"  # "actor": TD errors from the acting Q-values; "max": max so far
    learning_rate: float = 0.00025 / 4
    rmsprop_alpha: float = 0.95  # centered RMSProp decay
    rmsprop_eps: float = 1.5e-7
    max_grad_norm: float = 40.0
    eval_epsilon: float = 0.001
    replay_checkpoints: bool = True  # save the replay with checkpoints (7 KB per transition on disk)

    RANGES: ClassVar[dict[str, Range]] = {
        "n_envs": AT_LEAST_ONE,
        "buffer_size": AT_LEAST_ONE,
        "learning_starts": AT_LEAST_ONE,
        "batch_size": AT_LEAST_ONE,
        "replay_ratio": POSITIVE,
        "target_update_interval": AT_LEAST_ONE,
        "gamma": DISCOUNT,
        "return_horizon": AT_LEAST_ONE,
        "alpha": PROBABILITY,
        "beta": PROBABILITY,
        "priority_eps": POSITIVE,
        "learning_rate": POSITIVE,
        "rmsprop_alpha": Range(0, 1, high_open=True),
        "rmsprop_eps": POSITIVE,
        "max_grad_norm": POSITIVE,
        "eval_epsilon": PROBABILITY,
    }

    # Old keys still accepted by --set and read from old config.json files, with their new names.
    RENAMED: ClassVar[dict[str, str]] = {"n_steps": "return_horizon"}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        check_ranges(self, self.RANGES, "apex")
        if not self.batch_size <= self.learning_starts <= self.buffer_size // 2:
            raise ValueError(
                f"apex.learning_starts must lie between apex.batch_size ({self.batch_size}) and half of "
                f"apex.buffer_size ({self.buffer_size // 2}), got {self.learning_starts}"
            )
        if self.initial_priority not in INITIAL_PRIORITIES:
            raise ValueError(f"apex.initial_priority must be one of {INITIAL_PRIORITIES}, got {self.initial_priority!r}")


# ------------------------------------------------------------------------------------------ acting


def epsilon_ladder(n: int, base: float = 0.4, exponent: float = 7.0) -> np.ndarray:
    """Ape-X's constant per-actor epsilons ``base ** (1 + exponent * i / (n - 1))``, ``i = 0..n-1``:
    from 0.4 (actor 0, exploratory) down to 0.4 ** 8 = 0.00066 (greedy). One actor gets ``base``."""
    if n < 1:
        raise ValueError(f"the epsilon ladder needs at least one actor, got {n}")
    if n == 1:
        return np.array([base])
    return base ** (1.0 + exponent * np.arange(n) / (n - 1))


def epsilon_band(index: int, n: int) -> str:
    """Which third of the ladder env ``index`` of ``n`` belongs to: exploratory, middle or greedy."""
    return EPSILON_BANDS[3 * index // n]


class EpsilonGreedy:
    """Acts for N env copies at once, copy ``i`` exploring with probability ``epsilons[i]``.

    :param epsilons: ``(N,)`` probabilities of a uniformly random action.
    :param n_actions: size of the ``Discrete`` action space.
    """

    def __init__(self, epsilons: np.ndarray, n_actions: int, seed: int | None = None) -> None:
        self.epsilons = np.asarray(epsilons, dtype=np.float64)
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def act(self, greedy_actions: np.ndarray) -> np.ndarray:
        """``(N,)`` greedy actions -> ``(N,)`` actions, each replaced by a random one with its env's
        epsilon."""
        explore = self.rng.random(len(self.epsilons)) < self.epsilons
        random_actions = self.rng.integers(self.n_actions, size=len(self.epsilons))
        return np.where(explore, random_actions, greedy_actions)


class ActingStep(NamedTuple):
    actions: np.ndarray  # (N,) int64
    q_taken: np.ndarray  # (N,) float32: Q(s, a) of the actions taken
    q_max: np.ndarray  # (N,) float32: max_a Q(s, a)


def act(q_net: nn.Module, observations: torch.Tensor, acting: EpsilonGreedy) -> ActingStep:
    """One acting step for N env copies: epsilon-greedy actions from ``q_net`` on
    ``observations`` ``(N, C, H, W)``, with the Q-values the replay turns into Ape-X's actor-side
    initial priorities."""
    with torch.no_grad():
        q_values = q_net(observations).cpu().numpy()  # (N, A): the step's one device-to-host copy
    actions = acting.act(q_values.argmax(axis=1))
    return ActingStep(actions, q_values[np.arange(len(actions)), actions], q_values.max(axis=1))


# ------------------------------------------------------------------------------------ the network


def dueling_q_values(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """``Q = V + A - mean_a A`` (Wang et al., 2016): ``(B, 1)`` and ``(B, A)`` -> ``(B, A)``."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


class DuelingQNetwork(QNetwork):
    """SB3's ``QNetwork`` with a dueling head on any features extractor: ``q_net`` (SB3's head)
    is the advantage stream ``(B, A)``, ``value_net`` the value stream ``(B, 1)``, each an MLP over
    the features with ``net_arch`` hidden layers (none with ``ARCHS``: linear on the 512 features)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.value_net = nn.Sequential(*create_mlp(self.features_dim, 1, self.net_arch, self.activation_fn))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.extract_features(obs, self.features_extractor)
        return dueling_q_values(self.value_net(features), self.q_net(features))

    def extract_features(self, obs: torch.Tensor, features_extractor: nn.Module) -> torch.Tensor:
        # SB3's obs.float() / 255 allocates two batch-sized float tensors; one copy into a
        # channels-last float tensor, scaled in place, gives the same values. In that layout
        # oneDNN runs the backward pass of the Nature CNN's first layer (8x8, stride 4, over 4
        # channels) about 4x faster on CPU: a learner step at batch 512 takes a quarter less
        # time (docs/benchmarks.md). Later layers keep the layout; the flatten restores NCHW order.
        if self.normalize_images and obs.dtype == torch.uint8:
            scaled = torch.empty_like(obs, dtype=torch.float32, memory_format=torch.channels_last).copy_(obs)
            return features_extractor(scaled.div_(255.0))
        return super().extract_features(obs, features_extractor)


class DuelingCnnPolicy(CnnPolicy):
    """SB3's DQN ``CnnPolicy`` with :class:`DuelingQNetwork` as online and target network."""

    def make_q_net(self) -> DuelingQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingQNetwork(**net_args).to(self.device)


# ---------------------------------------------------------------------------------------- learning


def double_q_targets(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    dones: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
) -> torch.Tensor:
    """Double-Q n-step targets ``y = R + discount * (1 - done) * Q_target(s', argmax_a Q_online(s', a))``.

    :param rewards: ``(B, 1)`` n-step discounted returns; ``discounts``: ``(B, 1)`` ``gamma^k``;
        ``dones``: ``(B, 1)`` 1 where a true terminal ended the window.
    :param next_q_online: ``(B, A)`` the online network on ``s'``; ``next_q_target``: the target's.
    :return: ``(B, 1)``.
    """
    best_actions = next_q_online.argmax(dim=1, keepdim=True)
    return rewards + discounts * (1.0 - dones) * next_q_target.gather(1, best_actions)


def td_errors(policy: DQNPolicy, batch: PrioritizedReplayBufferSamples) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets - Q(s, a), Q(s, a))``, each ``(B, 1)``; gradients flow through ``Q(s, a)`` only."""
    with torch.no_grad():
        # One pass of the online network over s and s' would save a call, but s must keep its graph.
        next_q_online = policy.q_net(batch.next_observations)
        next_q_target = policy.q_net_target(batch.next_observations)
        targets = double_q_targets(batch.rewards, batch.discounts, batch.dones, next_q_online, next_q_target)
    q_taken = policy.q_net(batch.observations).gather(1, batch.actions.long())
    return targets - q_taken, q_taken


class LearnerStats(NamedTuple):
    td_errors: torch.Tensor  # (B, 1), detached: the new priorities
    loss: torch.Tensor  # scalar, detached
    mean_q: torch.Tensor  # scalar: mean Q(s, a) of the batch


def learner_step(policy: DQNPolicy, batch: PrioritizedReplayBufferSamples, max_grad_norm: float) -> LearnerStats:
    """One gradient step on the importance-weighted Huber loss of the double-Q n-step TD errors."""
    errors, q_taken = td_errors(policy, batch)
    loss = (batch.weights * F.smooth_l1_loss(errors, torch.zeros_like(errors), reduction="none")).mean()
    policy.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.q_net.parameters(), max_grad_norm)
    policy.optimizer.step()
    return LearnerStats(errors.detach(), loss.detach(), q_taken.detach().mean())


class HostCopy:
    """Tensors on their way to the host in ONE device-to-host copy, so that a learner step that
    reports several values waits on the device once. From CUDA the copy goes into page-locked
    memory with ``non_blocking=True`` and the host goes on until :meth:`wait`; on the CPU there is
    nothing to copy.

    :param tensors: any shapes, all on one device; they arrive flattened, as float32.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        self._sizes = [tensor.numel() for tensor in tensors]
        packed = torch.cat([tensor.detach().reshape(-1).float() for tensor in tensors])
        self._done: torch.cuda.Event | None = None
        self._host = packed
        if packed.is_cuda:
            self._host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            self._host.copy_(packed, non_blocking=True)
            self._done = torch.cuda.Event()
            self._done.record()

    def wait(self) -> list[np.ndarray]:
        """The tensors, in the order given, as flat float32 arrays (waits for the copy)."""
        if self._done is not None:
            self._done.synchronize()
        return np.split(self._host.numpy(), np.cumsum(self._sizes)[:-1])


def sync_target(policy: DQNPolicy) -> None:
    """Copy the online network into the target network."""
    policy.q_net_target.load_state_dict(policy.q_net.state_dict())


# ------------------------------------------------------------------------------- the SB3 algorithm


class ReplayInShards:
    """The ``replay_buffer`` of an :class:`ApeX` built with ``local_replay=False``: its transitions
    live in the Ray replay shards, so there is nothing here to add to, sample or save."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle probe for optional hooks
            raise AttributeError(name)
        raise RuntimeError(
            f"this ApeX learner has no replay of its own (local_replay=False; its transitions live in the Ray "
            f"replay shards): replay_buffer.{name} is not available"
        )


class ApeX(DQN):
    """Ape-X-style DQN: an epsilon ladder over the env copies, a dueling double-Q n-step learner
    on prioritized replay. A sibling of SB3's ``DQN``: same learn loop, callbacks, logger,
    ``save``/``load`` and ``predict`` (at ``eval_epsilon`` unless ``deterministic``).

    With ``local_replay=False`` the agent is a learner whose transitions live elsewhere (the Ray
    replay shards): it allocates no replay of its own.

    The target network is copied every ``target_update_interval`` LEARNER steps (SB3's DQN counts
    env steps). After every vectorized env step the learner takes the batches that
    ``replay_ratio`` allows (:class:`~rl_coordconv.agents.rate_limiter.SampleToInsertRatio`, the
    Ray learner loop's limiter too), counted from when the replay holds ``learning_starts`` valid
    transitions: a run resumed without its replay refills it before training.

    :param prefetch: draw the next batch while the device runs this one's step (Ape-X's learner
        prefetches too), so that the batch is drawn before this step's priorities are back.
        ``None``: on CUDA, where it overlaps the host's sampling and copy with the GPU's step; off
        on the CPU, where nothing would overlap and each batch sees every earlier priority.
    """

    policy_aliases = {"CnnPolicy": DuelingCnnPolicy}  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[DuelingCnnPolicy],
        env: VecEnv,
        learning_rate: float = ApeXConfig.learning_rate,
        buffer_size: int = ApeXConfig.buffer_size,
        learning_starts: int = ApeXConfig.learning_starts,
        batch_size: int = ApeXConfig.batch_size,
        gamma: float = ApeXConfig.gamma,
        replay_ratio: float = ApeXConfig.replay_ratio,
        target_update_interval: int = ApeXConfig.target_update_interval,
        max_grad_norm: float = ApeXConfig.max_grad_norm,
        eval_epsilon: float = ApeXConfig.eval_epsilon,
        local_replay: bool = True,
        prefetch: bool | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: torch.device | str = "auto",
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            gamma=gamma,
            train_freq=1,  # train() asks the replay ratio after every step
            gradient_steps=1,
            replay_buffer_class=PrioritizedReplayBuffer,
            replay_buffer_kwargs={"gamma": gamma, "seed": seed, **(replay_buffer_kwargs or {})},
            target_update_interval=target_update_interval,
            max_grad_norm=max_grad_norm,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device=device,
            verbose=verbose,
            _init_setup_model=False,
        )
        self.replay_ratio = replay_ratio
        self.eval_epsilon = eval_epsilon
        self.local_replay = local_replay
        self.prefetch = prefetch
        self.learner_steps = 0
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if not self.local_replay:
            self.replay_buffer = ReplayInShards()  # SB3 builds a replay only where there is none
        super()._setup_model()
        if getattr(self, "acting", None) is None:  # a loaded model keeps its actors' random state
            self.acting = EpsilonGreedy(epsilon_ladder(self.n_envs), int(self.action_space.n), self.seed)
        self._learner_clock = (time.perf_counter(), self.learner_steps)
        # Counts again from the first step the replay is ready: also after a load or resume.
        self.replay_limiter = SampleToInsertRatio(self.replay_ratio, self.batch_size, self.learning_starts)
        self._prefetched: PrioritizedReplayBufferSamples | None = None

    @property
    def prefetching(self) -> bool:
        """Whether the learner draws its next batch before this one's priorities are back."""
        return self.device.type == "cuda" if self.prefetch is None else bool(self.prefetch)

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        # Ape-X's actors follow their epsilon-greedy policy from the first step.
        observations, _ = self.policy.obs_to_tensor(self._last_obs)
        step = act(self.q_net, observations, self.acting)
        replay: PrioritizedReplayBuffer = self.replay_buffer  # type: ignore[assignment]
        if replay.initial_priority == "actor":
            replay.set_acting_values(step.q_taken, step.q_max)
        return step.actions, step.actions

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Greedy actions, each replaced by a random one with probability ``eval_epsilon`` unless
        ``deterministic``."""
        actions, state = self.policy.predict(observation, state, episode_start, deterministic=True)
        if not deterministic and self.eval_epsilon > 0:
            actions = np.asarray(actions)
            explore = np.random.random(actions.shape) < self.eval_epsilon
            actions = np.where(explore, np.random.randint(self.action_space.n, size=actions.shape), actions)
        return actions, state

    def _on_step(self) -> None:
        # No exploration schedule and no env-step target updates: see train().
        self._n_calls += 1

    def score_band(self, env_index: int) -> str:
        """The third of the epsilon ladder env ``env_index`` plays in, to log its scores apart."""
        return epsilon_band(env_index, self.n_envs)

    def train(self, gradient_steps: int, batch_size: int = 512) -> None:
        """Take the learner batches the replay ratio allows now (SB3's ``gradient_steps`` is unused)."""
        replay: PrioritizedReplayBuffer = self.replay_buffer  # type: ignore[assignment]
        if replay.initial_priority == "actor":
            replay.update_priorities(*replay.actor_td_errors())
        limiter = self.replay_limiter
        if not limiter.start(self.num_timesteps, replay.size(), self.learner_steps):
            return  # a resumed run whose replay was not saved refills it first
        batches = limiter.batches_due(self.num_timesteps, self.learner_steps)
        if batches == 0:
            return
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses, mean_qs, td_errors = [], [], []
        for _ in range(batches):
            batch = self._next_batch(replay, batch_size)
            step = learner_step(self.policy, batch, self.max_grad_norm)
            report = HostCopy(step.td_errors, step.loss, step.mean_q, batch.weights.min())
            if self.prefetching:
                # Drawn while the device runs the step above, so before its priorities are back:
                # the next batch sees the tree one learner step older. When this was the last
                # batch due, it waits for the next train() call; a transition of it that the env
                # steps in between evict loses its new priority (or hands it to the transition
                # that took its slot, if that one is already complete).
                self._prefetched = replay.sample(batch_size)
            errors, loss, mean_q, weight_min = report.wait()
            replay.update_priorities(batch.indices, errors)
            self.learner_steps += 1
            if self.learner_steps % self.target_update_interval == 0:
                sync_target(self.policy)
            losses.append(loss)
            mean_qs.append(mean_q)
            td_errors.append(errors)
        self._n_updates += batches
        record = self.logger.record
        record("train/loss", float(np.mean(losses)))
        record("train/mean_q", float(np.mean(mean_qs)))
        record("train/mean_abs_td", float(np.abs(np.concatenate(td_errors)).mean()))
        record("train/learner_steps", self.learner_steps)
        record("train/is_weight_min", float(weight_min[0]))

    def _next_batch(self, replay: PrioritizedReplayBuffer, batch_size: int) -> PrioritizedReplayBufferSamples:
        """The prefetched batch if there is one of ``batch_size``, else one drawn now."""
        batch, self._prefetched = self._prefetched, None
        if batch is None or batch.indices.size != batch_size:
            batch = replay.sample(batch_size)
        return batch

    def dump_logs(self) -> None:
        replay: PrioritizedReplayBuffer = self.replay_buffer  # type: ignore[assignment]
        priorities = replay.priorities()  # (p_i + eps)^alpha of every sampleable transition
        if priorities.size:
            self.logger.record("replay/priority_max", float(priorities.max()))
            self.logger.record("replay/priority_mean", float(priorities.mean()))
        self.logger.record("replay/size", replay.size())
        self.logger.record("replay/fill", replay.size() / self.buffer_size)
        start_time, start_steps = self._learner_clock
        now = time.perf_counter()
        self.logger.record("time/learner_updates_per_s", (self.learner_steps - start_steps) / max(now - start_time, 1e-9))
        self._learner_clock = (now, self.learner_steps)
        super().dump_logs()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_learner_clock", "replay_limiter", "_prefetched"]

    def save_replay_buffer(self, path) -> None:
        self.replay_buffer.save(path)  # type: ignore[union-attr]

    def load_replay_buffer(self, path, truncate_last_traj: bool = True) -> None:
        self.replay_buffer.load(path)  # type: ignore[union-attr]
        self._prefetched = None  # drawn from the replay replaced


def make_apex(env: VecEnv, arch: str, config: ApeXConfig, *, seed: int | None = None, device: str = "auto") -> ApeX:
    """An :class:`ApeX` on ``env`` whose CNN is ``ARCHS[arch]``, with Ape-X's centered RMSProp
    (TensorFlow's form, epsilon inside the square root, as the paper ran it)."""
    config.validate()
    check_env_copies(env, config, "apex")
    return ApeX("CnnPolicy", env, seed=seed, device=device, **apex_kwargs(arch, config))


def apex_kwargs(arch: str, config: ApeXConfig) -> dict[str, Any]:
    """:class:`ApeX`'s keyword arguments for ``config`` with the CNN ``ARCHS[arch]``."""
    policy_kwargs = policy_kwargs_for(arch)
    policy_kwargs.update(
        optimizer_class=RMSpropTFLike,
        optimizer_kwargs={"alpha": config.rmsprop_alpha, "eps": config.rmsprop_eps, "centered": True},
    )
    return dict(
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        gamma=config.gamma,
        replay_ratio=config.replay_ratio,
        target_update_interval=config.target_update_interval,
        max_grad_norm=config.max_grad_norm,
        eval_epsilon=config.eval_epsilon,
        replay_buffer_kwargs=replay_kwargs(config),
        policy_kwargs=policy_kwargs,
    )


def replay_kwargs(config: ApeXConfig) -> dict[str, Any]:
    """The :class:`PrioritizedReplayBuffer` keywords of ``config``: the local agent's replay and
    every Ray replay shard are built with these."""
    return {
        "n_steps": config.return_horizon,
        "gamma": config.gamma,
        "alpha": config.alpha,
        "beta": config.beta,
        "priority_eps": config.priority_eps,
        "initial_priority": config.initial_priority,
    }
