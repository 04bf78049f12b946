import pytest
from helpers import assert_learns_goal_pixel
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

from rl_coordconv.agents.a2c import A2CConfig, make_a2c
from rl_coordconv.envs import make_atari_vec_env

# Small rollouts (2 envs x 5 steps) give many updates per agent step: the tiny env is learned in
# ~25k steps instead of ~100k with the Atari setting of 16 envs.
TINY_A2C = A2CConfig(n_envs=2, n_steps=5, learning_rate=7e-4)


@pytest.mark.parametrize("arch", ["conv", "coordconv"])
def test_a2c_learns_goal_pixel(arch):
    assert_learns_goal_pixel(make_a2c, TINY_A2C, arch, 30_000)


def test_a2c_uses_the_rl_zoo_hyperparameters():
    env = make_atari_vec_env("MsPacman", 16, seed=0)
    model = make_a2c(env, "coordconv", A2CConfig(), seed=0, device="cpu")
    assert (model.n_steps, model.gamma, model.gae_lambda, model.ent_coef, model.vf_coef, model.max_grad_norm) == (
        5,
        0.99,
        1.0,
        0.01,
        0.25,
        0.5,
    )
    assert model.learning_rate == 7e-4
    optimizer = model.policy.optimizer
    assert isinstance(optimizer, RMSpropTFLike) and optimizer.defaults["eps"] == 1e-5
    env.close()


def test_env_copies_must_match_the_config():
    env = make_atari_vec_env("MsPacman", 4, seed=0)
    with pytest.raises(ValueError, match="4 copies but a2c.n_envs is 16"):
        make_a2c(env, "conv", A2CConfig(), device="cpu")
    env.close()
