import numpy as np
import pytest
import torch
from gymnasium import spaces
from replay_reference import EVENTS, FakeStackingEnvs, ReferenceStream, check_against_reference, feed, make_buffer

import rl_coordconv.agents.replay.buffer as replay_buffer
from rl_coordconv.agents.replay import PrioritizedReplayBuffer, SumTree
from rl_coordconv.agents.replay.frames import frame_capacity_for
from rl_coordconv.agents.replay.sampler import stratified_sample


def fill(buffer, steps, seed=0, probabilities=(0.82, 0.06, 0.05, 0.04, 0.03)):
    envs = FakeStackingEnvs(buffer.n_envs, buffer.stack_size, buffer.obs_shape[-1], probabilities, seed)
    streams = [ReferenceStream(buffer.stack_size) for _ in range(buffer.n_envs)]
    for _ in range(steps):
        feed(buffer, streams, envs.step(), buffer.handle_timeout_termination)
    return envs, streams


# ------------------------------------------------------------------------------- the sum tree


@pytest.mark.parametrize("capacity", [37, 5000])  # all levels dense; 3 levels walked below the dense ones
def test_sum_tree_sums_stay_exact_after_batch_updates_with_repeated_indices(capacity):
    rng = np.random.default_rng(0)
    tree, expected = SumTree(capacity), np.zeros(capacity)
    assert tree.n_leaves == {37: 64, 5000: 8192}[capacity]
    for _ in range(30):
        leaves = rng.integers(0, capacity, size=300)  # repeats certain
        values = rng.random(300) * (rng.random(300) < 0.8)
        tree.update(leaves, values)
        for leaf, value in zip(leaves, values):
            expected[leaf] = value  # the last value of a repeated leaf wins
        np.testing.assert_array_equal(tree.leaf_values(), expected)
        nodes = tree.nodes
        np.testing.assert_array_equal(
            nodes[1 : tree.n_leaves], nodes[2 : 2 * tree.n_leaves : 2] + nodes[3 : 2 * tree.n_leaves : 2]
        )
        assert tree.total == pytest.approx(expected.sum(), rel=1e-12)


def test_sum_tree_find_returns_the_leaf_whose_interval_holds_the_prefix_sum():
    tree = SumTree(6)
    values = np.array([0.5, 0.0, 2.0, 0.25, 0.0, 1.25])
    tree.update(np.arange(6), values)
    edges = np.cumsum(values)
    points = np.array([0.0, 0.49, 0.5, 2.49, 2.5, 2.74, 2.75, 3.99])
    np.testing.assert_array_equal(tree.find(points), [0, 0, 2, 2, 3, 3, 5, 5])
    # Rounding past the total never lands on an empty leaf.
    assert tree.find(np.array([edges[-1], edges[-1] * (1 + 1e-12)])).tolist() == [5, 5]


def test_sum_tree_find_agrees_with_a_search_in_the_cumulative_sums_on_a_deep_tree():
    rng = np.random.default_rng(2)
    tree = SumTree(5000)
    values = rng.exponential(size=5000) * (rng.random(5000) < 0.7)
    values[4000:] = 0.0  # an empty tail: draws at the very end must not land there
    tree.update(np.arange(5000), values)
    points = np.sort(rng.random(20_000)) * tree.total
    np.testing.assert_array_equal(tree.find(points), np.searchsorted(np.cumsum(values), points, side="right"))
    last = np.flatnonzero(values)[-1]
    assert tree.find(np.array([tree.total, tree.total * (1 + 1e-9)])).tolist() == [last, last]


def test_stratified_sampling_over_several_trees_draws_what_one_tree_of_all_their_leaves_draws():
    # A shard samples its actors' buffers as one replay: same draws, leaf by leaf.
    first, second = np.array([0.5, 0.0, 2.0, 0.25]), np.array([1.0, 0.0, 3.0, 0.0, 0.75, 0.5, 0.0, 2.0])
    trees = [SumTree(4), SumTree(8)]
    for tree, values in zip(trees, [first, second]):
        tree.update(np.arange(values.size), values)
    whole = SumTree(12)
    whole.update(np.arange(12), np.concatenate([first, second]))
    owners, leaves = stratified_sample(trees, 64, np.random.default_rng(5))
    _, expected = stratified_sample([whole], 64, np.random.default_rng(5))
    np.testing.assert_array_equal(np.where(owners == 0, leaves, 4 + leaves), expected)
    assert set(owners.tolist()) == {0, 1}
    # Segment k holds draw k: the draws of one tree are the ordered prefix sums of its values.
    targets = (np.arange(64) + np.random.default_rng(5).random(64)) * (10.0 / 64)
    np.testing.assert_array_equal(expected, np.searchsorted(np.cumsum(np.concatenate([first, second])), targets, side="right"))


def test_one_tree_draws_are_owned_by_it_and_are_the_trees_own_find():
    tree = SumTree(10)
    tree.update(np.arange(10), np.arange(10, dtype=np.float64))
    owners, leaves = stratified_sample([tree], 8, np.random.default_rng(3))
    targets = (np.arange(8) + np.random.default_rng(3).random(8)) * (45.0 / 8)
    assert owners.tolist() == [0] * 8
    np.testing.assert_array_equal(leaves, np.searchsorted(np.cumsum(np.arange(10)), targets, side="right"))


def test_the_frame_rings_hold_the_transitions_their_stacks_and_three_percent_more():
    assert frame_capacity_for(1000, 4) == 1000 + 4 + 30
    assert frame_capacity_for(101, 1) == 101 + 1 + 4  # ceil(3.03)
    buffer = make_buffer((4, 8, 8), buffer_size=2000, n_envs=2)
    assert buffer.frame_rings.capacity == 1000 + 4 + 30 and buffer.frame_rings.frames.shape == (2, 1034, 8, 8)


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = counts.sum() * probabilities
    return float(((counts - expected) ** 2 / expected).sum())


def test_sampling_frequencies_follow_priorities_and_their_updates():
    buffer = make_buffer((1, 4, 4), buffer_size=16, n_envs=1, n_steps=1, alpha=0.6)
    fill(buffer, 16, probabilities=(1, 0, 0, 0, 0))
    assert buffer.size() == 16
    rng = np.random.default_rng(1)
    for _ in range(2):  # new priorities, then updated ones
        td_errors = rng.uniform(0.0, 3.0, size=16)
        buffer.update_priorities(np.arange(16), td_errors)
        priorities = (np.abs(td_errors) + buffer.priority_eps) ** buffer.alpha
        np.testing.assert_allclose(buffer.tree.leaf_values(), priorities)
        counts = np.zeros(16)
        for _ in range(400):
            np.add.at(counts, buffer.sample(16).indices, 1)
        # 15 degrees of freedom: the 1e-6 quantile is about 56; stratification only lowers it.
        assert chi_square(counts, priorities / priorities.sum()) < 56


def test_importance_weights_match_a_hand_computation():
    buffer = make_buffer((1, 4, 4), buffer_size=5, n_envs=1, n_steps=1, alpha=0.6, beta=0.4)
    fill(buffer, 5, probabilities=(1, 0, 0, 0, 0))
    td_errors = [0.5, 1.0, 2.0, 0.0, 4.0]
    buffer.update_priorities(np.arange(5), td_errors)
    batch = buffer.sample(5)
    priorities = [(abs(td) + 1e-6) ** 0.6 for td in td_errors]
    weights = [(5 * priorities[i] / sum(priorities)) ** -0.4 for i in batch.indices.tolist()]
    np.testing.assert_allclose(batch.weights.numpy()[:, 0], [w / max(weights) for w in weights], rtol=1e-6)
    assert batch.weights.dtype == torch.float32 and batch.weights.shape == (5, 1)


# ------------------------------------------------------------ windows against the reference


@pytest.mark.parametrize(
    "obs_shape, n_steps, buffer_size, probabilities, handle_timeout_termination",
    [
        ((4, 6, 6), 3, 111, (0.82, 0.06, 0.05, 0.04, 0.03), True),  # frequent new games: the frame ring evicts
        ((4, 6, 6), 3, 111, (0.94, 0.04, 0.0, 0.01, 0.01), True),  # long games: the transition ring evicts
        ((1, 5, 5), 1, 48, (0.8, 0.05, 0.05, 0.05, 0.05), True),  # unstacked frames, 1-step
        ((2, 5, 5), 5, 90, (0.8, 0.05, 0.05, 0.05, 0.05), False),  # time limits count as terminals
    ],
)
def test_every_sampleable_transition_matches_a_naive_reference_at_every_step(
    obs_shape, n_steps, buffer_size, probabilities, handle_timeout_termination
):
    buffer = make_buffer(
        obs_shape, buffer_size, n_envs=3, n_steps=n_steps, gamma=0.9, handle_timeout_termination=handle_timeout_termination
    )
    envs = FakeStackingEnvs(3, obs_shape[0], obs_shape[-1], probabilities, seed=3)
    streams = [ReferenceStream(obs_shape[0]) for _ in range(3)]
    frame_evictions = 0
    for _ in range(150):
        feed(buffer, streams, envs.step(), handle_timeout_termination)
        check_against_reference(buffer, streams)
        frame_evictions += int((buffer.oldest > max(0, buffer.added - buffer.buffer_size)).any())
    assert buffer.added > 3 * buffer.buffer_size  # wrapped around several times
    assert all(envs.seen[event] > 0 for event, p in zip(EVENTS, probabilities) if p > 0)
    if probabilities[2] > 0.04:
        assert frame_evictions > 0


def test_sampled_windows_stay_in_one_env_and_one_game_and_cover_every_valid_transition():
    buffer = make_buffer((4, 6, 6), buffer_size=111, n_envs=3, n_steps=3)
    envs, streams = fill(buffer, 200, seed=5)
    expected = check_against_reference(buffer, streams)
    sampled = set()
    for _ in range(40):
        batch = buffer.sample(64)
        assert set(batch.indices.tolist()) <= set(expected)
        sampled.update(batch.indices.tolist())
        observations, next_observations = batch.observations.numpy(), batch.next_observations.numpy()
        for row, index in enumerate(batch.indices.tolist()):
            frames = np.concatenate([observations[row], next_observations[row]])
            frames = frames[frames[:, 0, 4] == 255]  # real frames, not the zero padding
            assert (frames[:, 0, 2] == index % 3).all()  # one env
            assert len(set(frames[:, 0, 3].tolist())) == 1  # one game
            np.testing.assert_array_equal(next_observations[row], expected[index][5])
    assert sampled == set(expected)
    assert {index % 3 for index in sampled} == {0, 1, 2}


def test_overwritten_transitions_are_never_sampled():
    buffer = make_buffer((4, 6, 6), buffer_size=30, n_envs=3, n_steps=3)
    envs, streams = fill(buffer, 100, seed=2)
    expected = check_against_reference(buffer, streams)
    newest = min(len(stream.transitions) for stream in streams)
    assert all(newest - t <= buffer.buffer_size for e, t, *_ in expected.values())
    for _ in range(20):
        batch = buffer.sample(8)
        for index in batch.indices.tolist():
            assert index in expected


# ------------------------------------------------------------------------ real environments


def test_rebuilt_stacks_equal_the_observations_of_a_real_atari_stream():
    from rl_coordconv.envs import make_atari_vec_env

    env = make_atari_vec_env("MsPacman", 2, seed=0)
    buffer = PrioritizedReplayBuffer(2 * 150, env.observation_space, env.action_space, "cpu", 2, n_steps=3, seed=0)
    streams = [ReferenceStream(4) for _ in range(2)]
    obs = env.reset()
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=(400, 2))
    game_overs = np.zeros(2, dtype=int)
    for action in actions:
        new_obs, rewards, dones, infos = env.step(action)
        next_obs = new_obs.copy()  # as SB3's _store_transition
        for i in np.flatnonzero(dones):
            next_obs[i] = infos[i]["terminal_observation"]
        feed(buffer, streams, (obs, next_obs, action, rewards, dones, infos))
        obs = new_obs
        game_overs += ["episode" in info for info in infos]
    env.close()
    life_losses = sum(t.terminal for stream in streams for t in stream.transitions) - game_overs.sum()
    assert life_losses >= 2
    expected = check_against_reference(buffer, streams)
    assert len(expected) > 250
    # Each frame is stored once: a new chain of 4 frames only at the start and after a game over.
    np.testing.assert_array_equal(buffer.frame_rings.written, [stream.frames_written for stream in streams])
    np.testing.assert_array_equal(buffer.frame_rings.written, buffer.added + 4 * (1 + game_overs))


def test_sb3_dqn_learns_with_the_buffer():
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    import rl_coordconv.envs  # noqa: F401  (registers GoalPixel-v0)

    env = make_vec_env("GoalPixel-v0", n_envs=2, seed=0)
    model = DQN(
        "CnnPolicy",
        env,
        replay_buffer_class=PrioritizedReplayBuffer,
        replay_buffer_kwargs=dict(n_steps=3),
        buffer_size=500,
        learning_starts=50,
        batch_size=16,
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=400)
    buffer = model.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer)
    assert model._n_updates > 20
    assert buffer.size() > 150
    batch = buffer.sample(16)
    assert batch.observations.shape == (16, 1, 36, 36)
    discounts = batch.discounts.numpy()[:, 0, None]
    assert np.isclose(discounts, 0.99 ** np.arange(1, 4)).any(axis=1).all()


# ------------------------------------------------------------------------------- priorities


def test_new_transitions_enter_with_the_max_priority():
    buffer = make_buffer(n_steps=1, alpha=0.5)
    fill(buffer, 4, probabilities=(1, 0, 0, 0, 0))
    np.testing.assert_array_equal(buffer.tree.get(np.arange(12)), np.ones(12))
    buffer.update_priorities(np.array([0, 4]), np.array([8.0, 0.5]))
    assert buffer.max_priority == pytest.approx((8.0 + 1e-6) ** 0.5)
    envs = FakeStackingEnvs(3, 4, 6, (1, 0, 0, 0, 0), seed=9)
    buffer.add(*envs.step())  # the stream is cut, a new one starts: still new transitions
    np.testing.assert_allclose(buffer.tree.get(np.arange(12, 15)), (8.0 + 1e-6) ** 0.5)
    buffer.update_priorities(np.array([0, 4]), np.array([0.1, 0.1]))  # the max so far is kept
    buffer.add(*envs.step())
    np.testing.assert_allclose(buffer.tree.get(np.arange(15, 18)), (8.0 + 1e-6) ** 0.5)


def test_update_priorities_leaves_unsampleable_indices_alone():
    buffer = make_buffer(n_steps=3)
    fill(buffer, 5, probabilities=(1, 0, 0, 0, 0))
    size = buffer.size()
    incomplete = np.array([4 * 3, 4 * 3 + 1])  # the newest transitions: windows not complete
    buffer.update_priorities(incomplete, torch.tensor([1.0, 2.0]))
    assert buffer.size() == size and (buffer.tree.get(incomplete) == 0).all()
    with pytest.raises(ValueError, match="sampleable"):
        buffer._get_samples(incomplete)


def test_actor_td_errors_match_a_naive_reference_and_come_once_per_window():
    """With random acting values, every window that ends on a terminal or has an acted-on
    bootstrap observation gets R + gamma^k * max Q(s_{t+k}) - Q(s_t, a_t), exactly once; windows
    ended by a time limit or an outside reset never do."""
    n_envs, n_steps, gamma, steps = 3, 3, 0.9, 150
    buffer = make_buffer(buffer_size=n_envs * steps, n_steps=n_steps, gamma=gamma, initial_priority="actor")
    envs = FakeStackingEnvs(n_envs, 4, 6, seed=4)
    streams = [ReferenceStream(4) for _ in range(n_envs)]
    rng = np.random.default_rng(1)
    q_taken, q_max = rng.normal(size=(steps, n_envs)), rng.normal(size=(steps, n_envs))
    returned = {}
    for t in range(steps):
        buffer.set_acting_values(q_taken[t], q_max[t])
        feed(buffer, streams, envs.step())
        indices, errors = buffer.actor_td_errors()
        for index, error in zip(indices.tolist(), errors.tolist()):
            key = (index % n_envs, index // n_envs)  # (env, t): no wrap-around in this buffer
            assert key not in returned, f"{key} returned twice"
            returned[key] = error
            assert buffer.tree.get(index) > 0  # a sampleable transition
    expected = {}
    for e, stream in enumerate(streams):
        transitions = stream.transitions
        for t in range(len(transitions)):
            ret, k = 0.0, 0
            for j in range(t, min(t + n_steps, len(transitions))):
                ret += gamma**k * transitions[j].reward
                k += 1
                if transitions[j].terminal or transitions[j].truncated or transitions[j].cut:
                    break
            last = transitions[t + k - 1]
            if last.truncated or (last.cut and not last.terminal):
                continue  # a time limit or an outside reset: no acted-on bootstrap observation
            if last.terminal:
                expected[(e, t)] = ret - q_taken[t, e]
            elif k == n_steps and t + k < len(transitions):
                expected[(e, t)] = ret + gamma**k * q_max[t + k, e] - q_taken[t, e]
    assert set(returned) == set(expected) and len(expected) > 250
    for key, error in expected.items():
        assert returned[key] == pytest.approx(error, rel=1e-5, abs=1e-5), key
    assert sum(stream.transitions[-1].truncated for stream in streams) + envs.seen["time_limit"] > 0


def test_saved_actor_priorities_are_not_handed_out_again(tmp_path):
    def actor_buffer():
        return make_buffer(initial_priority="actor")

    buffer, envs = actor_buffer(), FakeStackingEnvs(3, 4, 6, seed=2)
    for _ in range(20):
        buffer.set_acting_values(np.ones(3), np.ones(3))
        buffer.add(*envs.step())
    assert buffer.actor_td_errors()[0].size > 0
    buffer.save(tmp_path / "replay.npz")
    restored = actor_buffer()
    restored.load(tmp_path / "replay.npz")
    assert restored.actor_td_errors()[0].size == 0


def test_actor_priorities_need_the_acting_values():
    buffer = make_buffer(initial_priority="actor")
    envs = FakeStackingEnvs(3, 4, 6, seed=0)
    with pytest.raises(ValueError, match="call set_acting_values"):
        buffer.add(*envs.step())
    with pytest.raises(ValueError, match="initial_priority='actor'"):
        make_buffer().actor_td_errors()


# ------------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip_exactly(tmp_path):
    buffer = make_buffer(buffer_size=45, n_steps=3, seed=7)
    envs, _ = fill(buffer, 40, seed=1)
    batch = buffer.sample(16)
    buffer.update_priorities(batch.indices, np.linspace(0, 3, 16))
    path = tmp_path / "replay.npz"
    buffer.save(path)
    restored = make_buffer(buffer_size=45, n_steps=3, seed=123)
    restored.load(path)
    for _step in range(3):
        first, second = buffer.sample(16), restored.sample(16)
        for name, value in first._asdict().items():
            np.testing.assert_array_equal(np.asarray(value), np.asarray(getattr(second, name)), err_msg=name)
        transition = envs.step()
        buffer.add(*transition)
        restored.add(*transition)
    np.testing.assert_array_equal(buffer.tree.nodes, restored.tree.nodes)
    assert (buffer.size(), buffer.pos, buffer.full, buffer.max_priority) == (
        restored.size(),
        restored.pos,
        restored.full,
        restored.max_priority,
    )


def test_save_and_load_keep_the_acting_values_of_actor_side_priorities(tmp_path):
    # Windows that complete after a resume take their TD errors from Q-values stored before it.
    buffer = make_buffer(buffer_size=45, n_steps=3, initial_priority="actor")
    rng = np.random.default_rng(3)
    envs = FakeStackingEnvs(3, 4, 6, seed=1)

    def act_and_add(replays):
        q_taken, q_max, transition = rng.normal(size=3), rng.normal(size=3), envs.step()
        for replay in replays:
            replay.set_acting_values(q_taken, q_max)
            replay.add(*transition)

    for step in range(20):
        act_and_add([buffer])
        if step == 17:
            buffer.actor_td_errors()  # the learner's last call before the save: two steps stay pending
    path = tmp_path / "replay.npz"
    buffer.save(path)
    restored = make_buffer(buffer_size=45, n_steps=3, initial_priority="actor")
    restored.load(path)
    for _ in range(3):
        expected, restored_errors = buffer.actor_td_errors(), restored.actor_td_errors()
        assert expected[0].size > 0
        np.testing.assert_array_equal(expected[0], restored_errors[0])
        np.testing.assert_array_equal(expected[1], restored_errors[1])
        act_and_add([buffer, restored])


def test_the_buffer_pickles_as_sb3_save_replay_buffer_needs():
    import pickle

    buffer = make_buffer(n_steps=3)
    fill(buffer, 20)
    copy = pickle.loads(pickle.dumps(buffer))
    first, second = buffer.sample(16), copy.sample(16)
    for name, value in first._asdict().items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(getattr(second, name)), err_msg=name)


def test_load_refuses_a_buffer_saved_with_other_settings(tmp_path):
    path = tmp_path / "replay.npz"
    make_buffer(n_steps=3).save(path)
    with pytest.raises(ValueError, match="other settings.*n_steps.*\\(3, 5\\)"):
        make_buffer(n_steps=5).load(path)
    with pytest.raises(ValueError, match="obs_shape"):
        make_buffer(obs_shape=(4, 7, 7), n_steps=3).load(path)


# ------------------------------------------------------------------------------------ errors

ATARI = spaces.Box(0, 255, (4, 84, 84), np.uint8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"buffer_size": 0}, r"buffer_size must be a positive integer >= n_envs \(1\)"),
        ({"buffer_size": 3, "n_envs": 4}, r"buffer_size must be a positive integer >= n_envs \(4\)"),
        ({"n_envs": 0}, "n_envs must be a positive integer"),
        ({"n_steps": 0}, r"n_steps must be an integer in \[1, buffer_size // n_envs = 100\]"),
        ({"n_steps": 101}, r"n_steps must be an integer in \[1, buffer_size // n_envs = 100\]"),
        ({"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
        ({"gamma": 1.5}, r"gamma must be in \(0, 1\]"),
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\]"),
        ({"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ({"priority_eps": 0.0}, "priority_eps must be > 0"),
        ({"initial_priority": "min"}, r"unknown initial_priority 'min'; choose one of \('actor', 'max'\)"),
        ({"optimize_memory_usage": True}, "does not take optimize_memory_usage=True"),
        (
            {"observation_space": spaces.Box(0, 1, (4, 84, 84), np.float32)},
            r"accepts a Box observation space of shape \(C, H, W\) and dtype uint8.*got Box\(0.0, 1.0, \(4, 84, 84\), float32\)",
        ),
        (
            {"observation_space": spaces.Box(0, 255, (84, 84), np.uint8)},
            r"shape \(C, H, W\) and dtype uint8.*got Box\(0, 255, \(84, 84\), uint8\)",
        ),
        ({"observation_space": spaces.Discrete(4)}, r"shape \(C, H, W\).*got Discrete\(4\)"),
        ({"action_space": spaces.Box(-1, 1, (2,))}, "accepts a Discrete action space, got Box"),
    ],
)
def test_bad_settings_get_clear_errors(kwargs, message):
    settings = {"buffer_size": 100, "observation_space": ATARI, "action_space": spaces.Discrete(4)}
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PrioritizedReplayBuffer(**settings)


def test_sampling_more_than_the_valid_transitions_says_how_many_there_are():
    buffer = make_buffer(n_steps=3)
    fill(buffer, 3, probabilities=(1, 0, 0, 0, 0))
    assert buffer.size() == 3  # one complete 3-step window per env
    with pytest.raises(ValueError, match="cannot sample a batch of 4: the buffer holds 3 valid transitions"):
        buffer.sample(4)


def test_observations_that_are_not_shifting_frame_stacks_are_refused():
    buffer = make_buffer()
    obs = np.zeros((3, 4, 6, 6), dtype=np.uint8)
    next_obs = np.ones((3, 4, 6, 6), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"next_obs\[:-1\] must equal obs\[1:\].*not for envs \[0, 1, 2\]"):
        buffer.add(obs, next_obs, np.zeros(3), np.zeros(3), np.zeros(3, dtype=bool), [{}] * 3)
    assert buffer.added == 0
    with pytest.raises(ValueError, match=r"obs must be uint8 of shape \(3, 4, 6, 6\)"):
        buffer.add(obs[:2], next_obs, np.zeros(3), np.zeros(3), np.zeros(3, dtype=bool), [{}] * 3)


def test_a_buffer_larger_than_the_available_memory_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(replay_buffer, "available_memory_bytes", lambda: 2 * 2**30)
    with pytest.raises(
        MemoryError,
        match=r"buffer_size=1000000\) needs \d+ bytes \(6\.\d\d GiB\) but only 2147483648 bytes \(2\.00 GiB\) are "
        r"available; lower buffer_size \(e\.g\. --set apex\.buffer_size=2\d{5}\)",
    ):
        PrioritizedReplayBuffer(1_000_000, ATARI, spaces.Discrete(4), n_envs=4)


def test_available_memory_is_read_on_this_machine():
    available = replay_buffer.available_memory_bytes()
    assert available is None or available > 0
