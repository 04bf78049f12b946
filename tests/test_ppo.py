import json

import pytest
from helpers import assert_learns_goal_pixel
from stable_baselines3 import PPO

from rl_coordconv.agents.ppo import PPOConfig, make_ppo
from rl_coordconv.commands import train
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.rundir import latest_checkpoint

TINY_PPO = PPOConfig(n_envs=4, n_steps=32, batch_size=64, n_epochs=4, learning_rate=1e-3)


@pytest.mark.parametrize("arch", ["coordconv"])  # A2C's test covers both archs; PPO's shows the agent learns
def test_ppo_learns_goal_pixel(arch):
    assert_learns_goal_pixel(make_ppo, TINY_PPO, arch, 20_000)


def test_ppo_uses_the_rl_zoo_hyperparameters():
    env = make_atari_vec_env("MsPacman", 8, seed=0)
    model = make_ppo(env, "coordconv", PPOConfig(), seed=0, device="cpu")
    assert (
        model.n_steps,
        model.batch_size,
        model.n_epochs,
        model.gamma,
        model.gae_lambda,
        model.ent_coef,
        model.vf_coef,
        model.max_grad_norm,
    ) == (128, 256, 4, 0.99, 0.95, 0.01, 0.5, 0.5)
    # lin_2.5e-4 and lin_0.1: linear in the progress remaining (1 at the start, 0 at the end).
    for progress, learning_rate, clip_range in ((1.0, 2.5e-4, 0.1), (0.5, 1.25e-4, 0.05), (0.0, 0.0, 0.0)):
        assert model.lr_schedule(progress) == pytest.approx(learning_rate)
        assert model.clip_range(progress) == pytest.approx(clip_range)
    env.close()


def test_bad_ppo_settings_are_refused():
    with pytest.raises(ValueError, match=r"ppo.batch_size \(512\) must be at most a rollout, .* = 256 transitions"):
        PPOConfig(n_envs=2, batch_size=512).validate()
    with pytest.raises(ValueError, match="4 copies but ppo.n_envs is 8"):
        make_ppo(make_atari_vec_env("MsPacman", 4, seed=0), "conv", PPOConfig(), device="cpu")


def test_ppo_trains_resumes_and_evaluates_through_the_train_command(tmp_path):
    settings = [
        "--set",
        "ppo.n_envs=2",
        "--set",
        "ppo.n_steps=64",
        "--set",
        "ppo.batch_size=64",
        "--set",
        "checkpoint_every=256",
        "--set",
        "eval_episodes=1",
        "--runs",
        str(tmp_path),
        "--no-progress",
    ]
    assert train.main(["--agent", "ppo", "--arch", "coordconv", "--timesteps", "512", *settings]) == 0
    run_dir = tmp_path / "MsPacman" / "ppo-coordconv" / "seed0"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["agent"] == "ppo" and saved["config"]["ppo"]["n_steps"] == 64
    assert saved["network"]["conv_layers"] == ["CoordConv2d", "Conv2d", "Conv2d"]
    assert latest_checkpoint(run_dir).name == "model_512_steps.zip"
    assert json.loads((run_dir / "evaluation.json").read_text())["policy"]["description"] == "actions sampled from the policy"
    assert train.main(["--agent", "ppo", "--arch", "coordconv", "--timesteps", "1024", "--resume", *settings]) == 0
    model = PPO.load(latest_checkpoint(run_dir), device="cpu")
    assert model.num_timesteps == 1024 and model._n_updates == 4 * (1024 // 128)  # 4 epochs per rollout of 128
