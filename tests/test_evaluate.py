import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnvWrapper, VecFrameStack, VecTransposeImage, VecVideoRecorder
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_coordconv import rundir
from rl_coordconv.agents import evaluation, videos
from rl_coordconv.agents.apex import ApeXConfig, make_apex
from rl_coordconv.agents.dqn import DQNConfig, make_dqn
from rl_coordconv.agents.videos import action_saliency, policy_action_scores
from rl_coordconv.commands import evaluate, train
from rl_coordconv.envs import get_game, make_atari_vec_env
from rl_coordconv.envs.atari import AleVecEnv, _make_registered_env

BANNER = 16  # rows above the screen, for the score
SMALL_APEX = ApeXConfig(n_envs=2, buffer_size=2000, learning_starts=200, batch_size=32)
SCREEN = (210, 160, 3)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    argv = [
        "--timesteps",
        "300",
        "--set",
        "a2c.n_envs=2",
        "--set",
        "eval_episodes=0",
        "--set",
        "checkpoint_every=300",
        "--runs",
        str(runs),
        "--no-progress",
    ]
    assert train.main(argv) == 0
    return runs / "MsPacman" / "a2c-conv" / "seed0"


@pytest.fixture
def run_dir(trained_run, tmp_path) -> Path:
    """A copy of the trained run, for one test to write into."""
    return Path(shutil.copytree(trained_run, tmp_path / "seed0"))


class GameRecorder(VecEnvWrapper):
    """Passes an env through and records each finished game: (env index, sum of the rewards the
    env returned, agent steps)."""

    def __init__(self, venv):
        super().__init__(venv)
        self.games = []
        self.sums, self.steps = np.zeros(venv.num_envs), np.zeros(venv.num_envs, dtype=int)

    def reset(self):
        self.sums[:], self.steps[:] = 0, 0
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.sums += rewards
        self.steps += 1
        for i, info in enumerate(infos):
            if "episode" in info:
                self.games.append((i, self.sums[i], self.steps[i]))
                self.sums[i], self.steps[i] = 0, 0
        return obs, rewards, dones, infos


def record_envs(monkeypatch) -> dict[str, list[GameRecorder]]:
    """Wrap every env the command builds in a GameRecorder, listed by backend."""
    made = {"ale_vector": [], "sb3": []}

    def recorded(*args, **kwargs):
        env = GameRecorder(make_atari_vec_env(*args, **kwargs))
        made[kwargs.get("backend", "ale_vector")].append(env)
        return env

    monkeypatch.setattr(evaluation, "make_atari_vec_env", recorded)  # the scored games
    monkeypatch.setattr(videos, "make_atari_vec_env", recorded)  # the videos
    return made


def first_game_per_env(games):
    return [game for index, game in enumerate(games) if game[0] not in [g[0] for g in games[:index]]]


def tensorboard(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def read_video(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [frame for frame in reader]


# The script --------------------------------------------------------------------------------------


def test_evaluation_scores_whole_games_in_raw_points_and_logs_them(run_dir, monkeypatch, capsys):
    made = record_envs(monkeypatch)
    (run_dir / "evaluation.json").write_text("the training's own evaluation")
    assert evaluate.main([str(run_dir), "--episodes", "2", "--no-progress"]) == 0
    result = json.loads((run_dir / "evaluation_300.json").read_text())
    assert (run_dir / "evaluation.json").read_text() == "the training's own evaluation"

    (env,) = made["ale_vector"]
    assert env.num_envs == 2 and not made["sb3"]
    played = first_game_per_env(env.games)  # two envs, one game each, in the order they ended
    assert result["scores"] == [game[1] for game in played]  # raw points summed over the whole game
    assert result["lengths"] == [game[2] for game in played]  # agent steps
    scores = np.array(result["scores"])
    assert all(score > 0 and score % 10 == 0 for score in scores)  # Ms. Pac-Man points, not clipped rewards
    assert (result["episodes"], result["timesteps"], result["backend"]) == (2, 300, "ale_vector")
    assert result["mean_score"] == scores.mean() and result["std_score"] == scores.std()
    assert (result["min_score"], result["max_score"]) == (scores.min(), scores.max())
    assert result["human_normalized_mean"] == pytest.approx((scores.mean() - 307.3) / (6951.6 - 307.3))
    assert result["policy"]["deterministic"] is False and result["policy"]["epsilon"] is None
    assert result["videos"] == [] and not (run_dir / "videos").exists()
    assert (result["agent"], result["arch"], result["game"], result["seed"]) == ("a2c", "conv", "MsPacman", 0 + 10_000)
    assert Path(result["checkpoint"]) == run_dir / "checkpoints" / "model_300_steps.zip"

    events = tensorboard(run_dir)
    for tag, value in [
        ("eval/mean_score", scores.mean()),
        ("eval/std_score", scores.std()),
        ("eval/min_score", scores.min()),
        ("eval/max_score", scores.max()),
        ("eval/human_normalized", result["human_normalized_mean"]),
    ]:
        assert [(event.step, event.value) for event in events.Scalars(tag)] == [(300, pytest.approx(value))]

    capsys.readouterr()
    assert evaluate.main([str(run_dir), "--episodes", "2", "--no-progress"]) == 2
    assert "evaluation_300.json exists" in capsys.readouterr().err
    assert evaluate.main([str(run_dir), "--episodes", "1", "--no-progress", "--overwrite"]) == 0
    assert json.loads((run_dir / "evaluation_300.json").read_text())["episodes"] == 1


def fake_moviepy(monkeypatch, module: str) -> list:
    """Stand-ins for moviepy (not installed here) down to ``module``, which gets a fake
    ``ImageSequenceClip``. Returns the clips made, as (frames, fps)."""
    clips = []

    class ImageSequenceClip:
        def __init__(self, frames, fps):
            clips.append((list(frames), fps))

        def write_videofile(self, path):
            pass

        def write_gif(self, path, **kwargs):
            Path(path).write_bytes(b"GIF89a")  # TensorBoard stores the bytes as they are

    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        if depth > 1:
            setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], sys.modules[name])
    sys.modules[module].ImageSequenceClip = ImageSequenceClip
    return clips


@pytest.mark.parametrize("saliency, moviepy", [(False, False), (True, True)], ids=["plain-stills", "saliency-moviepy"])
def test_video_holds_every_screen_of_the_game_with_the_score(run_dir, monkeypatch, saliency, moviepy):
    made = record_envs(monkeypatch)
    clips = fake_moviepy(monkeypatch, "moviepy.editor") if moviepy else None
    argv = [str(run_dir), "--episodes", "1", "--video", "--video-games", "1", "--no-progress"]
    assert evaluate.main(argv + (["--saliency"] if saliency else [])) == 0

    (video_env,) = made["sb3"]
    (game,) = video_env.games  # the recorded game, a separate one on the sb3 backend
    path = run_dir / "videos" / f"model_300_steps_game1{'_saliency' if saliency else ''}.mp4"
    frames = read_video(path)
    assert len(frames) == game[2] + 1  # the screen after the reset, then one per agent step
    width = 2 * SCREEN[1] if saliency else SCREEN[1]  # the saliency heat map beside the game
    shape = (BANNER + SCREEN[0], width, 3)
    assert {frame.shape for frame in frames} == {shape}

    result = json.loads((run_dir / "evaluation_300.json").read_text())
    assert result["videos"] == [
        {
            "path": str(path),
            "backend": "sb3",
            "score": game[1],
            "agent_steps": game[2],
            "frames": game[2] + 1,
            "saliency": saliency,
        }
    ]
    assert game[1] % 10 == 0 and "not among the scores" in result["videos_note"]

    # The first frame shows the game's first screen (the same seed replays the same start).
    env = make_atari_vec_env(
        "MsPacman",
        1,
        seed=result["seed"],
        backend="sb3",
        render_mode="rgb_array",
        terminal_on_life_loss=False,
        clip_rewards=False,
    )
    env.reset()
    first_screen = env.get_images()[0].astype(float)
    assert np.abs(frames[0][BANNER:, : SCREEN[1]] - first_screen).mean() < 10  # lossy: ~6, ~100 for another image
    assert frames[0][:BANNER].mean() < 60  # the banner: white text on black

    # TensorBoard: the video through SummaryWriter.add_video (moviepy 1.x), else 8 stills.
    images = tensorboard(run_dir).Images("eval/video_game1")
    assert [event.step for event in images] == [300]
    if moviepy:
        ((clip, fps),) = clips
        stride = -(-len(frames) // 300)
        assert len(clip) == len(range(0, len(frames), stride)) and fps == 15 / stride
        assert {frame.shape for frame in clip} == {shape}
    else:
        assert (images[0].height, images[0].width) == (shape[0], 8 * shape[1])  # in a row


def test_saliency_records_videos_and_takes_their_count():
    assert (
        evaluate.parse_args(["run", "--saliency", "--video-games", "3"]).video_games,
        evaluate.parse_args(["run", "--video"]).video_games,
    ) == (3, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "is not a directory"),
        (["{empty}"], "has no config.json: not a run directory"),
        (["{no_checkpoints}"], r"no checkpoint to evaluate in .*checkpoints"),
        (["{run}", "--checkpoint", "model_9_steps.zip"], "--checkpoint model_9_steps.zip: no such file"),
        (["{run}", "--checkpoint", "{run}/config.json"], "not an SB3 checkpoint"),
        (["{run}", "--episodes", "0"], "--episodes must be a whole number >= 1, got '0'"),
        (["{run}", "--episodes", "many"], "--episodes must be a whole number >= 1, got 'many'"),
        (["{run}", "--device", "tpu"], "unknown device 'tpu'"),
        (["{run}", "--device", "meta"], "unknown device 'meta'"),
        (["{run}", "--video-games", "3"], "--video-games 3 applies with --video or --saliency"),
    ],
)
def test_bad_run_directories_and_arguments_get_one_line_errors(trained_run, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_checkpoints").mkdir()
    shutil.copy(trained_run / "config.json", tmp_path / "no_checkpoints")
    names = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "no_checkpoints": tmp_path / "no_checkpoints",
        "run": trained_run,
    }
    assert evaluate.main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err), err
    assert not list(trained_run.glob("evaluation_*.json"))


def test_a_skipped_incomplete_checkpoint_is_one_line_of_warning(run_dir):
    (run_dir / "checkpoints" / "model_900_steps.zip").write_bytes(b"PK\x03\x04 cut short")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_coordconv",
            "evaluate",
            str(run_dir),
            "--episodes",
            "1",
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "not a complete checkpoint" in line]
    assert warned == [
        f"warning: skipping {run_dir / 'checkpoints' / 'model_900_steps.zip'}: not a complete "
        "checkpoint (was the run killed while saving it?)"
    ], done.stderr
    assert "latest_checkpoint" not in done.stderr and "UserWarning" not in done.stderr


@pytest.mark.parametrize("backend", ["ale_vector", "sb3"])
def test_game_lengths_are_agent_steps_on_both_backends(backend):
    """``episode["l"]`` counts emulator frames under SB3's wrappers (4 a step); evaluation records
    agent steps on both backends: here the policy's own count of the steps it was asked for."""
    env = make_atari_vec_env("Breakout", 1, seed=0, backend=backend, terminal_on_life_loss=False, clip_rewards=False)
    calls, ends, rng = [0], [], np.random.default_rng(0)

    def policy(observations):
        calls[0] += 1
        return rng.integers(0, env.action_space.n, size=1)

    games = evaluation.play_full_games(policy, env, 2, on_game=lambda game: ends.append(calls[0]))
    env.close()
    assert [game.length for game in games] == [ends[0], ends[1] - ends[0]] and ends[1] == calls[0]
    assert min(ends[0], ends[1] - ends[0]) > 50  # whole games of five lives, not single lives


def test_each_agent_evaluates_with_its_own_policy(tmp_path):
    env = make_atari_vec_env("MsPacman", 1, seed=0)
    dqn = make_dqn(env, "conv", DQNConfig(buffer_size=100), seed=0, device="cpu")
    dqn.exploration_rate = 0.37  # e.g. a checkpoint saved while the schedule was at 0.37
    dqn.save(tmp_path / "dqn.zip")
    loaded = DQN.load(tmp_path / "dqn.zip", device="cpu")
    assert loaded.exploration_rate == 0.37  # SB3 restores it with the checkpoint, and predict uses it
    assert evaluation.evaluation_policy(loaded, deterministic=False)[1]["epsilon"] == 0.37
    assert evaluation.evaluation_policy(loaded, deterministic=True)[1]["epsilon"] == 0.0
    apex = make_apex(make_atari_vec_env("MsPacman", 2, seed=0), "conv", SMALL_APEX, device="cpu")
    assert evaluation.evaluation_policy(apex, deterministic=False)[1]["epsilon"] == ApeXConfig.eval_epsilon == 0.001
    a2c = A2C("CnnPolicy", env, device="cpu")
    assert evaluation.evaluation_policy(a2c, deterministic=False)[1] == {
        "deterministic": False,
        "epsilon": None,
        "description": "actions sampled from the policy",
    }


def greedy_a2c_actions(policy, observations: np.ndarray) -> np.ndarray:
    """The argmax of the A2C policy's action logits, computed through its layers by hand."""
    with torch.no_grad():
        obs = torch.as_tensor(observations).float() / 255.0
        latent = policy.mlp_extractor.forward_actor(policy.pi_features_extractor(obs))
        return policy.action_net(latent).argmax(dim=1).numpy()


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_deterministic_flag_reaches_the_a2c_policy(run_dir, monkeypatch, deterministic):
    played = []
    real_play = evaluation.play_full_games

    def recording_play(predict, env, episodes, **options):
        def recording_predict(observations):
            actions = predict(observations)
            played.append((observations.copy(), np.asarray(actions).copy()))
            return actions

        return real_play(recording_predict, env, episodes, **options)

    monkeypatch.setattr(evaluation, "play_full_games", recording_play)
    flags = ["--deterministic"] if deterministic else []
    assert evaluate.main([str(run_dir), "--episodes", "1", "--no-progress", *flags]) == 0
    observations = np.concatenate([obs for obs, _ in played])
    actions = np.concatenate([action for _, action in played])
    policy = A2C.load(run_dir / "checkpoints" / "model_300_steps.zip", device="cpu").policy
    greedy = greedy_a2c_actions(policy, observations)
    assert len(actions) > 100
    if deterministic:
        np.testing.assert_array_equal(actions, greedy)
    else:  # sampled: an almost untrained policy spreads its actions over the 9 of Ms. Pac-Man
        assert np.mean(actions != greedy) > 0.5 and len(np.unique(actions)) >= 5


# Saliency ----------------------------------------------------------------------------------------


def observations(n: int = 3) -> np.ndarray:
    """Real stacks from a few random steps of Ms. Pac-Man: (n, 4, 84, 84) uint8."""
    env = make_atari_vec_env("MsPacman", n, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(40):
        obs, *_ = env.step(rng.integers(0, 9, size=n))
    env.close()
    return obs


def reference_saliency(output_of_one, obs: np.ndarray, action: int) -> np.ndarray:
    """|d output[action] / d obs| for one observation, summed over its 4 frames, over its maximum."""
    x = torch.tensor(obs[None], dtype=torch.float32, requires_grad=True)
    output_of_one(x)[0, action].backward()
    saliency = x.grad[0].abs().sum(dim=0)
    return (saliency / saliency.max()).numpy()


def test_saliency_of_the_a2c_policy_is_the_gradient_of_the_chosen_actions_logit(trained_run):
    policy = A2C.load(rundir.latest_checkpoint(trained_run), device="cpu").policy
    obs = observations()

    def logits(x):  # Nature CNN -> policy head, before the softmax: written out from the policy's parts
        return policy.action_net(policy.mlp_extractor.policy_net(policy.features_extractor(x / 255.0)))

    greedy = logits(torch.as_tensor(obs, dtype=torch.float32)).argmax(dim=1).numpy()
    actions = (greedy + np.array([1, 4, 7])) % 9  # not the greedy ones, and one per observation
    saliency = action_saliency(policy_action_scores(policy), obs, actions)
    assert saliency.shape == (3, 84, 84) and saliency.dtype == np.float32
    assert saliency.min() >= 0 and np.allclose(saliency.reshape(3, -1).max(axis=1), 1.0)
    for i in range(3):
        np.testing.assert_allclose(saliency[i], reference_saliency(logits, obs[i], actions[i]), rtol=1e-4, atol=1e-6)


def test_saliency_of_a_q_agent_is_the_gradient_of_the_chosen_actions_q_value():
    env = make_atari_vec_env("MsPacman", 2, seed=0)
    model = make_apex(env, "coordconv", SMALL_APEX, seed=0, device="cpu")
    obs, actions = observations(2), np.array([2, 5])
    saliency = action_saliency(policy_action_scores(model.policy), obs, actions)
    for i in range(2):
        expected = reference_saliency(lambda x: model.q_net(x), obs[i], actions[i])
        np.testing.assert_allclose(saliency[i], expected, rtol=1e-4, atol=1e-6)


def test_saliency_is_zero_where_the_input_cannot_reach_the_output():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3, kernel_size=5, stride=5)  # 16 x 16 windows: pixels 80-83 are never seen
    head = torch.nn.Linear(3 * 16 * 16, 6)

    def network(x):
        return head(conv(x / 255.0).flatten(1))

    obs = np.random.default_rng(1).integers(0, 256, size=(2, 4, 84, 84), dtype=np.uint8)
    saliency = action_saliency(network, obs, np.array([0, 3]))
    assert saliency.shape == (2, 84, 84) and saliency.min() >= 0
    assert not saliency[:, 80:, :].any() and not saliency[:, :, 80:].any()
    assert (saliency[:, :80, :80] > 0).mean() > 0.99
    for i, action in enumerate([0, 3]):
        np.testing.assert_allclose(saliency[i], reference_saliency(network, obs[i], action), rtol=1e-5, atol=1e-7)


# The backends ------------------------------------------------------------------------------------


class GrayscaleScreens(gym.ObservationWrapper):
    """The RGB screen converted to grayscale (OpenCV's weights, ale-py's conversion too) and
    repeated in 3 channels, so that SB3's max-pool acts on grayscale; WarpFrame keeps it exact."""

    def observation(self, observation):
        return np.repeat(cv2.cvtColor(observation, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def sb3_reference(game: str, seed: int, noop_max: int, grayscale_max: bool = False):
    """The "sb3" backend as make_atari_vec_env builds it for evaluation, with other noop starts
    and, optionally, the max-pool in grayscale."""

    def make(**kwargs):
        env = _make_registered_env(get_game(game).sb3_env_id, **kwargs)
        return GrayscaleScreens(env) if grayscale_max else env

    env = make_vec_env(
        make,
        n_envs=1,
        seed=seed,
        wrapper_class=AtariWrapper,
        wrapper_kwargs={"noop_max": noop_max, "terminal_on_life_loss": False, "clip_reward": False},
    )
    return VecTransposeImage(VecFrameStack(env, n_stack=4))


def play_side_by_side(game: str, ale, sb3, steps: int = 3000):
    """One game with the same random actions on both: per step the fraction of pixels that differ
    in the newest frame, the two rewards, and the step where each game ended."""
    first_a, first_b = ale.reset(), sb3.reset()
    rng = np.random.default_rng(0)
    differing, rewards, ends = [np.mean(first_a != first_b)], [], [None, None]
    for step in range(steps):
        actions = rng.integers(0, ale.action_space.n, size=1)
        obs_a, reward_a, done_a, info_a = ale.step(actions)
        obs_b, reward_b, done_b, info_b = sb3.step(actions)
        differing.append(np.mean(obs_a[0, -1] != obs_b[0, -1]))
        rewards.append((reward_a[0], reward_b[0]))
        if done_a[0] or done_b[0]:
            ends = [step if done_a[0] else None, step if done_b[0] else None]
            break
    return np.array(differing), np.array(rewards), ends


def test_backends_play_the_same_game_and_see_it_alike_with_noop_starts_off():
    """With no noop starts the two backends run the same emulation: same rewards, same end of the
    game. With the max-pool also in grayscale their observations are bit-identical; as built, SB3
    pools the RGB screens before the grayscale conversion and a few pixels differ where the two
    pooled screens differ (measured on this game: in 92 % of the frames, 0.4 % of the pixels at the
    median, 1.3 % at most)."""
    ale = AleVecEnv("MsPacman", 1, seed=0, noop_max=0, terminal_on_life_loss=False, clip_rewards=False)
    differing, rewards, ends = play_side_by_side("MsPacman", ale, sb3_reference("MsPacman", 0, 0, grayscale_max=True))
    assert not differing.any()
    assert (rewards[:, 0] == rewards[:, 1]).all() and rewards.sum() > 0
    assert ends[0] is not None and ends[0] == ends[1]

    ale = AleVecEnv("MsPacman", 1, seed=0, noop_max=0, terminal_on_life_loss=False, clip_rewards=False)
    differing, rewards, ends = play_side_by_side("MsPacman", ale, sb3_reference("MsPacman", 0, 0))
    assert differing[0] == 0 and np.median(differing) < 0.01 and differing.max() < 0.02 and (differing > 0).mean() > 0.5
    assert (rewards[:, 0] == rewards[:, 1]).all() and ends[0] is not None and ends[0] == ends[1]


def test_backends_draw_their_noop_starts_from_different_rngs():
    """As make_atari_vec_env builds them (noop starts up to 30), the same seed starts the game at
    other frames: the first observations already differ. Evaluation therefore reports the scores
    of one backend (the run's own) and records videos as separate games on the "sb3" backend."""
    ale = make_atari_vec_env("MsPacman", 1, seed=0, terminal_on_life_loss=False, clip_rewards=False)
    sb3 = make_atari_vec_env("MsPacman", 1, seed=0, backend="sb3", terminal_on_life_loss=False, clip_rewards=False)
    assert not np.array_equal(ale.reset(), sb3.reset())


def observation_of(screens: list[np.ndarray], rgb_max: bool) -> np.ndarray:
    """The newest 84x84 frame from the last two RGB screens, pooled in RGB (SB3) or in grayscale."""
    gray = lambda screen: cv2.cvtColor(screen, cv2.COLOR_RGB2GRAY)  # noqa: E731
    pooled = gray(np.maximum(*screens[-2:])) if rgb_max else np.maximum(*map(gray, screens[-2:]))
    return cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA)


def test_fire_reset_is_one_frame_of_fire_on_ale_vector_and_fire_then_up_on_sb3():
    def screens_after(actions):
        env = _make_registered_env("BreakoutNoFrameskip-v4")
        screens = [env.reset(seed=0)[0]]
        screens += [env.step(action)[0] for action in actions]
        return screens

    ale = AleVecEnv("Breakout", 1, seed=0, noop_max=0, terminal_on_life_loss=False)
    sb3 = sb3_reference("Breakout", 0, noop_max=0)
    first_ale, first_sb3 = ale.reset()[0, -1], sb3.reset()[0, -1]
    np.testing.assert_array_equal(first_ale, observation_of(screens_after([1]), rgb_max=False))
    np.testing.assert_array_equal(first_sb3, observation_of(screens_after([1] * 4 + [2] * 4), rgb_max=True))
    assert not np.array_equal(first_ale, first_sb3)


def test_after_a_life_loss_only_sb3_presses_fire_for_the_agent():
    """SB3's FireResetEnv sits outside EpisodicLifeEnv, so every life-loss reset relaunches the ball;
    ale-py fires only when a game starts, and the agent must relaunch it. Playing NOOP only, SB3's
    Breakout loses its five lives at once; ours loses the first and waits for FIRE."""

    def life_losses_and_game_over(backend: str, steps: int = 1000) -> tuple[int, bool]:
        env = make_atari_vec_env("Breakout", 1, seed=0, backend=backend)
        env.reset()
        losses = 0
        for _ in range(steps):
            _, _, dones, infos = env.step(np.zeros(1, dtype=np.int64))
            if dones[0] and "episode" in infos[0]:
                return losses, True
            losses += int(dones[0])
        return losses, False

    assert life_losses_and_game_over("sb3") == (4, True)  # the fifth loss ends the game
    assert life_losses_and_game_over("ale_vector") == (1, False)


# Frames for SB3's tools --------------------------------------------------------------------------


def test_sb3_backend_renders_screens_that_vec_video_recorder_records(tmp_path, monkeypatch):
    clips = fake_moviepy(monkeypatch, "moviepy.video.io.ImageSequenceClip")
    env = make_atari_vec_env("MsPacman", 1, seed=0, backend="sb3", render_mode="rgb_array")
    assert env.render_mode == "rgb_array"
    recorder = VecVideoRecorder(env, str(tmp_path), record_video_trigger=lambda step: step == 0, video_length=10)
    recorder.reset()
    for _ in range(10):
        recorder.step(np.zeros(1, dtype=np.int64))
    recorder.close()
    ((frames, _),) = clips
    assert len(frames) == 11 and all(frame.shape == SCREEN and frame.dtype == np.uint8 for frame in frames)


def test_sb3_backend_gives_the_last_screen_of_each_game():
    """``terminal_frame`` is the screen the game's ``terminal_observation`` was made from (up to
    the max-pool with the screen before it), not the new game's."""
    env = make_atari_vec_env(
        "MsPacman", 2, seed=0, backend="sb3", render_mode="rgb_array", terminal_on_life_loss=False, clip_rewards=False
    )
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(3000):
        obs, _, dones, infos = env.step(rng.integers(0, 9, size=2))
        for i in np.flatnonzero(dones):
            last = infos[i]["terminal_frame"]
            assert last.shape == SCREEN and last.dtype == np.uint8
            as_observed = cv2.resize(cv2.cvtColor(last, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA)
            assert np.mean(as_observed != infos[i]["terminal_observation"][-1]) < 0.01  # measured: 0.6 %
            assert np.mean(as_observed != obs[i, -1]) > 0.02  # the new game's first frame; measured: 3.1 %
            return
    pytest.fail("no game ended")


def test_ale_vector_backend_says_where_the_frames_are():
    env = make_atari_vec_env("MsPacman", 1, seed=0)
    for call in (env.get_images, env.render):
        with pytest.raises(NotImplementedError, match="backend='sb3', render_mode='rgb_array'"):
            call()
    with pytest.raises(ValueError, match="render_mode='rgb_array': .*no full-colour screens"):
        make_atari_vec_env("MsPacman", 1, render_mode="rgb_array")


def test_videos_and_scored_games_are_seeded_the_run_seed_plus_ten_thousand(run_dir, monkeypatch):
    seeds = {}

    def recorded(*args, **kwargs):
        seeds.setdefault(kwargs.get("backend", "ale_vector"), []).append(kwargs["seed"])
        return make_atari_vec_env(*args, **kwargs)

    monkeypatch.setattr(evaluation, "make_atari_vec_env", recorded)
    monkeypatch.setattr(videos, "make_atari_vec_env", recorded)
    argv = [str(run_dir), "--episodes", "1", "--video", "--video-games", "1", "--no-progress"]
    assert evaluate.main(argv) == 0
    assert seeds == {"ale_vector": [0 + 10_000], "sb3": [0 + 10_000]}  # the run's seed 0


def test_a_checkpoint_named_without_its_folder_is_found_in_the_runs_checkpoints(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the run is
    found = evaluation.resolve_checkpoint(run_dir, "model_300_steps.zip")
    assert found == run_dir / "checkpoints" / "model_300_steps.zip"


def test_a_bf16_run_is_evaluated_in_fp32_where_the_cpu_lacks_bfloat16(run_dir, monkeypatch, capsys):
    from rl_coordconv import precision

    record = json.loads((run_dir / "config.json").read_text())
    record["config"]["precision"] = "bf16"
    (run_dir / "config.json").write_text(json.dumps(record))
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx2"})
    assert evaluation.run_config_for_evaluation(run_dir, "cpu").precision == "fp32"
    assert "Evaluating in fp32 rather than the run's bf16" in capsys.readouterr().out
