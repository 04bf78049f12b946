import copy
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecEnvWrapper
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_coordconv.agents import checkpoints, evaluation, experiment
from rl_coordconv.agents.apex import ApeX
from rl_coordconv.agents.config import apply_overrides, parse_steps
from rl_coordconv.agents.experiment import ExperimentConfig, run_experiment
from rl_coordconv.agents.registry import AGENTS
from rl_coordconv.agents.scores import EpisodeScoreCallback
from rl_coordconv.commands import train
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.extractors import ARCHS
from rl_coordconv.layers import CoordConv2d
from rl_coordconv.rundir import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]

SMALL = ["--set", "a2c.n_envs=2", "--set", "checkpoint_every=1000", "--set", "eval_episodes=1", "--no-progress"]


def scalars(run_dir: Path) -> dict[str, list]:
    accumulator = EventAccumulator(str(run_dir / "tb"))
    accumulator.Reload()
    return {tag: accumulator.Scalars(tag) for tag in accumulator.Tags()["scalars"]}


def small_config(**changes) -> ExperimentConfig:
    settings = {"timesteps": 1000, "checkpoint_every": 500, "eval_episodes": 0, "device": "cpu", **changes}
    config = ExperimentConfig(**settings)
    config.agent_config.n_envs = 2
    config.apex.buffer_size, config.apex.learning_starts, config.apex.batch_size = 2000, 200, 32
    config.dqn.buffer_size, config.dqn.learning_starts = 2000, 200
    return config


def checkpoint_state(path: Path) -> tuple[dict, dict]:
    """The policy and optimizer state dicts inside an SB3 checkpoint, read without SB3's loader."""
    with zipfile.ZipFile(path) as archive:
        return tuple(
            torch.load(io.BytesIO(archive.read(name)), map_location="cpu") for name in ("policy.pth", "policy.optimizer.pth")
        )


def assert_same_state(actual, expected, where="state"):
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), f"{where} differs"
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), f"{where}: keys {set(actual)} != {set(expected)}"
        for key in expected:
            assert_same_state(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: lengths differ"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same_state(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def spy_on_learn(monkeypatch) -> list[tuple[dict, dict]]:
    """Record the policy and optimizer state each time A2C.learn starts."""
    seen = []
    original = A2C.learn

    def learn(self, *args, **kwargs):
        seen.append((copy.deepcopy(self.policy.state_dict()), copy.deepcopy(self.policy.optimizer.state_dict())))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(A2C, "learn", learn)
    return seen


# Where each arch puts CoordConv: (is CoordConv2d, with radius) for the three Nature CNN convs.
PLAIN, COORD, COORD_R = (False, False), (True, False), (True, True)
EXPECTED_CONVS = {
    "conv": [PLAIN, PLAIN, PLAIN],
    "coordconv": [COORD, PLAIN, PLAIN],
    "coordconv_r": [COORD_R, PLAIN, PLAIN],
    "coordconv_all": [COORD, COORD, COORD],
}


def test_every_arch_has_its_expected_layout():
    assert set(EXPECTED_CONVS) == set(ARCHS)


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize("arch", sorted(EXPECTED_CONVS))
def test_every_agent_builds_the_arch_it_is_asked_for(agent, arch):
    config = small_config(agent=agent, arch=arch)
    env = make_atari_vec_env(config.game, config.n_envs, seed=0)
    model = experiment.build_agent(config, env)
    extractors = [module for module in model.policy.modules() if isinstance(module, BaseFeaturesExtractor)]
    assert extractors
    for extractor in extractors:  # the policy's, and a Q agent's target network's
        convs = [layer for layer in extractor.modules() if isinstance(layer, torch.nn.Conv2d)]
        assert [(isinstance(layer, CoordConv2d), getattr(layer, "with_r", False)) for layer in convs] == EXPECTED_CONVS[arch]
        assert (type(extractor) is NatureCNN) == (arch == "conv")
    env.close()


# Coordinate weights per coordinate channel: 32 filters of 8x8, then 64 of 4x4 and 64 of 3x3.
COORDINATE_WEIGHTS = {
    "conv": 0,
    "coordconv": 2 * 32 * 64,
    "coordconv_r": 3 * 32 * 64,
    "coordconv_all": 2 * (32 * 64 + 64 * 16 + 64 * 9),
}


@pytest.mark.parametrize("agent", sorted(AGENTS))
@pytest.mark.parametrize("arch", ["coordconv", "coordconv_r", "coordconv_all"])
def test_archs_differ_from_conv_by_their_coordinate_weights_alone(agent, arch):
    """The heads and everything else are the same network: only the coordinate weights differ."""

    def policy_parameters(arch):
        config = small_config(agent=agent, arch=arch)
        env = make_atari_vec_env(config.game, config.n_envs, seed=0)
        model = experiment.build_agent(config, env)
        env.close()
        extractors = sum(isinstance(m, BaseFeaturesExtractor) for m in model.policy.modules())
        return sum(p.numel() for p in model.policy.parameters()), extractors

    (with_coords, extractors), (plain, _) = policy_parameters(arch), policy_parameters("conv")
    assert with_coords - plain == extractors * COORDINATE_WEIGHTS[arch]


def test_ms_pacman_smoke_run_writes_the_expected_files_and_scalars(tmp_path):
    code = train.main(["--arch", "coordconv", "--timesteps", "3000", "--runs", str(tmp_path), *SMALL])
    assert code == 0
    run_dir = tmp_path / "MsPacman" / "a2c-coordconv" / "seed0"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["arch"] == "coordconv" and saved["config"]["timesteps"] == 3000
    assert saved["config"]["a2c"]["n_envs"] == 2 and saved["config"]["a2c"]["learning_rate"] == 7e-4
    assert saved["resolved_device"] == "cpu"
    assert saved["network"]["features_extractor"] == "CoordConvNatureCNN"
    assert saved["network"]["conv_layers"] == ["CoordConv2d", "Conv2d", "Conv2d"]
    assert {"torch", "stable-baselines3", "ale-py", "gymnasium"} <= set(saved["versions"])
    assert "git_commit" in saved
    assert latest_checkpoint(run_dir).name == "model_3000_steps.zip"
    assert (run_dir / "checkpoints" / "model_1000_steps.zip").exists()
    record = json.loads((run_dir / "evaluation.json").read_text())
    assert record["episodes"] == 1 and record["scores"][0] % 10 == 0
    assert (record["agent"], record["arch"], record["timesteps"]) == ("a2c", "coordconv", 3000)
    assert Path(record["checkpoint"]) == run_dir / "checkpoints" / "model_3000_steps.zip"
    assert record["policy"]["description"] == "actions sampled from the policy"
    tags = scalars(run_dir)
    for tag in (
        "train/value_loss",
        "train/policy_loss",
        "train/entropy_loss",
        "rollout/ep_rew_mean",
        "episode/score",
        "episode/human_normalized",
        "eval/mean_score",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    scores = tags["episode/score"]
    assert all(event.value >= 0 and event.value % 10 == 0 for event in scores)  # raw Ms. Pac-Man points
    assert [e.step for e in scores] == sorted(e.step for e in scores) and scores[-1].step <= 3000


def test_a_run_resumed_off_the_checkpoint_grid_still_checkpoints_at_every_multiple(tmp_path):
    run_dir = run_experiment(small_config(timesteps=700), tmp_path, progress_bar=False)  # stops at 700, off the grid
    run_experiment(small_config(timesteps=1600), tmp_path, resume=True, progress_bar=False)
    saved = sorted(int(path.stem.split("_")[1]) for path in (run_dir / "checkpoints").glob("model_*_steps.zip"))
    assert saved == [500, 700, 1000, 1500, 1600]  # the grid of 500 steps, and where each session ended


def test_existing_run_is_refused_and_resume_continues_the_step_counter(tmp_path):
    config = small_config()
    run_dir = run_experiment(config, tmp_path, progress_bar=False)
    with pytest.raises(FileExistsError, match="--resume"):
        run_experiment(small_config(), tmp_path, progress_bar=False)
    longer = small_config(timesteps=2000)
    run_experiment(longer, tmp_path, resume=True, progress_bar=False)
    assert latest_checkpoint(run_dir).name == "model_2000_steps.zip"
    steps = [event.step for event in scalars(run_dir)["train/value_loss"]]
    assert steps == [1000, 2000]  # one curve across both sessions (SB3 logs every 100 updates)
    assert json.loads((run_dir / "config.json").read_text())["config"]["timesteps"] == 2000


APEX_SMALL = [
    "--set",
    "apex.n_envs=4",
    "--set",
    "apex.buffer_size=4000",
    "--set",
    "apex.learning_starts=400",
    "--set",
    "apex.batch_size=32",
    "--set",
    "checkpoint_every=2000",
    "--set",
    "eval_episodes=1",
    "--no-progress",
]


def test_ape_x_smoke_run_writes_the_expected_files_and_scalars(tmp_path, monkeypatch):
    allocator_calls = []
    monkeypatch.setattr(experiment, "keep_freed_memory", lambda: allocator_calls.append(True))
    code = train.main(["--agent", "apex", "--arch", "coordconv", "--timesteps", "4000", "--runs", str(tmp_path), *APEX_SMALL])
    assert code == 0
    run_dir = tmp_path / "MsPacman" / "apex-coordconv" / "seed0"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["agent"] == "apex" and saved["config"]["apex"]["n_envs"] == 4
    assert saved["network"]["features_extractor"] == "CoordConvNatureCNN"
    assert saved["network"]["conv_layers"] == ["CoordConv2d", "Conv2d", "Conv2d"]
    assert latest_checkpoint(run_dir).name == "model_4000_steps.zip"
    assert sorted(path.name for path in (run_dir / "checkpoints").glob("replay_*")) == ["replay_4000_steps.npz"]
    record = json.loads((run_dir / "evaluation.json").read_text())
    assert record["episodes"] == 1 and record["scores"][0] % 10 == 0
    tags = scalars(run_dir)
    for tag in (
        "episode/score",
        "train/loss",
        "train/mean_q",
        "train/mean_abs_td",
        "train/is_weight_min",
        "train/learner_steps",
        "replay/size",
        "replay/fill",
        "replay/priority_max",
        "replay/priority_mean",
        "time/fps",
        "time/learner_updates_per_s",
        "eval/mean_score",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    bands = {
        tag: tags[tag] for tag in ("episode/score_exploratory", "episode/score_middle", "episode/score_greedy") if tag in tags
    }
    assert bands and sum(len(events) for events in bands.values()) == len(tags["episode/score"])  # each game once
    # One batch of 32 per 32 transitions after step 416, when the replay first held learning_starts.
    assert max(event.value for event in tags["train/learner_steps"]) == (4000 - 416) // 32
    assert max(event.value for event in tags["replay/size"]) <= 4000
    assert allocator_calls == [True]  # the training process keeps freed batch-sized memory for reuse


def test_ape_x_trains_on_the_sb3_reference_backend(tmp_path):
    """SB3's VecFrameStack gives the shifting frame stacks the frame-lean replay stores."""
    argv = ["--agent", "apex", "--backend", "sb3", "--timesteps", "1200", "--runs", str(tmp_path), *APEX_SMALL]
    assert train.main([*argv, "--set", "eval_episodes=0"]) == 0
    tags = scalars(tmp_path / "MsPacman" / "apex-conv" / "seed0")
    assert max(event.value for event in tags["train/learner_steps"]) > 0


def test_sb3_dqn_uses_the_rl_zoo_hyperparameters():
    env = make_atari_vec_env("MsPacman", 1, seed=0)
    config = ExperimentConfig(agent="dqn")
    config.dqn.buffer_size = 1000  # only the allocation is smaller than rl-zoo3's 100k
    model = experiment.build_agent(config, env)
    assert (model.learning_starts, model.batch_size, model.learning_rate, model.gamma) == (100_000, 32, 1e-4, 0.99)
    assert (model.target_update_interval, model.train_freq.frequency, model.gradient_steps) == (1000, 4, 1)
    assert (model.exploration_fraction, model.exploration_initial_eps, model.exploration_final_eps) == (0.1, 1.0, 0.01)
    assert model.policy.net_args["net_arch"] == [] and isinstance(model.policy.optimizer, torch.optim.Adam)
    assert model.replay_buffer.handle_timeout_termination is True and model.seed == config.seed == 0
    config.dqn.optimize_memory_usage, config.seed = True, 7
    model = experiment.build_agent(config, env)
    assert model.replay_buffer.handle_timeout_termination is False and model.optimize_memory_usage and model.seed == 7
    env.close()


def test_sb3_dqn_reference_runs(tmp_path):
    small = ["--set", "dqn.buffer_size=2000", "--set", "dqn.learning_starts=500", "--set", "eval_episodes=0", "--no-progress"]
    assert train.main(["--agent", "dqn", "--timesteps", "1500", "--runs", str(tmp_path), *small]) == 0
    run_dir = tmp_path / "MsPacman" / "dqn-conv" / "seed0"
    assert json.loads((run_dir / "config.json").read_text())["config"]["dqn"]["learning_rate"] == 1e-4
    assert latest_checkpoint(run_dir).name == "model_1500_steps.zip"
    assert "train/loss" in scalars(run_dir)


def spy_on_apex(monkeypatch) -> list[dict]:
    """Record the step counters and the replay when ApeX.learn starts and ends."""
    seen = []
    original = ApeX.learn

    def state(model):
        replay = model.replay_buffer
        return {
            "steps": model.num_timesteps,
            "learner_steps": model.learner_steps,
            "replay": replay.size(),
            "tree_total": replay.tree.total,
            "frames_added": replay.frame_rings.written.tolist(),
        }

    def learn(self, *args, **kwargs):
        seen.append(state(self))
        result = original(self, *args, **kwargs)
        seen.append(state(self))
        return result

    monkeypatch.setattr(ApeX, "learn", learn)
    return seen


def test_ape_x_resume_continues_the_step_counters_and_the_replay(tmp_path, monkeypatch):
    seen = spy_on_apex(monkeypatch)
    replay_steps = []
    save_replay = checkpoints.save_replay

    def recorded_save_replay(model, run_dir):
        replay_steps.append(model.num_timesteps)
        return save_replay(model, run_dir)

    monkeypatch.setattr(checkpoints, "save_replay", recorded_save_replay)
    config = small_config(agent="apex", timesteps=1200, checkpoint_every=600)
    run_dir = run_experiment(config, tmp_path, progress_bar=False)
    ended = seen[-1]
    assert ended["learner_steps"] > 0 and ended["replay"] > 0
    run_experiment(small_config(agent="apex", timesteps=1800, checkpoint_every=600), tmp_path, resume=True, progress_bar=False)
    assert seen[2] == ended  # the resumed learn starts where the first one ended
    assert seen[3]["learner_steps"] > ended["learner_steps"] and seen[3]["steps"] == 1800
    assert [path.name for path in (run_dir / "checkpoints").glob("replay_*")] == ["replay_1800_steps.npz"]
    checkpoint_steps = sorted(int(path.stem.split("_")[1]) for path in (run_dir / "checkpoints").glob("model_*.zip"))
    assert (
        checkpoint_steps == [600, 1200, 1800] and sorted(set(replay_steps)) == checkpoint_steps
    )  # each replay beside its model


def test_ape_x_resume_without_its_replay_says_so_and_refills_it(tmp_path, monkeypatch):
    seen = spy_on_apex(monkeypatch)
    run_dir = run_experiment(small_config(agent="apex", timesteps=1200), tmp_path, progress_bar=False)
    for path in (run_dir / "checkpoints").glob("replay_*"):
        path.unlink()
    with pytest.warns(UserWarning, match="resumes with an empty replay buffer"):
        run_experiment(small_config(agent="apex", timesteps=1800), tmp_path, resume=True, progress_bar=False)
    assert seen[2]["replay"] == 0 and seen[2]["learner_steps"] == seen[1]["learner_steps"]
    assert seen[3]["replay"] > 0


def test_ctrl_c_pressed_again_while_saving_never_parts_a_model_from_its_replay(tmp_path, monkeypatch):
    """A Ctrl-C that lands while the replay is written (which prunes the replay before it) must
    wait until the model beside it is written too, also while the first Ctrl-C's checkpoint is saved."""
    save_replay_buffer = ApeX.save_replay_buffer

    def save_replay_buffer_then_ctrl_c(self, path):
        save_replay_buffer(self, path)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ApeX, "save_replay_buffer", save_replay_buffer_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(small_config(agent="apex", timesteps=1200, checkpoint_every=600), tmp_path, progress_bar=False)
    folder = experiment.run_directory(tmp_path, small_config(agent="apex")) / "checkpoints"
    assert sorted(path.name for path in folder.iterdir()) == ["model_600_steps.zip", "replay_600_steps.npz"]


class GameRecorder(VecEnvWrapper):
    """Passes an AleVecEnv through and records, per finished game, the sum of the rewards the env
    returned, the info's score and the lives lost during the game."""

    def __init__(self, venv):
        super().__init__(venv)
        self.games = []  # (env index, reward sum, info["episode"]["r"], lives lost), in order of ending
        self.sums = np.zeros(venv.num_envs)
        self.lives_lost = np.zeros(venv.num_envs, dtype=int)

    def reset(self):
        self.sums[:] = 0
        self.lives_lost[:] = 0
        return self.venv.reset()

    def step_wait(self):
        lives_before = self.venv._lives.copy()
        obs, rewards, dones, infos = self.venv.step_wait()
        self.sums += rewards
        self.lives_lost += self.venv._lives < lives_before
        for i, info in enumerate(infos):
            if "episode" in info:
                self.games.append((i, self.sums[i], info["episode"]["r"], self.lives_lost[i]))
                self.sums[i] = 0
                self.lives_lost[i] = 0
        return obs, rewards, dones, infos


def test_evaluation_scores_are_whole_games_in_raw_points(tmp_path, monkeypatch):
    envs_made = []

    def recorded_env(*args, **kwargs):
        envs_made.append(GameRecorder(make_atari_vec_env(*args, **kwargs)))
        return envs_made[-1]

    monkeypatch.setattr(evaluation, "make_atari_vec_env", recorded_env)
    run_dir = run_experiment(small_config(timesteps=100, eval_episodes=2), tmp_path, progress_bar=False)
    record = json.loads((run_dir / "evaluation.json").read_text())
    games = envs_made[-1].games
    # Two eval envs, one game each: the first game that ended in each env.
    first_per_env = [game for index, game in enumerate(games) if game[0] not in [g[0] for g in games[:index]]]
    assert record["scores"] == [game[1] for game in first_per_env] == [game[2] for game in first_per_env]
    assert all(score > 0 and score % 10 == 0 for score in record["scores"])  # raw Ms. Pac-Man points
    assert all(game[3] >= 2 for game in first_per_env)  # each game spans all three lives


def test_evaluation_samples_the_agents_stochastic_policy(tmp_path, monkeypatch):
    modes = []
    predict = A2C.predict

    def recorded_predict(self, observation, state=None, episode_start=None, deterministic=False):
        modes.append(deterministic)
        return predict(self, observation, state, episode_start, deterministic)

    monkeypatch.setattr(A2C, "predict", recorded_predict)
    run_experiment(small_config(timesteps=100, eval_episodes=1), tmp_path, progress_bar=False)
    assert modes and not any(modes)


class GamesAtTwoPaces:
    """Two envs: env 0 ends a game (score 1) every step, env 1 (score 10) every 10 steps."""

    num_envs = 2

    def __init__(self):
        self.steps = 0

    def reset(self):
        return np.zeros((2, 1))

    def step(self, actions):
        self.steps += 1
        infos = [{"episode": {"r": 1.0, "l": 1}}, {"episode": {"r": 10.0, "l": 10}} if self.steps % 10 == 0 else {}]
        return np.zeros((2, 1)), np.zeros(2), np.array([True, self.steps % 10 == 0]), infos


def test_evaluation_takes_its_games_evenly_from_the_envs():
    from rl_coordconv.agents.evaluation import play_full_games

    games = play_full_games(lambda obs: np.zeros(2, dtype=int), GamesAtTwoPaces(), n_games=4)
    assert sorted(game.score for game in games) == [1.0, 1.0, 10.0, 10.0]


def test_resume_restores_the_weights_and_optimizer_state_of_the_checkpoint(tmp_path, monkeypatch):
    run_dir = run_experiment(small_config(), tmp_path, progress_bar=False)
    checkpoint = latest_checkpoint(run_dir)
    seen = spy_on_learn(monkeypatch)
    run_experiment(small_config(timesteps=1500), tmp_path, resume=True, progress_bar=False)
    policy, optimizer = checkpoint_state(checkpoint)
    assert optimizer["state"], "the checkpoint should hold RMSprop statistics after 100 updates"
    assert_same_state(seen[0][0], policy, "policy")
    assert_same_state(seen[0][1], optimizer, "optimizer")


def test_same_seed_same_parameters_other_seed_other_parameters(tmp_path):
    def parameters_after_training(seed, folder):
        run_dir = run_experiment(small_config(seed=seed, timesteps=300), tmp_path / folder, progress_bar=False)
        return checkpoint_state(latest_checkpoint(run_dir))[0]

    first = parameters_after_training(0, "a")
    assert_same_state(parameters_after_training(0, "b"), first, "policy")
    other = parameters_after_training(1, "c")
    assert not all(torch.equal(other[name], first[name]) for name in first)


def test_a_killed_run_resumes_and_tensorboard_drops_what_it_logged_after_its_checkpoint(tmp_path):
    """kill -9 between checkpoints, then --resume: the events the dead process wrote after its last
    checkpoint are purged, so TensorBoard draws no step twice."""
    overrides = ["--set", "a2c.n_envs=2", "--set", "checkpoint_every=700", "--set", "eval_episodes=0"]
    process = subprocess.Popen(
        [sys.executable, "scripts/train.py", "--timesteps", "1M", "--runs", str(tmp_path), "--no-progress", *overrides],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run_dir = tmp_path / "MsPacman" / "a2c-conv" / "seed0"
    accumulator = EventAccumulator(str(run_dir / "tb"))

    def logged_after_last_checkpoint():
        if not (run_dir / "tb").exists():
            return []
        try:
            with warnings.catch_warnings():  # a checkpoint being written is not complete yet
                warnings.simplefilter("ignore")
                step = int(latest_checkpoint(run_dir).stem.split("_")[1])
        except FileNotFoundError:
            return []
        accumulator.Reload()
        return [
            (tag, event.step, event.wall_time)
            for tag in accumulator.Tags()["scalars"]
            for event in accumulator.Scalars(tag)
            if event.step > step
        ]

    deadline = time.time() + 180
    try:
        while not logged_after_last_checkpoint():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.time() < deadline, "the run logged nothing past a checkpoint in time"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    orphans = logged_after_last_checkpoint()
    assert orphans, "the killed process should have logged past its last checkpoint"
    checkpoint_step = int(latest_checkpoint(run_dir).stem.split("_")[1])

    config = small_config(timesteps=checkpoint_step + 1000, checkpoint_every=700, device="auto")
    run_experiment(config, tmp_path, resume=True, progress_bar=False)
    events = scalars(run_dir)
    kept = {(tag, event.step, event.wall_time) for tag, tag_events in events.items() for event in tag_events}
    assert not kept & set(orphans)
    for tag, tag_events in events.items():
        steps = [event.step for event in tag_events]
        assert steps == sorted(steps), f"{tag} goes back in steps: {steps}"
    assert max(event.step for event in events["train/value_loss"]) == checkpoint_step + 1000


def test_resume_with_different_settings_is_refused(tmp_path):
    run_experiment(small_config(), tmp_path, progress_bar=False)
    changed = small_config(timesteps=2000)
    changed.a2c.learning_rate = 1e-3
    with pytest.raises(ValueError, match="differ from the saved run.*a2c"):
        run_experiment(changed, tmp_path, resume=True, progress_bar=False)


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path):
    run_dir = run_experiment(small_config(), tmp_path, progress_bar=False)
    complete = latest_checkpoint(run_dir)
    (run_dir / "checkpoints" / "model_1500_steps.zip").write_bytes(complete.read_bytes()[:5000])
    with pytest.warns(UserWarning, match="model_1500_steps.zip: not a complete checkpoint"):
        assert latest_checkpoint(run_dir) == complete


def ignore_ctrl_c() -> None:
    """In a child before exec: SIGINT ignored, as a script's ``nohup ... &`` starts it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_background_run_stops_on_ctrl_c_or_kill_with_a_checkpoint(tmp_path, signum):
    """Started the way a shell starts a background job (SIGINT ignored), a run still stops
    gracefully on Ctrl-C and on ``kill``: checkpoint, message, exit 130."""
    overrides = ["--set", "a2c.n_envs=2", "--set", "checkpoint_every=200", "--set", "eval_episodes=0"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rl_coordconv",
            "train",
            "--timesteps",
            "1M",
            "--runs",
            str(tmp_path),
            "--no-progress",
            *overrides,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_ctrl_c,
    )
    first_checkpoint = tmp_path / "MsPacman" / "a2c-conv" / "seed0" / "checkpoints" / "model_200_steps.zip"
    deadline = time.monotonic() + 180
    try:
        while not first_checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signum)
        output = process.communicate(timeout=60)[0]
    finally:
        process.kill()
    assert process.returncode == 130, output[-3000:]
    stopped_at = int(re.search(r"Interrupted at ([\d,]+) steps; saved", output)[1].replace(",", ""))
    assert stopped_at >= 200
    assert latest_checkpoint(first_checkpoint.parents[1]).name == f"model_{stopped_at}_steps.zip"


def test_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_experiment(small_config(), tmp_path, resume=True, progress_bar=False)


def test_ctrl_c_saves_a_checkpoint_that_resumes_with_its_weights_and_optimizer(tmp_path, monkeypatch):
    def interrupt_at_600_steps(self):
        if self.num_timesteps >= 600:
            raise KeyboardInterrupt
        return True

    with monkeypatch.context() as patch:
        patch.setattr(EpisodeScoreCallback, "_on_step", interrupt_at_600_steps)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(small_config(), tmp_path, progress_bar=False)
    run_dir = experiment.run_directory(tmp_path, small_config())
    assert latest_checkpoint(run_dir).name == "model_600_steps.zip"
    seen = spy_on_learn(monkeypatch)
    run_experiment(small_config(), tmp_path, resume=True, progress_bar=False)
    policy, optimizer = checkpoint_state(run_dir / "checkpoints" / "model_600_steps.zip")
    assert_same_state(seen[0][0], policy, "policy")
    assert_same_state(seen[0][1], optimizer, "optimizer")
    assert latest_checkpoint(run_dir).name == "model_1000_steps.zip"


def test_ctrl_c_while_a_checkpoint_is_written_still_leaves_a_complete_checkpoint(tmp_path, monkeypatch, capsys):
    """A SIGINT that lands while torch writes a periodic checkpoint into SB3's zip (the zip's
    write callback raises KeyboardInterrupt there, and torch turns it into 'RuntimeError: unexpected
    pos') must neither lose the interrupt nor leave half a checkpoint."""
    real_write = zipfile._ZipWriteFile.write
    writes = []

    def write_then_ctrl_c(self, data):
        writes.append(len(data))
        if len(writes) == 3:  # inside the first checkpoint's policy.pth, as a Ctrl-C would land
            os.kill(os.getpid(), signal.SIGINT)
        return real_write(self, data)

    monkeypatch.setattr(zipfile._ZipWriteFile, "write", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(small_config(), tmp_path, progress_bar=False)
    monkeypatch.undo()
    run_dir = experiment.run_directory(tmp_path, small_config())
    assert "Interrupted at 500 steps; saved" in capsys.readouterr().out
    assert [path.name for path in (run_dir / "checkpoints").iterdir()] == ["model_500_steps.zip"]  # no partial file
    assert A2C.load(run_dir / "checkpoints" / "model_500_steps.zip", device="cpu").num_timesteps == 500
    run_experiment(small_config(), tmp_path, resume=True, progress_bar=False)
    assert latest_checkpoint(run_dir).name == "model_1000_steps.zip"


def test_demo_trains_both_archs_and_ends_with_the_comparison_report(tmp_path, capsys):
    from rl_coordconv.commands import demo

    assert demo.main(["--timesteps", "2000", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (root,) = tmp_path.iterdir()
    assert sorted(path.name for path in (root / "MsPacman").iterdir()) == ["a2c-conv", "a2c-coordconv"]
    rows = (root / "report" / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("game,agent,arch,seeds,steps") and len(rows) == 3
    assert f"Curves:      {root / 'report' / 'curves.png'}" in out and (root / "report" / "curves.png").stat().st_size > 0
    assert f"tensorboard --logdir {root / 'report' / 'tensorboard'}" in out
    assert "comparing eval/mean_score instead" in out  # 2000 steps over 16 envs finish no game


def test_a_demo_started_in_the_background_still_stops_on_ctrl_c(tmp_path, monkeypatch):
    """``nohup make demo &`` starts the demo with SIGINT ignored; Ctrl-C must stop it all the same."""
    from rl_coordconv.commands import demo

    def a_run_cut_short_by_ctrl_c(config, root):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the demo ran on past a Ctrl-C")

    monkeypatch.setattr(demo, "run_experiment", a_run_cut_short_by_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert demo.main(["--timesteps", "2000", "--runs", str(tmp_path)]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--game", "Pacman"], "invalid choice: 'Pacman'"),
        (["--arch", "coord"], "invalid choice: 'coord'"),
        (["--timesteps", "lots"], "cannot read a step count from 'lots'"),
        (["--set", "a2c.n_env=8"], "unknown setting 'a2c.n_env'; settings are: .*a2c.n_envs"),
        (["--set", "a2c.learning_rate=fast"], "a2c.learning_rate='fast' is not a valid float"),
        (["--device", "tpu"], "tpu"),
        (["--device", "mps"], r"unknown device 'mps'; use auto, cpu, cuda or cuda:<index>"),
        (["--seed", "5000000000"], r"seed must be in \[0, 1000000\], got 5000000000"),
        (["--set", "a2c.n_envs=-4"], r"a2c.n_envs must be in \[1, inf\), got -4"),
        (["--set", "a2c.learning_rate=nan"], r"a2c.learning_rate must be in \(0, inf\), got nan"),
        (["--set", "a2c.learning_rate=inf"], r"a2c.learning_rate must be in \(0, inf\), got inf"),
        (["--agent", "ppo", "--set", "a2c.n_envs=8"], "'a2c.n_envs=8': a setting of a2c, which does not run here"),
        *[
            (["--set", f"{key}={value}"], f"'{key}={value}': use --{key} for the {key}")
            for key, value in (
                ("game", "Pong"),
                ("agent", "ppo"),
                ("arch", "conv"),
                ("seed", "3"),
                ("timesteps", "5"),
                ("device", "cpu"),
                ("backend", "sb3"),
            )
        ],
    ],
)
def test_bad_command_lines_get_clear_errors(argv, message, capsys, tmp_path, monkeypatch):
    def training_started(*args, **kwargs):
        raise AssertionError(f"{argv} was accepted and training started")

    monkeypatch.setattr(train, "run_experiment", training_started)
    try:
        code = train.main([*argv, "--runs", str(tmp_path)])
    except SystemExit as exit_:  # argparse choices
        code = exit_.code
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # refused before the run directory is made


def test_step_counts_and_overrides():
    assert [parse_steps(s) for s in ("10M", "250k", "1e6", "5000", "2.5M")] == [
        10_000_000,
        250_000,
        1_000_000,
        5000,
        2_500_000,
    ]
    config = ExperimentConfig()
    apply_overrides(config, ["a2c.n_envs=8", "checkpoint_every=100k", "a2c.ent_coef=0.02", "backend=sb3"])
    assert (config.a2c.n_envs, config.checkpoint_every, config.a2c.ent_coef, config.backend) == (8, 100_000, 0.02, "sb3")
    apply_overrides(config, ["a2c.n_envs=-4", "a2c.learning_rate=-1e-3"])  # read with the sign, refused by validate()
    assert (config.a2c.n_envs, config.a2c.learning_rate) == (-4, -1e-3)
