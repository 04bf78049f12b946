import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from rl_coordconv.envs import BACKENDS, GAMES, GOAL_PIXEL_ID, make_atari_vec_env
from rl_coordconv.envs.goal_pixel import AGENT_INTENSITY, GOAL_INTENSITY, GoalPixelEnv


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
    """The clipped env's game scores equal the raw env's reward sums over the same games."""
    clipped = make_atari_vec_env("MsPacman", 2, seed=0, backend=backend)
    raw = make_atari_vec_env("MsPacman", 2, seed=0, backend=backend, clip_rewards=False)
    clipped.reset(), raw.reset()
    raw_sums, clipped_values, games = np.zeros(2), set(), 0
    for action in random_actions(clipped, 1500):
        _, clipped_rewards, _, infos = clipped.step(action)
        _, raw_rewards, _, _ = raw.step(action)
        clipped_values.update(clipped_rewards.tolist())
        raw_sums += raw_rewards
        for i, info in enumerate(infos):
            if "episode" in info:
                assert info["episode"]["r"] == raw_sums[i] and raw_sums[i] % 10 == 0
                raw_sums[i] = 0
                games += 1
    assert clipped_values == {0.0, 1.0}  # dots are worth 10 points, clipped to 1
    assert games >= 2
    clipped.close(), raw.close()


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
    for _obs, rewards, dones, infos in play(env, random_actions(env, 2000, seed=1)):
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
    from rl_coordconv.envs.atari import AleVecEnv

    env = AleVecEnv("MsPacman", 2, seed=0, max_episode_frames=400, clip_rewards=False)
    previous = env.reset()
    scores, steps = np.zeros(2), np.zeros(2, dtype=int)
    for obs, rewards, dones, infos in play(env, np.zeros((150, 2), dtype=np.int64)):
        scores += rewards
        steps += 1
        for i in np.flatnonzero(dones):
            info = infos[i]
            assert info["TimeLimit.truncated"] is True
            assert steps[i] == 100  # 400 frames = 100 agent steps (noop starts not counted)
            assert info["episode"]["r"] == scores[i] and info["episode"]["l"] == steps[i]
            np.testing.assert_array_equal(info["terminal_observation"][:3], previous[i, 1:])
            assert not obs[i, :3].any() and obs[i, 3].any()  # a new game's first, zero-padded stack
        if dones.any():
            return
        previous = obs
    pytest.fail("no truncation after 400 frames")


def first_life_loss_step(actions) -> int:
    from rl_coordconv.envs.atari import AleVecEnv

    env = AleVecEnv("Breakout", 1, seed=1)
    env.reset()
    for step, (_, _, dones, infos) in enumerate(play(env, actions)):
        if dones[0]:
            assert "episode" not in infos[0]
            return step
    pytest.fail("no life lost")


@pytest.mark.parametrize("terminal_on_life_loss", [True, False])
def test_life_loss_and_time_limit_in_the_same_step(terminal_on_life_loss):
    """The time limit falls on the step of the first life loss: the game ends with its score.
    Learning from life losses, that step is a true terminal (no bootstrap); playing whole games,
    it is a truncation."""
    from rl_coordconv.envs.atari import AleVecEnv

    actions = random_actions(make_atari_vec_env("Breakout", 1), 3000, seed=1)
    step = first_life_loss_step(actions)
    env = AleVecEnv(
        "Breakout",
        1,
        seed=1,
        max_episode_frames=4 * (step + 1),
        clip_rewards=False,
        terminal_on_life_loss=terminal_on_life_loss,
    )
    previous, score = env.reset(), 0.0
    for t, (obs, rewards, dones, infos) in enumerate(play(env, actions[: step + 1])):  # noqa: B007 (infos: read after the loop)
        score += rewards[0]
        assert dones[0] == (t == step)
        if not dones[0]:
            previous = obs
    info = infos[0]
    assert info["TimeLimit.truncated"] is not terminal_on_life_loss
    assert info["episode"]["r"] == score and info["episode"]["l"] == step + 1
    np.testing.assert_array_equal(info["terminal_observation"][:3], previous[0, 1:])
    assert not obs[0, :3].any() and obs[0, 3].any()  # a new game


def test_a_game_without_lives_ends_cleanly_with_its_score():
    env = make_atari_vec_env("Pong", 1, seed=0, clip_rewards=False)
    env.reset()
    score = 0.0
    for _, rewards, dones, infos in play(env, random_actions(env, 3000)):
        score += rewards[0]
        if dones[0]:
            assert "episode" in infos[0]  # Pong has no lives: every terminal is the end of the game
            assert infos[0]["episode"]["r"] == score
            assert -21 <= score <= -15  # a random player loses 21 points to a few
            assert infos[0]["TimeLimit.truncated"] is False
            return
    pytest.fail("no Pong game ended in 3000 steps")


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_runs_repeat_exactly(backend):
    def rollout(seed):
        env = make_atari_vec_env("MsPacman", 2, seed=seed, backend=backend)
        frames = [env.reset()]
        for obs, _rewards, _dones, _ in play(env, random_actions(env, 200)):
            frames.append(obs)
        env.close()
        return np.stack(frames)

    first = rollout(7)
    np.testing.assert_array_equal(first, rollout(7))
    assert not np.array_equal(first, rollout(8))


def test_evaluation_env_plays_whole_games_without_life_loss_terminals():
    env = make_atari_vec_env("Breakout", 2, seed=4, terminal_on_life_loss=False)
    env.reset()
    games, lives_lost = 0, np.zeros(2, dtype=int)
    for action in random_actions(env, 1500, seed=4):
        lives_before = env._lives.copy()
        _, _, dones, infos = env.step(action)
        lives_lost += env._lives < lives_before  # at a game over the new game's five lives show
        for i in np.flatnonzero(dones):
            assert "episode" in infos[i]
            assert lives_lost[i] == 4  # five lives: four lost during the game, the last ends it
            lives_lost[i] = 0
            games += 1
    assert games >= 2


# The suite as published: ale-py ROM id, random and human scores (Nature DQN / dueling DQN papers).
REFERENCE_SUITE = {
    "MsPacman": ("ms_pacman", 307.3, 6951.6),
    "Alien": ("alien", 227.8, 7127.7),
    "Amidar": ("amidar", 5.8, 1719.5),
    "BankHeist": ("bank_heist", 14.2, 753.1),
    "Seaquest": ("seaquest", 68.4, 42054.7),
    "SpaceInvaders": ("space_invaders", 148.0, 1668.7),
    "Asterix": ("asterix", 210.0, 8503.3),
    "Breakout": ("breakout", 1.7, 30.5),
    "Pong": ("pong", -20.7, 14.6),
}


def test_suite_names_roms_and_human_normalized_scores_match_the_references():
    from ale_py import roms

    assert list(GAMES) == list(REFERENCE_SUITE)
    for name, (rom, random_score, human_score) in REFERENCE_SUITE.items():
        game = GAMES[name]
        assert (game.rom, game.random_score, game.human_score) == (rom, random_score, human_score)
        assert roms.get_rom_path(rom).exists()
        assert game.sb3_env_id == f"{name}NoFrameskip-v4"
        assert game.human_normalized(random_score) == 0.0
        assert game.human_normalized(human_score) == pytest.approx(1.0)
    assert GAMES["MsPacman"].human_normalized(1000.0) == pytest.approx((1000 - 307.3) / (6951.6 - 307.3))
    assert GAMES["Pong"].human_normalized(0.0) == pytest.approx(20.7 / 35.3)


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
    env._agent = np.array([0, 0])
    env._goal = np.array([3, 3])
    results = [env.step(0) for _ in range(3)]  # up, into the wall
    assert [r[3] for r in results] == [False, False, True]


def test_the_emulator_threads_follow_the_cores_the_process_may_use():
    """A run pinned to one core by the sweep steps its emulators on one thread, not on a thread
    per core of the machine (ale-py's own default)."""
    import os
    import subprocess
    import sys

    count_new_threads = (
        "import os, sys; os.sched_setaffinity(0, {int(core) for core in sys.argv[1].split(',')})\n"
        "from rl_coordconv.envs import make_atari_vec_env\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "env = make_atari_vec_env('MsPacman', 8, seed=0)\n"
        "env.reset()\n"
        "print(len(os.listdir('/proc/self/task')) - before)\n"
    )
    cores = sorted(os.sched_getaffinity(0))
    for allowed in ([cores[0]], cores):
        done = subprocess.run(
            [sys.executable, "-c", count_new_threads, ",".join(map(str, allowed))], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.split()[-1]) == min(8, len(allowed)), allowed
