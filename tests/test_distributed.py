"""Distributed Ape-X: frame-lean blocks, replay shards, and the learner loop on a local Ray."""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray
import torch
from helpers import GOAL_PIXEL, goal_pixel_success_rate, tiny_apex_config, written_out_learner_step
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_coordconv.agents.apex import ApeX, apex_kwargs, epsilon_ladder, learner_step, sync_target
from rl_coordconv.agents.distributed import INSTALL_HINT, DistributedConfig, ReplayShardDied, learner
from rl_coordconv.agents.distributed.blocks import StepBlockBuilder, add_block
from rl_coordconv.agents.distributed.learner import RayLearnerLoop
from rl_coordconv.agents.distributed.run import rollout_env_factories
from rl_coordconv.agents.distributed.shard import ReplayShard
from rl_coordconv.agents.experiment import ExperimentConfig
from rl_coordconv.agents.replay import PrioritizedReplayBuffer, PrioritizedReplayBufferSamples
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.envs.goal_pixel import GoalPixelEnv

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "rl_coordconv", "train"]


# ----------------------------------------------------------------------------- blocks and shards


def play(env, steps, rng, block_steps):
    """Random play: (direct SB3-style adds, blocks) of the same steps with made-up acting values."""
    n = env.num_envs
    observations = env.reset()
    builder, blocks, direct = StepBlockBuilder(observations), [], []
    for _ in range(steps):
        actions = rng.integers(env.action_space.n, size=n)
        q_taken, q_max = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
        next_observations, rewards, dones, infos = env.step(actions)
        true_next = next_observations.copy()
        for i in np.flatnonzero(dones):
            true_next[i] = infos[i]["terminal_observation"]
        direct.append(
            (observations.copy(), true_next, actions, rewards, dones, [dict(info) for info in infos], q_taken, q_max)
        )
        builder.add(actions, q_taken, q_max, next_observations, rewards, dones, infos)
        if len(builder) == block_steps:
            blocks.append(builder.build(next_observations))
        observations = next_observations
    return direct, blocks


def replay_for(env, capacity):
    return PrioritizedReplayBuffer(
        capacity, env.observation_space, env.action_space, device="cpu", n_envs=env.num_envs, initial_priority="actor", seed=0
    )


def assert_same_replay(expected, actual):
    actual_arrays = actual.state_arrays()
    for name, array in expected.state_arrays().items():
        np.testing.assert_array_equal(actual_arrays[name], array, err_msg=name)
    np.testing.assert_array_equal(actual.tree.nodes, expected.tree.nodes)
    assert actual.added == expected.added


@pytest.mark.parametrize("game", ["MsPacman", "GoalPixel"])
def test_blocks_give_the_replay_exactly_what_direct_adds_give(game):
    # Ms. Pac-Man: 4-frame stacks, life losses and a game over; GoalPixel: terminals and time limits.
    if game == "MsPacman":
        env, steps, capacity = make_atari_vec_env("MsPacman", 2, seed=3), 1024, 800
    else:
        env, steps, capacity = make_vec_env(GoalPixelEnv, n_envs=3, seed=0, env_kwargs=GOAL_PIXEL), 256, 300
    direct, blocks = play(env, steps, np.random.default_rng(0), block_steps=32)
    env.close()
    expected, actual = replay_for(env, capacity), replay_for(env, capacity)
    for t, (obs, next_obs, actions, rewards, dones, infos, q_taken, q_max) in enumerate(direct):
        expected.set_acting_values(q_taken, q_max)
        expected.add(obs, next_obs, actions, rewards, dones, infos)
        if (t + 1) % 32 == 0:
            expected.update_priorities(*expected.actor_td_errors())
    for block in blocks:
        add_block(actual, block)
    assert_same_replay(expected, actual)
    dones = np.stack([step[4] for step in direct])
    assert dones.any()
    if game == "MsPacman":
        assert any(block.resets for block in blocks), "no game over in the stream: the reset path went untested"
        assert dones.sum() > sum(len(block.resets) for block in blocks)  # life losses, which continue the game
    else:
        truncated = [info.get("TimeLimit.truncated", False) for step in direct for info in step[5]]
        assert any(truncated) and not all(truncated)


def test_a_block_carries_each_atari_frame_once():
    env = make_atari_vec_env("MsPacman", 4, seed=0)
    _, blocks = play(env, 64, np.random.default_rng(0), block_steps=64)
    env.close()
    per_transition = blocks[0].nbytes / blocks[0].transitions
    # One 84x84 frame (7,056 B) per transition, the block's first stacks spread over 64 steps,
    # and 22 B of action, reward, flags and Q-values: far from two stacks (56,448 B).
    assert 7056 + 22 <= per_transition <= 7056 + 22 + 4 * 84 * 84 / 64 + 1


def shard_with_priorities(priorities_by_actor, beta=0.4):
    env = make_vec_env(GoalPixelEnv, n_envs=2, seed=0, env_kwargs=GOAL_PIXEL)
    shard = ReplayShard(
        list(priorities_by_actor),
        2,
        2 * 400,
        env.observation_space,
        env.action_space,
        {"n_steps": 1, "beta": beta, "alpha": 1.0, "priority_eps": 1e-9, "initial_priority": "max"},
        seed=0,
    )
    assert sum(buffer.capacity for buffer in shard.buffers) == 2 * 400  # the shard's capacity, shared
    for actor, buffer in zip(shard.actors, shard.buffers):
        _, blocks = play(env, 40, np.random.default_rng(actor), block_steps=40)
        shard.add_block(actor, blocks[0])
        leaves = np.flatnonzero(buffer.tree.leaf_values() > 0)
        buffer.update_priorities(leaves, np.resize(priorities_by_actor[actor], leaves.size))
    env.close()
    return shard


@pytest.mark.parametrize("beta", [0.4, 1.0])
def test_a_shard_samples_its_actors_in_proportion_to_priority_with_global_weights(beta):
    shard = shard_with_priorities({3: [1.0], 7: [1.0, 3.0]}, beta)  # actor 7 holds three times actor 3's mass per pair
    priorities = {3: shard.buffers[0].tree.get, 7: shard.buffers[1].tree.get}
    total = shard.buffers[0].tree.total + shard.buffers[1].tree.total
    size = shard.size()
    counts = {}
    for _ in range(200):
        batch = shard.sample(64)
        owners, leaves = np.divmod(batch.indices, shard.stride)
        probabilities = np.array([priorities[shard.actors[o]](np.array([leaf]))[0] for o, leaf in zip(owners, leaves)]) / total
        expected_weights = (size * probabilities) ** -beta
        np.testing.assert_allclose(batch.weights[:, 0], expected_weights / expected_weights.max(), rtol=1e-5)
        for key in zip(owners, leaves):
            counts[key] = counts.get(key, 0) + 1
    draws = 200 * 64
    share_of_actor_7 = sum(c for (owner, _), c in counts.items() if owner == 1) / draws
    assert share_of_actor_7 == pytest.approx(shard.buffers[1].tree.total / total, abs=0.01)
    heavy = [c for (owner, leaf), c in counts.items() if owner == 1 and priorities[7](np.array([leaf]))[0] > 2]
    light = [c for (owner, leaf), c in counts.items() if owner == 1 and priorities[7](np.array([leaf]))[0] < 2]
    assert np.mean(heavy) / np.mean(light) == pytest.approx(3.0, rel=0.15)


def test_a_shard_routes_new_priorities_to_the_buffer_that_holds_them():
    shard = shard_with_priorities({0: [1.0], 1: [1.0]})
    batch = shard.sample(32)
    errors = np.arange(32, dtype=np.float64) + 2.0
    shard.update_priorities(batch.indices, errors)
    owners, leaves = np.divmod(batch.indices, shard.stride)
    last = {}
    for owner, leaf, error in zip(owners, leaves, errors):
        last[(owner, leaf)] = error
    for (owner, leaf), error in last.items():
        assert shard.buffers[owner].tree.get(np.array([leaf]))[0] == pytest.approx(error + 1e-9)
    assert shard.stats()["priority_updates"] == 32
    assert shard.sample(10_000) is None  # more than it holds: not yet


def test_a_one_actor_shard_samples_and_updates_its_one_buffer():
    shard = shard_with_priorities({7: [1.0, 2.0]})
    batch = shard.sample(16)
    assert batch.indices.min() >= 0 and batch.indices.max() < shard.stride  # buffer 0's indices, no offset
    shard.update_priorities(batch.indices, np.full(16, 3.0))
    np.testing.assert_allclose(shard.buffers[0].tree.get(batch.indices), 3.0 + 1e-9)  # alpha 1, eps 1e-9


def test_a_rollout_sent_while_its_actor_restarted_that_fails_as_unavailable_is_not_a_second_death(monkeypatch):
    # The race of a killed actor: a rollout queued during its restart fails as "unavailable" after
    # another rollout already succeeded (the actor left _recovering). It is retried, not counted.
    loop = RayLearnerLoop.__new__(RayLearnerLoop)
    error = ray.exceptions.ActorUnavailableError("connection lost while restarting", None)

    def get(ref):
        raise error

    loop.ray = type("FakeRay", (), {"exceptions": ray.exceptions, "get": staticmethod(get)})
    loop._recovering, loop._lives, loop.restarts, loop.alive = set(), [1], 1, {0}
    resubmitted, failed = [], []
    monkeypatch.setattr(loop, "_submit_rollout", lambda actor, until: resubmitted.append(actor), raising=False)
    monkeypatch.setattr(loop, "_actor_failed", lambda flight, error, until: failed.append(flight), raising=False)
    monkeypatch.setattr(learner.time, "sleep", lambda seconds: None)
    loop._handle("ref", learner._Flight("rollout", 0, None, life=1, sent_recovering=True), until=1000)
    assert (resubmitted, failed, loop.restarts) == ([0], [], 1)
    # The same failure of a rollout sent while the actor was well is a new death.
    loop._handle("ref", learner._Flight("rollout", 0, None, life=1, sent_recovering=False), until=1000)
    assert len(failed) == 1


def goal_pixel_learner() -> ApeX:
    env = make_vec_env(GoalPixelEnv, n_envs=1, seed=0, env_kwargs=GOAL_PIXEL)
    model = ApeX("CnnPolicy", env, seed=0, device="cpu", local_replay=False, **apex_kwargs("conv", tiny_apex_config()))
    model.set_logger(Logger(None, []))
    return model


@pytest.mark.parametrize("prefetch", [None, True])
def test_the_learner_loop_sends_each_batch_the_priorities_of_a_written_out_step(prefetch, monkeypatch):
    # Without Ray: the loop's learner part, with a shard handle that records the calls in the
    # order Ray would run them. None, the CPU's default: a step's priorities leave before the next
    # step; True, CUDA's: after the next step is launched, and before the shards are read.
    loop = RayLearnerLoop.__new__(RayLearnerLoop)
    loop.model, loop.config, loop.distributed = goal_pixel_learner(), tiny_apex_config(), DistributedConfig(actors=1)
    loop.model.prefetch = prefetch
    loop._meter, loop._waiting, loop._unreported = learner._Meter(), set(), None
    calls = []
    loop.shards = [
        SimpleNamespace(
            update_priorities=SimpleNamespace(remote=lambda indices, errors: calls.append(("priorities", indices, errors))),
            stats=SimpleNamespace(remote=lambda: calls.append(("stats",))),
        )
    ]
    loop.ray = SimpleNamespace(get=lambda ref: ref, exceptions=ray.exceptions)
    steps = []
    monkeypatch.setattr(learner, "learner_step", lambda *args: steps.append(len(steps)) or learner_step(*args))
    reference = goal_pixel_learner()
    shard = shard_with_priorities({0: [1.0, 2.0]})
    batches, expected = [shard.sample(32) for _ in range(3)], []
    for batch in batches:
        loop._learn(0, batch, until=10**6)
        samples = PrioritizedReplayBufferSamples(*(torch.as_tensor(array) for array in batch[:-1]), indices=batch.indices)
        expected.append(written_out_learner_step(reference.policy, samples, max_grad_norm=40.0))
        assert len(calls) == len(steps) - (1 if prefetch else 0)
    loop._from_shards("stats")
    assert [call[0] for call in calls] == ["priorities"] * 3 + ["stats"]
    for (_, indices, errors), batch, (expected_errors, _, _) in zip(calls, batches, expected):
        np.testing.assert_array_equal(indices, batch.indices)
        np.testing.assert_allclose(errors, expected_errors, rtol=1e-6)
    assert loop.model.logger.name_to_value["train/loss"] == pytest.approx(np.mean([loss for _, loss, _ in expected]), rel=1e-5)
    assert loop.model.logger.name_to_value["train/is_weight_min"] == pytest.approx(float(batches[-1].weights.min()))
    expected_weights = reference.q_net.state_dict()
    for name, value in loop.model.q_net.state_dict().items():
        torch.testing.assert_close(value, expected_weights[name])


def test_each_rollout_actor_steps_its_emulators_with_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [DistributedConfig(actors=n).emulator_threads() for n in (1, 3, 8, 16, 40)] == [16, 5, 2, 1, 1]
    assert DistributedConfig().emulator_threads() == 1  # the default: 15 actors, one core each
    assert DistributedConfig(actors=2).emulator_threads(cores=7) == 3
    with pytest.raises(ValueError, match="cores must be >= 1, got 0"):
        DistributedConfig(actors=2).emulator_threads(cores=0)
    from ale_py import vector_env

    threads = []
    real = vector_env.AtariVectorEnv
    monkeypatch.setattr(
        vector_env, "AtariVectorEnv", lambda *args, **kwargs: threads.append(kwargs["num_threads"]) or real(*args, **kwargs)
    )
    config = ExperimentConfig(agent="apex", device="cpu", distributed=DistributedConfig(enabled=True, actors=8))
    config.apex.n_envs = 4  # alone, an env of 4 copies would start 4 threads: 32 for 8 actors on 16 cores
    factories = rollout_env_factories(config)
    assert len(factories) == 8
    factories[0]().close()
    assert threads == [2]
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        make_atari_vec_env("MsPacman", 2, num_threads=-1)


# ------------------------------------------------------------------------------ on a local Ray


def ray_processes(driver_pid: int) -> set[int]:
    """Pids of the Ray processes a driver started: the GCS server and raylet of its session
    (``session_<date>_<time>_<micro>_<driver pid>``) and their children (the workers)."""
    session = re.compile(rf"session_[0-9_-]+_{driver_pid}\b")
    commands, parents = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().split(")")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    pids = {pid for pid, command in commands.items() if session.search(command)}
    while True:
        children = {pid for pid, parent in parents.items() if parent in pids} - pids
        if not children:
            return pids
        pids |= children


def wait_for_exit(pids: set[int], seconds: float = 20.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)}
        if not pids:
            break
        time.sleep(0.25)
    return pids


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert ray_processes(os.getpid())
    yield
    ray.shutdown()
    assert not wait_for_exit(ray_processes(os.getpid())), "Ray processes left after ray.shutdown()"


def goal_pixel_trainer(arch="conv", actors=2, **distributed):
    config = tiny_apex_config()
    env = make_vec_env(GoalPixelEnv, n_envs=1, seed=0, env_kwargs=GOAL_PIXEL)
    model = ApeX("CnnPolicy", env, seed=0, device="cpu", local_replay=False, **apex_kwargs(arch, config))
    model.set_logger(Logger(None, []))
    settings = {"enabled": True, "actors": actors, "block_steps": 16, "weights_interval": 20, **distributed}
    factories = [
        functools.partial(make_vec_env, GoalPixelEnv, n_envs=config.n_envs, seed=100 * actor, env_kwargs=GOAL_PIXEL)
        for actor in range(actors)
    ]
    return RayLearnerLoop(model, arch, config, DistributedConfig(**settings), factories, seed=0)


def test_two_rollout_actors_feed_the_replay_get_weights_and_the_learner_learns_goal_pixel(local_ray, monkeypatch):
    trainer = goal_pixel_trainer()
    published, syncs, replay_at_start = {}, [], []
    publish, limiter_start = trainer._publish_weights, trainer.limiter.start

    def recording_publish():
        publish()
        published[trainer._weights_version] = ray.get(trainer._weights_ref)

    def recording_start(inserted, replay_size, learner_batches):
        started = limiter_start(inserted, replay_size, learner_batches)
        if started and not replay_at_start:
            replay_at_start.append(replay_size)
        return started

    trainer._publish_weights, trainer.limiter.start = recording_publish, recording_start
    monkeypatch.setattr(
        learner, "sync_target", lambda policy: (syncs.append(trainer.model.learner_steps), sync_target(policy))
    )
    try:
        model = trainer.model
        before = goal_pixel_success_rate(model, deterministic=True)
        trainer.train(30_000)  # 2 actors x 4 envs; the single-machine agent learns it by 30k
        after = goal_pixel_success_rate(model, deterministic=True)
        (stats,) = trainer.shard_stats()
        assert min(stats["transitions_added"].values()) >= 10_000  # both actors' transitions reached replay
        assert sum(stats["transitions_added"].values()) == model.num_timesteps >= 30_000
        # Held at the replay ratio: 2 samples per transition, batches of 32, but for the warm-up
        # and a block per actor (the learner alone would fall far behind on 2 cores).
        assert model.learner_steps >= 0.95 * 2 * model.num_timesteps / 32
        assert stats["priority_updates"] == model.learner_steps * model.batch_size  # every batch came back
        config = trainer.config
        # The replay ratio starts counting as soon as the replay holds learning_starts: before
        # the next block (16 steps x 4 envs) lands, however slow the machine.
        assert config.learning_starts <= replay_at_start[0] < config.learning_starts + 16 * 4
        assert stats["size"] <= config.buffer_size
        assert syncs == list(range(100, model.learner_steps + 1, 100))  # every target_update_interval steps
        assert sorted(published) == list(range(20, model.learner_steps + 1, 20))  # every weights_interval steps
        ladder = epsilon_ladder(2 * 4)
        for actor, handle in enumerate(trainer.actors):
            epsilons, first_env = ray.get(
                handle.__ray_call__.remote(lambda worker: (worker.acting.epsilons, worker.first_env))
            )
            np.testing.assert_array_equal(epsilons, ladder[4 * actor : 4 * actor + 4])
            assert first_env == 4 * actor
        for actor in trainer.actors:
            version, weights = ray.get(actor.network_weights.remote())
            assert version > 0  # the learner's weights, not the actor's initial ones
            assert all(torch.equal(weights[name], value) for name, value in published[version].items())
        assert before < 0.65
        assert after >= 0.9, f"success {before:.2f} -> {after:.2f}"
    finally:
        trainer.close()


def test_two_replay_shards_each_get_their_actors_transitions_and_their_batches_priorities(local_ray):
    trainer = goal_pixel_trainer(replay_shards=2)
    batches_from = {0: 0, 1: 0}
    learn = trainer._learn

    def counting_learn(shard, batch, until):
        batches_from[shard] += 1
        learn(shard, batch, until)

    trainer._learn = counting_learn
    try:
        trainer.train(6_000)
        first, second = trainer.shard_stats()
        assert list(first["transitions_added"]) == [0] and list(second["transitions_added"]) == [1]
        assert first["transitions_added"][0] > 0 and second["transitions_added"][1] > 0
        assert min(batches_from.values()) > 0
        assert first["priority_updates"] == batches_from[0] * trainer.config.batch_size
        assert second["priority_updates"] == batches_from[1] * trainer.config.batch_size
    finally:
        trainer.close()


def test_a_shard_serving_k_of_n_actors_holds_k_n_of_the_replay(local_ray):
    trainer = goal_pixel_trainer(actors=4, replay_shards=2)  # apex.buffer_size 4,000
    try:
        capacities = [
            ray.get(shard.__ray_call__.remote(lambda shard: [buffer.capacity for buffer in shard.buffers]))
            for shard in trainer.shards
        ]
        assert capacities == [[1000, 1000], [1000, 1000]]  # two actors a shard, 2,000 transitions each
    finally:
        trainer.close()


def test_each_actors_games_are_logged_in_the_band_of_its_own_envs(local_ray):
    # 2 actors x 4 envs: one ladder over 8 envs, cut in thirds by rank (3 * env // 8).
    band_of_env = {
        0: "exploratory",
        1: "exploratory",
        2: "exploratory",
        3: "middle",  # actor 0
        4: "middle",
        5: "middle",
        6: "greedy",
        7: "greedy",
    }  # actor 1
    trainer = goal_pixel_trainer()
    games = []
    trainer.on_game = lambda step, env, band, score, length: games.append((env, band))
    try:
        trainer.train(3_000)
    finally:
        trainer.close()
    assert {env for env, _ in games} == set(band_of_env)  # every env of both actors finished games
    assert all(band == band_of_env[env] for env, band in games)


def test_a_killed_rollout_actor_is_restarted_and_training_goes_on(local_ray):
    trainer = goal_pixel_trainer(block_steps=64)
    try:
        trainer.train(3_000)
        killer = threading.Timer(0.5, lambda: ray.kill(trainer.actors[0], no_restart=False))
        killer.start()
        trainer.train(20_000)
        killer.join()
        assert trainer.restarts == 1  # one kill, one restart: the failed retries during it are not deaths
        assert trainer.alive == {0, 1}
        done_before = trainer.shard_stats()[0]["transitions_added"][0]
        trainer.train(24_000)
        assert trainer.shard_stats()[0]["transitions_added"][0] > done_before  # the restarted actor plays
    finally:
        trainer.close()


def test_a_dead_replay_shard_stops_training_with_a_clear_error(local_ray, tmp_path):
    trainer = goal_pixel_trainer()
    try:
        trainer.train(1_000)
        ray.kill(trainer.shards[0])
        with pytest.raises(ReplayShardDied, match="replay shard 0 died"):
            trainer.train(5_000)
        # The checkpoint's save of the shards names the dead shard too.
        with pytest.raises(ReplayShardDied, match=r"replay shard 0 died \(\w+\) during save"):
            trainer.save_replay(tmp_path / "replay")
    finally:
        trainer.close()


# ------------------------------------------------------------------------------- through train.py


def train(runs, *extra, timesteps="4k"):
    command = [
        *TRAIN,
        "--agent",
        "apex",
        "--game",
        "MsPacman",
        "--distributed",
        "--actors",
        "2",
        "--timesteps",
        timesteps,
        "--runs",
        str(runs),
        "--no-progress",
        "--set",
        "apex.n_envs=2",
        "--set",
        "apex.buffer_size=20k",
        "--set",
        "apex.learning_starts=800",
        "--set",
        "apex.batch_size=64",
        "--set",
        "checkpoint_every=2k",
        "--set",
        "eval_episodes=1",
        *extra,
    ]
    return command


def scalars(run_dir):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_train_py_distributed_run_directory_resume_and_no_ray_left(tmp_path):
    first = subprocess.Popen(train(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    assert ray_processes(first.pid), "no local Ray started by the run"
    output, errors = first.communicate(timeout=300)
    assert first.returncode == 0, errors[-3000:]
    assert not wait_for_exit(ray_processes(first.pid)), "Ray processes left after the run"
    run_dir = tmp_path / "MsPacman" / "apex-conv" / "seed0"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["distributed"]["enabled"] and saved["config"]["distributed"]["actors"] == 2
    logged = scalars(run_dir)
    for tag in (
        "distributed/frames_per_s",
        "distributed/actor0_frames_per_s",
        "distributed/actor1_frames_per_s",
        "distributed/learner_updates_per_s",
        "distributed/weight_lag_max",
        "replay/shard0_size",
        "train/loss",
        "episode/score",
        "eval/mean_score",
    ):
        assert tag in logged, tag
    bands = [tag for tag in logged if tag.startswith("episode/score_")]
    assert bands and sum(len(logged[tag]) for tag in bands) == len(logged["episode/score"])
    steps = max(int(path.stem.split("_")[1]) for path in (run_dir / "checkpoints").glob("model_*_steps.zip"))
    assert steps >= 4000
    replays = sorted(path.name for path in (run_dir / "checkpoints").glob("replay_*.npz"))
    assert replays == [f"replay_{steps}_steps.shard0.actor0.npz", f"replay_{steps}_steps.shard0.actor1.npz"]
    learner_steps = logged["train/learner_steps"][-1].value

    again = subprocess.Popen(
        train(tmp_path, "--resume", timesteps="5k"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    output, errors = again.communicate(timeout=300)
    assert again.returncode == 0, errors[-3000:]
    assert "Restored the replay shards" in output
    assert not wait_for_exit(ray_processes(again.pid)), "Ray processes left after the resumed run"
    resumed = scalars(run_dir)
    assert resumed["train/learner_steps"][-1].value > learner_steps
    # One batch of 64 per 64 transitions from learning_starts on, the resumed part included; a
    # block per actor (2 x 64 x 2 transitions) and the prefetched batches of slack.
    assert resumed["train/learner_steps"][-1].value <= (5000 - 800) / 64 + 2 * 64 * 2 / 64 + 2 + 1
    assert resumed["train/learner_steps"][-1].step >= 5000


def test_ctrl_c_checkpoints_and_leaves_no_ray_processes(tmp_path):
    process = subprocess.Popen(train(tmp_path, timesteps="1M"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ray:"):
            break
    time.sleep(8)
    started = ray_processes(process.pid)
    assert started, "no local Ray started by the run"
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-3000:]
    assert "Continue with --resume" in output
    checkpoints = list((tmp_path / "MsPacman" / "apex-conv" / "seed0" / "checkpoints").glob("model_*_steps.zip"))
    assert checkpoints
    assert not wait_for_exit(started | ray_processes(process.pid)), "Ray processes left after Ctrl-C"


@pytest.fixture
def train_script():
    from rl_coordconv.commands import train

    return train


def test_without_ray_distributed_names_the_install_command(train_script, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = train_script.main(["--agent", "apex", "--distributed", "--runs", str(tmp_path)])
    assert code == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--agent", "a2c", "--distributed"], "distributed training is for the apex agent, not 'a2c'"),
        (["--agent", "apex", "--actors", "2"], "--actors applies to --distributed training"),
        (["--agent", "apex", "--ray-address", "auto"], "--ray-address applies to --distributed training"),
        (
            ["--agent", "apex", "--distributed", "--actors", "3", "--set", "distributed.replay_shards=2"],
            r"distributed.replay_shards \(2\) must divide the rollout actors \(3\)",
        ),
        (
            ["--agent", "apex", "--distributed", "--set", "distributed.block_steps=0"],
            r"distributed.block_steps must be in \[1, inf\), got 0",
        ),
        (
            ["--agent", "apex", "--distributed", "--ray-address", "local"],
            r"--ray-address 'local' is not auto, HOST:PORT \(a port 1-65535\) or a ray:// URL",
        ),
        (["--agent", "apex", "--distributed", "--ray-address", "head:0"], r"--ray-address 'head:0' is not auto, HOST:PORT"),
        (
            ["--agent", "apex", "--distributed", "--ray-address", "127.0.0.1:1"],
            r"cannot reach the Ray head at --ray-address 127.0.0.1:1 .*ray start --head --port 1",
        ),
    ],
)
def test_bad_distributed_settings_get_clear_errors(argv, message, train_script, tmp_path, capsys):
    assert train_script.main([*argv, "--runs", str(tmp_path)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # refused before any run directory exists


def test_a_replay_shard_killed_mid_run_stops_it_with_a_checkpoint_and_no_ray_left(tmp_path):
    process = subprocess.Popen(train(tmp_path, timesteps="1M"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, shard = time.monotonic() + 120, None
    while shard is None and time.monotonic() < deadline:  # the shard's worker, once it holds transitions
        time.sleep(1)
        started = ray_processes(process.pid)
        shard = next((pid for pid in started if _command(pid).startswith("ray::ReplayShard.add_block")), None)
    assert shard is not None, "no replay shard process found"
    os.kill(shard, signal.SIGKILL)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 1, errors[-3000:]
    assert "replay shard 0 died" in errors and "--resume" in errors
    assert "Stopped at" in output
    assert list((tmp_path / "MsPacman" / "apex-conv" / "seed0" / "checkpoints").glob("model_*_steps.zip"))
    assert not wait_for_exit(started | ray_processes(process.pid)), "Ray processes left after the shard died"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_train_py_passes_the_ray_address_on(train_script, monkeypatch, tmp_path):
    seen = {}

    def fake_run_experiment(config, runs, **options):
        seen.update(options, distributed=config.distributed.enabled)
        return tmp_path

    monkeypatch.setattr(train_script, "run_experiment", fake_run_experiment)
    assert train_script.main(["--agent", "apex", "--distributed", "--ray-address", "head:6379", "--runs", str(tmp_path)]) == 0
    assert seen["ray_address"] == "head:6379" and seen["distributed"]


class FakeRay:
    """Records what ``ray.init`` is asked for; ``fail`` makes it raise as Ray does on a bad address."""

    def __init__(self, initialized: bool = False, fail: Exception | None = None):
        self.initialized, self.fail, self.inits, self.shutdowns = initialized, fail, [], 0

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **options) -> None:
        self.inits.append(options)
        if self.fail is not None:
            raise self.fail
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.mark.parametrize("address", [None, "local"])
def test_a_local_ray_gets_the_usable_cores_and_at_least_one_cpu_per_actor(address, monkeypatch):
    from rl_coordconv.agents.distributed import start_ray

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert start_ray(address, min_cpus=2) is True
    assert start_ray(address, min_cpus=5) is False  # already up: left as it is
    fake.initialized = False
    assert start_ray(address, min_cpus=5, quiet=True) is True
    assert fake.inits == [
        {"num_cpus": 3, "include_dashboard": False},
        {"num_cpus": 5, "include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"},
    ]


def test_joining_a_cluster_passes_the_address_and_a_failure_is_one_clear_error(monkeypatch):
    from rl_coordconv.agents.distributed import start_ray

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert start_ray("auto") is True and fake.inits == [{"address": "auto"}]
    fake = FakeRay(fail=ConnectionError("no cluster"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ValueError, match=r"cannot join the Ray cluster at --ray-address auto: no cluster"):
        start_ray("auto")
    assert fake.shutdowns == 1  # nothing half-started is left


def test_an_actor_is_restarted_up_to_max_actor_restarts_times_then_dropped(monkeypatch):
    loop = RayLearnerLoop.__new__(RayLearnerLoop)
    loop.distributed = DistributedConfig(max_actor_restarts=1)
    loop._recovering, loop._lives, loop._sent_version, loop.restarts, loop.alive = set(), [0], [None], 0, {0}
    resubmitted = []
    monkeypatch.setattr(loop, "_submit_rollout", lambda actor, until: resubmitted.append(actor), raising=False)
    loop._actor_failed(learner._Flight("rollout", 0, None, life=0, sent_recovering=False), RuntimeError("killed"), until=1000)
    assert (loop.alive, loop.restarts, resubmitted) == ({0}, 1, [0])  # the one restart allowed
    loop._actor_failed(learner._Flight("rollout", 0, None, life=1, sent_recovering=False), RuntimeError("killed"), until=1000)
    assert (loop.alive, loop.restarts, resubmitted) == (set(), 1, [0])  # none left: dropped
