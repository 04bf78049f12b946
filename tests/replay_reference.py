"""A naive reference of the prioritized replay: env streams of unique frames, and the samples a
correct buffer holds, computed with plain loops over full lists of transitions."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from gymnasium import spaces

from rl_coordconv.agents.replay import PrioritizedReplayBuffer

EVENTS = ("step", "life_loss", "game_over", "time_limit", "cut")


class FakeStackingEnvs:
    """``n_envs`` streams of ``(C, H, W)`` frame stacks in which every frame is unique.

    Frame pixels 0-1 hold a per-env frame counter, pixel 2 the env, pixel 3 the game number and
    pixel 4 is 255, so no real frame is all zero. A new game starts from ``(0, ..., 0, f0)`` as
    ale-py's AtariVectorEnv and SB3's VecFrameStack do. Events per env and step:
    ``step``; ``life_loss`` (done, the stack goes on); ``game_over`` (done, new game);
    ``time_limit`` (done with ``TimeLimit.truncated``, new game); ``cut`` (not done, yet the next
    observation is a new game: the env was reset from outside).
    """

    def __init__(
        self,
        n_envs: int,
        stack: int,
        size: int = 6,
        probabilities=(0.82, 0.06, 0.05, 0.04, 0.03),
        seed: int = 0,
        events: Iterator[str] | None = None,
    ):
        self.n_envs, self.stack, self.size = n_envs, stack, size
        self.probabilities = probabilities
        self.events = events  # scripted events, env by env and step by step, instead of drawn ones
        self.rng = np.random.default_rng(seed)
        self.counters = [0] * n_envs
        self.games = [0] * n_envs
        self.stacks = np.stack([self._new_game_stack(e) for e in range(n_envs)])
        self.seen = {event: 0 for event in EVENTS}

    def _frame(self, env: int) -> np.ndarray:
        self.counters[env] += 1
        frame = np.zeros((self.size, self.size), dtype=np.uint8)
        frame.flat[:5] = [self.counters[env] & 255, self.counters[env] >> 8, env, self.games[env] & 255, 255]
        return frame

    def _new_game_stack(self, env: int) -> np.ndarray:
        self.games[env] += 1
        stack = np.zeros((self.stack, self.size, self.size), dtype=np.uint8)
        stack[-1] = self._frame(env)
        return stack

    def step(self):
        """One transition per env: ``obs, next_obs, actions, rewards, dones, infos``."""
        obs = self.stacks.copy()
        next_obs = np.stack([np.concatenate([obs[e, 1:], self._frame(e)[None]]) for e in range(self.n_envs)])
        actions = self.rng.integers(0, 5, size=(self.n_envs, 1))
        rewards = self.rng.normal(size=self.n_envs).astype(np.float32)
        dones = np.zeros(self.n_envs, dtype=bool)
        infos = [{} for _ in range(self.n_envs)]
        for e in range(self.n_envs):
            event = (
                next(self.events) if self.events is not None else EVENTS[self.rng.choice(len(EVENTS), p=self.probabilities)]
            )
            self.seen[event] += 1
            dones[e] = event in ("life_loss", "game_over", "time_limit")
            if event == "time_limit":
                infos[e]["TimeLimit.truncated"] = True
            self.stacks[e] = next_obs[e] if event in ("step", "life_loss") else self._new_game_stack(e)
        return obs, next_obs, actions, rewards, dones, infos


@dataclass
class Transition:
    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    terminal: bool
    truncated: bool
    cut: bool = False  # the next transition's obs does not continue this next_obs


@dataclass
class ReferenceStream:
    """One env's full transitions, and the frames a buffer storing each frame once would write."""

    stack: int
    transitions: list = field(default_factory=list)
    newest_obs_frame: list = field(default_factory=list)
    frames_written: int = 0

    def append(self, transition: Transition) -> None:
        previous = self.transitions[-1] if self.transitions else None
        continues = previous is not None and np.array_equal(transition.obs, previous.next_obs)
        if previous is not None and not continues:
            previous.cut = True
        if continues:
            self.newest_obs_frame.append(self.frames_written - 1)
            self.frames_written += 1
        else:
            self.newest_obs_frame.append(self.frames_written + self.stack - 1)
            self.frames_written += self.stack + 1
        self.transitions.append(transition)


def feed(buffer, streams, batch, handle_timeout_termination=True) -> None:
    obs, next_obs, actions, rewards, dones, infos = batch
    buffer.add(obs, next_obs, actions, rewards, dones, infos)
    for e, stream in enumerate(streams):
        truncated = bool(dones[e] and handle_timeout_termination and infos[e].get("TimeLimit.truncated", False))
        stream.append(
            Transition(
                obs[e].copy(),
                int(np.ravel(actions[e])[0]),
                float(rewards[e]),
                next_obs[e].copy(),
                bool(dones[e]) and not truncated,
                truncated,
            )
        )


def expected_samples(streams, n_steps, gamma, capacity_per_env, frame_capacity):
    """{global index: (env, t, obs, action, n-step return, next_obs, done, discount)} for every
    transition a correct buffer holds and may sample, computed with plain loops."""
    expected = {}
    n_envs = len(streams)
    for e, stream in enumerate(streams):
        transitions = stream.transitions
        added = len(transitions)
        for t in range(max(0, added - capacity_per_env), added):
            if stream.newest_obs_frame[t] - stream.stack + 1 < stream.frames_written - frame_capacity:
                continue  # a frame of its stack was overwritten
            ret, steps, last, complete = 0.0, 0, None, False
            for j in range(t, min(t + n_steps, added)):
                ret += gamma**steps * transitions[j].reward
                steps += 1
                last = transitions[j]
                if last.terminal or last.truncated or last.cut:
                    complete = True
                    break
            complete = complete or steps == n_steps
            if complete:
                first = transitions[t]
                expected[(t % capacity_per_env) * n_envs + e] = (
                    e,
                    t,
                    first.obs,
                    first.action,
                    ret,
                    last.next_obs,
                    float(last.terminal),
                    gamma**steps,
                )
    return expected


def check_against_reference(buffer, streams):
    """Every sampleable index of ``buffer`` is exactly the reference's, with the same content."""
    expected = expected_samples(streams, buffer.n_steps, buffer.gamma, buffer.buffer_size, buffer.frame_rings.capacity)
    valid = np.flatnonzero(buffer.tree.leaf_values() > 0)
    assert valid.tolist() == sorted(expected)
    assert buffer.size() == len(expected)
    if valid.size:
        batch = buffer._get_samples(valid)
        rows = [expected[index] for index in valid.tolist()]
        np.testing.assert_array_equal(batch.observations.numpy(), np.stack([row[2] for row in rows]))
        np.testing.assert_array_equal(batch.actions.numpy()[:, 0], [row[3] for row in rows])
        np.testing.assert_allclose(batch.rewards.numpy()[:, 0], [row[4] for row in rows], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(batch.next_observations.numpy(), np.stack([row[5] for row in rows]))
        np.testing.assert_array_equal(batch.dones.numpy()[:, 0], [row[6] for row in rows])
        np.testing.assert_allclose(batch.discounts.numpy()[:, 0], [row[7] for row in rows], rtol=1e-6)
    return expected


def make_buffer(obs_shape=(4, 6, 6), buffer_size=60, n_envs=3, **kwargs):
    kwargs.setdefault("seed", 0)
    return PrioritizedReplayBuffer(
        buffer_size, spaces.Box(0, 255, obs_shape, np.uint8), spaces.Discrete(5), "cpu", n_envs, **kwargs
    )
