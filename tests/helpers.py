"""Helpers shared by the test modules (plain functions; the fixtures live in conftest.py)."""

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rl_coordconv.agents.apex import ApeXConfig
from rl_coordconv.envs import GOAL_PIXEL_ID

# GoalPixel on a 3x3 board: a random walk reaches the goal within 12 steps in about half of the
# episodes, in ~8 steps; an agent that reads both positions needs ~2.
GOAL_PIXEL = {"grid_size": 3, "max_steps": 12}


def goal_pixel_success_rate(model, *, deterministic: bool, episodes: int = 200) -> float:
    """The share of ``episodes`` GoalPixel games (8 envs, seed 1234) in which ``model`` reaches the
    goal: a return above 0.5, as reaching it gives +1 and the shaping sums to less than 0.5."""
    env = make_vec_env(GOAL_PIXEL_ID, n_envs=8, seed=1234, env_kwargs=GOAL_PIXEL)
    returns, _ = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True
    )
    return float(np.mean(np.asarray(returns) > 0.5))


def tiny_apex_config(**changes) -> ApeXConfig:
    """An Ape-X agent small enough to learn GoalPixel in seconds: 4 envs, replay 4,000, batch 32."""
    settings = dict(
        n_envs=4,
        buffer_size=4000,
        learning_starts=400,
        batch_size=32,
        target_update_interval=100,
        learning_rate=1e-3,
        replay_ratio=2.0,
        eval_epsilon=0.0,
    )
    return ApeXConfig(**{**settings, **changes})


def assert_learns_goal_pixel(make, config, arch: str, steps: int) -> None:
    """An on-policy agent ``make(env, arch, config, ...)`` goes from chance (< 0.65) to a success
    rate of at least 0.9 on GoalPixel within ``steps`` agent steps, seed 0."""
    env = make_vec_env(GOAL_PIXEL_ID, n_envs=config.n_envs, seed=0, env_kwargs=GOAL_PIXEL)
    model = make(env, arch, config, seed=0, device="cpu")
    before = goal_pixel_success_rate(model, deterministic=False)
    model.learn(steps)
    after = goal_pixel_success_rate(model, deterministic=False)
    assert before < 0.65
    assert after >= 0.9, f"{arch}: success {before:.2f} -> {after:.2f}"


def written_out_learner_step(policy, batch, max_grad_norm: float) -> tuple[np.ndarray, float, float]:
    """One Ape-X learner step written out, as a reference: double-Q n-step TD errors, the
    importance-weighted Huber loss, a clipped gradient step with the policy's optimizer.
    Returns ``((B,) TD errors, loss, mean Q(s, a))``."""
    rows = torch.arange(len(batch.indices))
    with torch.no_grad():
        next_online, next_target = policy.q_net(batch.next_observations), policy.q_net_target(batch.next_observations)
        bootstrap = next_target[rows, next_online.argmax(dim=1)]
        targets = batch.rewards[:, 0] + batch.discounts[:, 0] * (1 - batch.dones[:, 0]) * bootstrap
    q_taken = policy.q_net(batch.observations)[rows, batch.actions[:, 0]]
    errors = targets - q_taken
    huber = torch.where(errors.abs() < 1, 0.5 * errors**2, errors.abs() - 0.5)
    loss = (batch.weights[:, 0] * huber).mean()
    policy.optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.q_net.parameters(), max_grad_norm)
    policy.optimizer.step()
    return errors.detach().numpy(), loss.item(), q_taken.mean().item()
