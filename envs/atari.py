"""Vectorized Atari for Stable-Baselines3.

``make_atari_vec_env`` returns an SB3 ``VecEnv`` with observations ``(N, 4, 84, 84)`` uint8 from
one of two backends:

- ``"ale_vector"`` (default): :class:`AleVecEnv`, an adapter of ale-py's C++ ``AtariVectorEnv``
  (emulation and preprocessing in native threads) to SB3's VecEnv contract;
- ``"sb3"``: the reference, SB3's ``make_atari_env`` (``AtariWrapper``) + ``VecFrameStack(4)``.

Both follow the standard protocol for training: noop reset (up to 30), fire reset, frame skip 4
with a max over the last two frames, 84x84 grayscale, terminal on life loss, sign-clipped rewards.
The ``episode`` info (``r``, ``l``, ``t``) reports the full game, unclipped, as SB3's ``Monitor``.

Full-colour frames (videos): only the ``"sb3"`` backend has them, with ``render_mode="rgb_array"``:
``get_images()`` returns each env's ``(210, 160, 3)`` uint8 screen (so SB3's ``VecVideoRecorder``
works), and where an episode ends ``infos[i]["terminal_frame"]`` holds its last screen (the env
has already reset). ale-py's vector env produces the 84x84 grayscale stacks only.

Where the two backends differ, for the same game, seed and actions (tests/test_evaluate.py):

- noop starts: drawn by different RNGs, so the same seed starts the game at other frames;
- fire reset (games with FIRE, e.g. Breakout): one emulator frame of FIRE on ``"ale_vector"``;
  FIRE then UP for one agent step (4 frames) each on ``"sb3"``;
- after a life loss: ``"sb3"`` presses FIRE again for the agent (its ``FireResetEnv`` resets
  after every life-loss terminal), ``"ale_vector"`` does not: on Breakout the agent relaunches
  the ball itself;
- max-pool: over the last two grayscale frames on ``"ale_vector"``; over the last two RGB screens,
  then converted to grayscale, on ``"sb3"``: on Ms. Pac-Man, 0.4 % of a frame's pixels differ at
  the median, 1.3 % at most.

Otherwise the emulation is the same: with noop starts off and the max taken in grayscale, a whole
game of Ms. Pac-Man gives bit-identical observations, the same rewards and the same length.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rl_coordconv.games import get_game

Backend = Literal["ale_vector", "sb3"]
BACKENDS: tuple[str, ...] = ("ale_vector", "sb3")
FRAME_STACK = 4
MAX_EPISODE_FRAMES = 108_000  # 30 minutes of play at 60 Hz, the usual cap
NO_FRAMES = (
    "ale-py's vector env ('ale_vector' backend) has no full-colour screens, only the 84x84 grayscale "
    "stacks; for frames or videos build the env with backend='sb3', render_mode='rgb_array'"
)


class AleVecEnv(VecEnv):
    """SB3 ``VecEnv`` over ale-py's ``AtariVectorEnv``.

    The C++ env runs with raw rewards, reports every life loss as ``terminated`` while the game
    goes on (``life_loss_info``), and resets a finished game in its worker threads within the same
    step (``SameStep`` autoreset). This adapter then:

    - returns sign-clipped rewards (``clip_rewards``) while summing the raw ones into the
      full-game score reported in ``infos[i]["episode"]`` at game over;
    - reports a life loss as ``done`` (``terminal_on_life_loss``); the game goes on, so the next
      observation is the true one and no transition is wasted on a reset;
    - at game over or time limit returns the first observation of the new game, with the old
      game's last one in ``infos[i]["terminal_observation"]`` (SB3's same-step autoreset) and
      ``infos[i]["TimeLimit.truncated"]``.

    Observations: ``(N, 4, 84, 84)`` uint8, the last 4 frames, oldest first. ``episode["l"]``
    counts agent steps (SB3's ``Monitor`` under ``AtariWrapper`` counts emulator frames).
    """

    def __init__(
        self,
        game: str,
        n_envs: int,
        seed: int | None = None,
        *,
        terminal_on_life_loss: bool = True,
        clip_rewards: bool = True,
        noop_max: int = 30,
        frame_skip: int = 4,
        max_episode_frames: int = MAX_EPISODE_FRAMES,
        repeat_action_probability: float = 0.0,
        num_threads: int = 0,
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.game = get_game(game)
        self.terminal_on_life_loss = terminal_on_life_loss
        self.clip_rewards = clip_rewards
        self.render_mode = None
        self.ale = AtariVectorEnv(
            self.game.rom,
            n_envs,
            # ale-py's default counts every core of the machine, not the cores this process may use:
            # a run pinned to its own cores by the sweep would oversubscribe them.
            num_threads=num_threads or min(n_envs, len(os.sched_getaffinity(0))),
            max_num_frames_per_episode=max_episode_frames,
            repeat_action_probability=repeat_action_probability,
            stack_num=FRAME_STACK,
            frameskip=frame_skip,
            noop_max=noop_max,
            episodic_life=False,
            life_loss_info=terminal_on_life_loss,
            reward_clipping=False,
            use_fire_reset=True,
            autoreset_mode="SameStep",
        )
        super().__init__(n_envs, self.ale.single_observation_space, self.ale.single_action_space)
        self._episode_scores = np.zeros(n_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(n_envs, dtype=np.int64)
        self._lives = np.zeros(n_envs, dtype=np.int64)
        self._episode_frames = np.zeros(n_envs, dtype=np.int64)
        self._start_time = time.time()
        self.seed(seed)

    def reset(self) -> VecEnvObs:
        seeds = None if self._seeds[0] is None else np.asarray(self._seeds, dtype=np.int64)
        obs, ale_info = self.ale.reset(seed=seeds)
        self._reset_seeds()
        self._episode_scores[:] = 0.0
        self._episode_lengths[:] = 0
        self._lives[:] = ale_info["lives"]
        self._episode_frames[:] = ale_info["episode_frame_number"]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.ale.send(np.asarray(actions, dtype=np.int32).reshape(self.num_envs))

    def step_wait(self) -> VecEnvStepReturn:
        obs, raw_rewards, terminated, truncated, ale_info = self.ale.recv()
        lives, episode_frames = ale_info["lives"], ale_info["episode_frame_number"]
        self._episode_scores += raw_rewards
        self._episode_lengths += 1
        dones = terminated | truncated
        # A life loss leaves the game running: fewer lives, later frame. Anything else that ends
        # a step was a game over and the env is already showing a new game.
        life_lost = terminated & (lives < self._lives) & (episode_frames > self._episode_frames)
        game_over = dones & ~life_lost
        self._lives[:] = lives
        self._episode_frames[:] = episode_frames
        rewards = np.sign(raw_rewards) if self.clip_rewards else raw_rewards
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = ale_info["final_obs"][i] if game_over[i] else obs[i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if game_over.any():
            elapsed = round(time.time() - self._start_time, 6)
            for i in np.flatnonzero(game_over):
                infos[i]["episode"] = {"r": float(self._episode_scores[i]), "l": int(self._episode_lengths[i]), "t": elapsed}
            self._episode_scores[game_over] = 0.0
            self._episode_lengths[game_over] = 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.ale.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"AleVecEnv sub-environments are native; cannot set {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"AleVecEnv sub-environments are native; cannot call {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # The episode statistics are Monitor's: SB3's evaluate_policy then counts whole games.
        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError(NO_FRAMES)

    def render(self, mode: str | None = None) -> np.ndarray | None:
        raise NotImplementedError(NO_FRAMES)


def make_atari_vec_env(
    game: str,
    n_envs: int,
    seed: int | None = None,
    backend: Backend = "ale_vector",
    *,
    terminal_on_life_loss: bool = True,
    clip_rewards: bool = True,
    subprocess: bool = False,
    render_mode: str | None = None,
    num_threads: int = 0,
) -> VecEnv:
    """An SB3 ``VecEnv`` of ``n_envs`` copies of ``game`` (a suite name such as ``"MsPacman"``).

    :param seed: seeds env ``i`` with ``seed + i`` at the first reset.
    :param backend: ``"ale_vector"`` (native threads) or ``"sb3"`` (SB3 reference wrappers).
    :param terminal_on_life_loss: ``False`` for evaluation over full games.
    :param clip_rewards: ``False`` to learn from raw game points.
    :param subprocess: ``"sb3"`` backend only: ``SubprocVecEnv`` instead of ``DummyVecEnv``.
    :param render_mode: ``"sb3"`` backend only: ``"rgb_array"`` for the ``(210, 160, 3)`` screens
        through ``get_images()``/``render()`` and ``infos[i]["terminal_frame"]`` where an episode ends.
    :param num_threads: ``"ale_vector"`` backend: emulator threads, 0 for one per env up to one per
        core this process may use (the ``"sb3"`` backend steps its envs in the calling thread or
        one process each).
    :return: observations ``(n_envs, 4, 84, 84)`` uint8, ``Discrete`` actions (the minimal set).
    """
    get_game(game)
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0: one per env, at most one per core), got {num_threads}")
    if backend == "ale_vector":
        if subprocess:
            raise ValueError("subprocess=True applies to the 'sb3' backend only")
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: {NO_FRAMES}")
        return AleVecEnv(
            game, n_envs, seed, terminal_on_life_loss=terminal_on_life_loss, clip_rewards=clip_rewards, num_threads=num_threads
        )
    if backend == "sb3":
        return _make_sb3_reference(game, n_envs, seed, terminal_on_life_loss, clip_rewards, subprocess, render_mode)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def _make_registered_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` after registering ale-py's ids; a module-level function so that
    ``SubprocVecEnv`` workers, which start fresh interpreters, can build it."""
    import ale_py

    gym.register_envs(ale_py)
    return gym.make(env_id, **kwargs)


class TerminalFrame(gym.Wrapper):
    """Puts the last screen of an episode (a game, or a life with life-loss terminals) in
    ``info["terminal_frame"]`` (``(210, 160, 3)`` uint8), read before the VecEnv's autoreset
    replaces it. Needs ``render_mode="rgb_array"``."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["terminal_frame"] = self.env.render()
        return obs, reward, terminated, truncated, info


def _atari_wrapper_with_terminal_frame(env: gym.Env, **kwargs: Any) -> gym.Env:
    """SB3's ``AtariWrapper``, then :class:`TerminalFrame` (module level: ``SubprocVecEnv`` pickles it)."""
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    return TerminalFrame(AtariWrapper(env, **kwargs))


def _make_sb3_reference(
    game: str,
    n_envs: int,
    seed: int | None,
    terminal_on_life_loss: bool,
    clip_rewards: bool,
    subprocess: bool,
    render_mode: str | None = None,
) -> VecEnv:
    """SB3's ``make_atari_env`` (``Monitor`` -> ``AtariWrapper``) + ``VecFrameStack(4)``; with
    ``render_mode="rgb_array"``, :class:`TerminalFrame` on top of ``AtariWrapper``."""
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecTransposeImage

    env = make_vec_env(
        functools.partial(_make_registered_env, get_game(game).sb3_env_id),
        n_envs=n_envs,
        seed=seed,
        vec_env_cls=SubprocVecEnv if subprocess else DummyVecEnv,
        wrapper_class=_atari_wrapper_with_terminal_frame if render_mode == "rgb_array" else AtariWrapper,
        wrapper_kwargs={"terminal_on_life_loss": terminal_on_life_loss, "clip_reward": clip_rewards},
        env_kwargs=None if render_mode is None else {"render_mode": render_mode},
    )
    return VecTransposeImage(VecFrameStack(env, n_stack=FRAME_STACK))
