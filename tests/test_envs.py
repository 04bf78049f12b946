import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from envs import BACKENDS, GAMES, GOAL_PIXEL_ID, make_atari_vec_env
from envs.goal_pixel import AGENT_INTENSITY, GOAL_INTENSITY, GoalPixelEnv


def random_actions(env, steps: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, env.action_space.n, size=(steps, env.num_envs))


def play(env, actions):
    """Step through ``actions``; yield (obs, rewards, dones, infos) per step."""
    for action in actions:
        yield env.step(action)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_share_shapes_dtypes_and_spaces(backend):
    env = make_atari_vec_env("MsPacman", 3, seed=0, backend=backend)
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(9)
    obs, rewards, dones, infos = env.step(np.zeros(3, dtype=np.int64))
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert rewards.shape == (3,) and rewards.dtype == np.float32
    assert dones.shape == (3,) and dones.dtype == np.bool_
    assert len(infos) == 3
    env.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewards_are_sign_clipped_and_games_scored_in_raw_points(backend):
    env = make_atari_vec_env("MsPacman", 2, seed=0, backend=backend)
    env.reset()
    seen = set()
    for _, rewards, _, _ in play(env, random_actions(env, 300)):
        seen.update(rewards.tolist())
    assert seen == {0.0, 1.0}  # dots are worth 10 points, clipped to 1
    env.close()


def test_clipped_rewards_are_the_sign_of_the_raw_rewards_under_the_same_seed():
    clipped = make_atari_vec_env("MsPacman", 2, seed=5)
    raw = make_atari_vec_env("MsPacman", 2, seed=5, clip_rewards=False)
    clipped.reset(), raw.reset()
    raw_values = set()
    for action in random_actions(clipped, 300):
        _, clipped_rewards, _, _ = clipped.step(action)
        _, raw_rewards, _, _ = raw.step(action)
        np.testing.assert_array_equal(clipped_rewards, np.sign(raw_rewards))
        raw_values.update(raw_rewards.tolist())
    assert 10.0 in raw_values


@pytest.mark.parametrize("backend", BACKENDS)
def test_life_losses_are_terminals_and_the_game_score_sums_all_lives(backend):
    env = make_atari_vec_env("Breakout", 4, seed=1, backend=backend, clip_rewards=False)
    env.reset()
    score_so_far = np.zeros(4)
    life_losses = games = 0
    for obs, rewards, dones, infos in play(env, random_actions(env, 2000, seed=1)):
        score_so_far += rewards
        for i in np.flatnonzero(dones):
            if "episode" not in infos[i]:
                life_losses += 1
                continue
            games += 1
            assert infos[i]["episode"]["r"] == pytest.approx(score_so_far[i])
            score_so_far[i] = 0
    assert games >= 4
    assert life_losses >= 4 * games  # Breakout has five lives


def test_episode_length_counts_agent_steps():
    env = make_atari_vec_env("Breakout", 2, seed=3)
    env.reset()
    steps = np.zeros(2, dtype=int)
    lengths = []
    for _, _, _, infos in play(env, random_actions(env, 1500, seed=3)):
        steps += 1
        for i, info in enumerate(infos):
            if "episode" in info:
                lengths.append((info["episode"]["l"], steps[i]))
                steps[i] = 0
    assert lengths and all(reported == counted for reported, counted in lengths)


@pytest.mark.parametrize("backend", BACKENDS)
def test_game_over_returns_the_new_game_and_the_true_last_observation(backend):
    env = make_atari_vec_env("Breakout", 2, seed=2, backend=backend)
    previous = env.reset()
    checked_game_overs = checked_life_losses = 0
    for obs, _, dones, infos in play(env, random_actions(env, 1500, seed=2)):
        for i in np.flatnonzero(dones):
            last = infos[i]["terminal_observation"]
            assert last.shape == (4, 84, 84) and last.dtype == np.uint8
            assert infos[i]["TimeLimit.truncated"] is False
            assert all(frame.any() for frame in last)  # a stack of real frames
            np.testing.assert_array_equal(last[:3], previous[i, 1:])  # one step after the previous one
            if "episode" in infos[i]:
                # A new game: its stack holds one frame, zero-padded; the old game's is in the info.
                assert not obs[i, :3].any() and obs[i, 3].any()
                checked_game_overs += 1
            elif backend == "ale_vector":
                # A life loss: the game goes on, no transition is wasted on a reset.
                np.testing.assert_array_equal(obs[i], last)
                checked_life_losses += 1
        previous = obs
    assert checked_game_overs >= 2
    assert backend == "sb3" or checked_life_losses >= 4


def test_time_limit_truncation_is_flagged():
    from envs.atari import AleVecEnv

    env = AleVecEnv("MsPacman", 2, seed=0, max_episode_frames=400)
    env.reset()
    for step, (obs, _, dones, infos) in enumerate(play(env, np.zeros((150, 2), dtype=np.int64))):
        truncated = [info for info in infos if info.get("TimeLimit.truncated")]
        if truncated:
            assert all("episode" in info and "terminal_observation" in info for info in truncated)
            assert step < 110  # 400 frames = 100 agent steps (plus noop starts)
            return
    pytest.fail("no truncation after 400 frames")


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_runs_repeat_exactly(backend):
    def rollout(seed):
        env = make_atari_vec_env("MsPacman", 2, seed=seed, backend=backend)
        frames = [env.reset()]
        for obs, rewards, dones, _ in play(env, random_actions(env, 200)):
            frames.append(obs)
        env.close()
        return np.stack(frames)

    first = rollout(7)
    np.testing.assert_array_equal(first, rollout(7))
    assert not np.array_equal(first, rollout(8))


def test_evaluation_env_plays_whole_games_without_life_loss_terminals():
    env = make_atari_vec_env("Breakout", 2, seed=4, terminal_on_life_loss=False)
    env.reset()
    for _, _, dones, infos in play(env, random_actions(env, 1500, seed=4)):
        for i in np.flatnonzero(dones):
            assert "episode" in infos[i]


def test_every_game_of_the_suite_builds():
    for name in GAMES:
        env = make_atari_vec_env(name, 1, seed=0)
        assert env.reset().shape == (1, 4, 84, 84)
        env.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"game": "Pacman"}, "unknown game 'Pacman'; the suite is: MsPacman, Alien"),
        ({"game": "MsPacman", "backend": "envpool"}, "unknown backend 'envpool'"),
        ({"game": "MsPacman", "n_envs": 0}, "n_envs must be >= 1"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, message):
    kwargs.setdefault("n_envs", 2)
    with pytest.raises(ValueError, match=message):
        make_atari_vec_env(**kwargs)


def test_goal_pixel_passes_sb3_env_checker():
    check_env(GoalPixelEnv())


def test_goal_pixel_draws_both_cells_and_rewards_reaching_the_goal():
    env = gym.make(GOAL_PIXEL_ID, grid_size=5, max_steps=50)
    obs, _ = env.reset(seed=0)
    unwrapped = env.unwrapped
    assert (obs == GOAL_INTENSITY).sum() == (obs == AGENT_INTENSITY).sum() == unwrapped.cell_pixels**2
    unwrapped._agent, unwrapped._goal = np.array([0, 0]), np.array([1, 2])
    # Away (into the wall: no move), then closer, closer, then onto the goal.
    expected = [(0, -0.05, False), (1, 0.1 - 0.05, False), (3, 0.1 - 0.05, False), (3, 1.0, True)]
    for action, reward, terminated in expected:
        obs, got_reward, got_terminated, truncated, _ = env.step(action)
        assert (got_reward, got_terminated, truncated) == (pytest.approx(reward), terminated, False)
    top, left = 1 * unwrapped.cell_pixels, 2 * unwrapped.cell_pixels
    assert obs[0, top, left] == AGENT_INTENSITY  # the agent is drawn over the goal it reached


def test_goal_pixel_positions_change_per_episode_and_truncate():
    env = GoalPixelEnv(grid_size=4, max_steps=3)
    starts = {env.reset(seed=seed)[0].tobytes() for seed in range(20)}
    assert len(starts) > 10
    env.reset(seed=0)
    env._agent = np.array([0, 0]); env._goal = np.array([3, 3])
    results = [env.step(0) for _ in range(3)]  # up, into the wall
    assert [r[3] for r in results] == [False, False, True]
