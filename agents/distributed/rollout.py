"""A rollout actor: one vectorized env, its slice of the epsilon ladder, a CPU copy of the network.

Plain Python, so that it runs in-process in tests and as a Ray actor in
:mod:`rl_coordconv.agents.distributed.learner`. Acting is :func:`rl_coordconv.agents.apex.act`, the single-machine agent's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv

from rl_coordconv.agents.allocator import keep_freed_memory
from rl_coordconv.agents.apex import DuelingCnnPolicy, EpsilonGreedy, act
from rl_coordconv.agents.distributed.blocks import StepBlock, StepBlockBuilder
from rl_coordconv.extractors import policy_kwargs_for
from rl_coordconv.precision import use_precision


class FinishedGame(NamedTuple):
    env: int  # index of the env copy over all actors (its place on the epsilon ladder)
    score: float  # info["episode"]["r"]: the full game's raw score
    length: int  # agent steps


class RolloutStats(NamedTuple):
    actor: int
    transitions: int  # steps x env copies in the block
    seconds: float  # wall time spent stepping the block
    weights_version: int  # learner step of the weights that acted
    games: list[FinishedGame]
    block_bytes: int


class RolloutWorker:
    """Steps ``make_env()`` with epsilon-greedy actions from its copy of the Q-network.

    :param make_env: builds this actor's ``VecEnv`` (called once, in the actor's process).
    :param arch: the ``ARCHS`` name of the network.
    :param epsilons: ``(N,)`` this actor's slice of the epsilon ladder over all actors' envs.
    :param first_env: global index of this actor's first env (for the ladder's score bands).
    :param precision: the network's compute precision (:mod:`rl_coordconv.precision`), the learner's.
    """

    def __init__(
        self,
        actor: int,
        make_env: Callable[[], VecEnv],
        arch: str,
        epsilons: np.ndarray,
        first_env: int,
        seed: int | None = None,
        precision: str = "fp32",
    ) -> None:
        torch.set_num_threads(1)  # one core per actor: actors are scaled by adding actors
        keep_freed_memory()
        self.actor = actor
        self.env = make_env()
        if self.env.num_envs != len(epsilons):
            raise ValueError(f"actor {actor}: the env has {self.env.num_envs} copies but got {len(epsilons)} epsilons")
        self.first_env = first_env
        self.policy = DuelingCnnPolicy(
            self.env.observation_space, self.env.action_space, lambda _: 0.0, **policy_kwargs_for(arch)
        )
        use_precision(self.policy, precision)
        self.policy.set_training_mode(False)
        self.acting = EpsilonGreedy(epsilons, int(self.env.action_space.n), seed)
        self.weights_version = -1
        self.observations = self.env.reset()
        self.builder = StepBlockBuilder(self.observations)

    def set_weights(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Load the learner's online network (``q_net.state_dict()``) from learner step ``version``."""
        self.policy.q_net.load_state_dict(weights)
        self.weights_version = version

    def network_weights(self) -> tuple[int, dict[str, torch.Tensor]]:
        """The learner step of the weights acting now, and the acting network's ``state_dict``."""
        return self.weights_version, self.policy.q_net.state_dict()

    def rollout(
        self, steps: int, weights: dict[str, torch.Tensor] | None = None, version: int = -1
    ) -> tuple[StepBlock, RolloutStats]:
        """Play ``steps`` steps of every env copy (after loading ``weights`` when given)."""
        if weights is not None and version != self.weights_version:
            self.set_weights(weights, version)
        start = time.perf_counter()
        games = []
        for _ in range(steps):
            observations = torch.as_tensor(self.observations)
            step = act(self.policy.q_net, observations, self.acting)
            next_observations, rewards, dones, infos = self.env.step(step.actions)
            self.builder.add(step.actions, step.q_taken, step.q_max, next_observations, rewards, dones, infos)
            for env, info in enumerate(infos):
                if "episode" in info:
                    games.append(FinishedGame(self.first_env + env, float(info["episode"]["r"]), int(info["episode"]["l"])))
            self.observations = next_observations
        block = self.builder.build(self.observations)
        seconds = time.perf_counter() - start
        return block, RolloutStats(self.actor, block.transitions, seconds, self.weights_version, games, block.nbytes)

    def close(self) -> None:
        self.env.close()
