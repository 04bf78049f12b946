import numpy as np
import pytest
import torch
from helpers import GOAL_PIXEL, goal_pixel_success_rate, tiny_apex_config, written_out_learner_step
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from rl_coordconv.agents import apex
from rl_coordconv.agents.apex import (
    ApeX,
    ApeXConfig,
    EpsilonGreedy,
    act,
    double_q_targets,
    dueling_q_values,
    epsilon_band,
    epsilon_ladder,
    learner_step,
    make_apex,
)
from rl_coordconv.agents.rate_limiter import SampleToInsertRatio
from rl_coordconv.agents.replay import to_device
from rl_coordconv.envs import GOAL_PIXEL_ID


def test_epsilon_ladder_is_ape_x_formula():
    # eps_i = 0.4 ** (1 + 7 * i / (N - 1)): with N = 8 the exponents are 1 .. 8.
    np.testing.assert_allclose(epsilon_ladder(8), [0.4**k for k in range(1, 9)], rtol=1e-12)
    ladder = epsilon_ladder(32)
    assert ladder[0] == pytest.approx(0.4) and ladder[-1] == pytest.approx(0.4**8)
    assert np.all(np.diff(ladder) < 0)
    np.testing.assert_allclose(ladder[16], 0.4 ** (1 + 7 * 16 / 31))
    assert epsilon_ladder(1).tolist() == [0.4]
    with pytest.raises(ValueError, match="at least one actor, got 0"):
        epsilon_ladder(0)


def test_epsilon_bands_split_the_ladder_in_thirds():
    assert [epsilon_band(i, 9) for i in range(9)] == ["exploratory"] * 3 + ["middle"] * 3 + ["greedy"] * 3
    assert epsilon_band(0, 32) == "exploratory" and epsilon_band(31, 32) == "greedy"


def test_each_env_explores_with_its_own_epsilon():
    acting = EpsilonGreedy(np.array([0.0, 0.25, 1.0]), n_actions=4, seed=0)
    greedy = np.array([3, 3, 3])
    actions = np.stack([acting.act(greedy) for _ in range(20_000)])
    assert np.all(actions[:, 0] == 3)  # epsilon 0: always greedy
    # A random action is greedy by chance 1 time in 4: P(not greedy) = eps * 3/4.
    assert np.mean(actions[:, 1] != 3) == pytest.approx(0.25 * 0.75, abs=0.01)
    assert np.bincount(actions[:, 2], minlength=4) / 20_000 == pytest.approx([0.25] * 4, abs=0.015)


def test_actors_draw_their_exploration_independently():
    # With a shared draw both envs would explore together half the time; independently a quarter.
    acting = EpsilonGreedy(np.array([0.5, 0.5]), n_actions=10_000, seed=0)
    actions = np.stack([acting.act(np.array([0, 0])) for _ in range(20_000)])
    assert np.mean((actions != 0).all(axis=1)) == pytest.approx(0.25, abs=0.015)


def test_dueling_aggregation_by_hand():
    value = torch.tensor([[1.0], [2.0]])
    advantage = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])  # means 2 and 1
    expected = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0]])
    torch.testing.assert_close(dueling_q_values(value, advantage), expected)


@pytest.mark.parametrize("arch", ["conv", "coordconv"])
def test_dueling_network_scales_uint8_frames_as_sb3_does(arch):
    # Our network reads uint8 stacks through its own (channels-last) scaling: the Q-values and
    # their gradients must be SB3's obs.float() / 255 path's.
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import preprocess_obs

    from rl_coordconv.extractors import policy_kwargs_for

    space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    q_net = apex.DuelingCnnPolicy(space, spaces.Discrete(5), lambda _: 1e-3, **policy_kwargs_for(arch)).q_net
    obs = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8)
    q_values = q_net(obs)
    features = q_net.features_extractor(preprocess_obs(obs, space))
    expected = dueling_q_values(q_net.value_net(features), q_net.q_net(features))
    torch.testing.assert_close(q_values, expected, rtol=1e-5, atol=1e-6)
    first_layer = q_net.features_extractor.cnn[0].weight
    gradient = torch.autograd.grad(q_values.square().sum(), first_layer)[0]
    expected_gradient = torch.autograd.grad(expected.square().sum(), first_layer)[0]
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-6)


def test_double_q_target_by_hand():
    next_online = torch.tensor([[1.0, 5.0, 2.0], [3.0, 1.0, 0.0]])  # argmax: 1 and 0
    next_target = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])  # max would be 30 and 60
    rewards, discounts, dones = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.99**2], [0.99]]), torch.tensor([[0.0], [1.0]])
    targets = double_q_targets(rewards, discounts, dones, next_online, next_target)
    torch.testing.assert_close(targets, torch.tensor([[1.0 + 0.9801 * 20.0], [2.0]]))


def test_the_replay_ratio_counts_batches_from_when_the_replay_is_ready():
    limiter = SampleToInsertRatio(samples_per_insert=8.0, batch_size=512, min_size_to_sample=1000)
    assert not limiter.start(inserted=960, replay_size=900, learner_batches=0)
    with pytest.raises(RuntimeError, match="not counting yet"):
        limiter.batches_allowed(960)
    assert limiter.start(inserted=992, replay_size=1000, learner_batches=7)  # e.g. resumed at 7 batches
    assert limiter.start(inserted=2000, replay_size=100, learner_batches=9)  # counts on, from where it began
    # 32 envs: 8 * 32 / 512 = half a batch per step.
    assert [limiter.batches_due(992 + 32 * k, 7) for k in range(5)] == [0, 0, 1, 1, 2]
    assert limiter.batches_due(992 + 32 * 4, 9) == 0
    assert limiter.batches_allowed(992 + 640) == 7 + 10
    # 20 envs, batches of 32, ratio 1: 5 batches per 8 steps, which no whole train_freq gives.
    odd = SampleToInsertRatio(1.0, 32, 0)
    odd.start(0, 0, 0)
    assert [odd.batches_due(20 * k, 0) for k in range(1, 9)] == [0, 1, 1, 2, 3, 3, 4, 5]
    with pytest.raises(ValueError, match="samples_per_insert > 0"):
        SampleToInsertRatio(0.0, 32, 0)


def goal_pixel_apex(arch="conv", seed=0, device="cpu", **changes) -> ApeX:
    config = tiny_apex_config(**changes)
    env = make_vec_env(GOAL_PIXEL_ID, n_envs=config.n_envs, seed=seed, env_kwargs=GOAL_PIXEL)
    return make_apex(env, arch, config, seed=seed, device=device)


def test_ape_x_defaults_reach_the_model():
    model = goal_pixel_apex(
        **{
            name: getattr(ApeXConfig(), name)
            for name in (
                "learning_starts",
                "batch_size",
                "target_update_interval",
                "learning_rate",
                "replay_ratio",
                "eval_epsilon",
            )
        },
        buffer_size=200_000,
    )
    assert (model.batch_size, model.learning_starts, model.target_update_interval, model.gamma) == (512, 50_000, 2500, 0.99)
    assert (model.max_grad_norm, model.eval_epsilon) == (40.0, 0.001)
    optimizer = model.policy.optimizer
    assert type(optimizer).__name__ == "RMSpropTFLike"
    assert optimizer.defaults["centered"] and optimizer.defaults["alpha"] == 0.95 and optimizer.defaults["eps"] == 1.5e-7
    assert optimizer.defaults["lr"] == pytest.approx(0.00025 / 4)
    replay = model.replay_buffer
    assert (replay.n_steps, replay.alpha, replay.beta, replay.priority_eps, replay.gamma) == (3, 0.6, 0.4, 1e-6, 0.99)
    np.testing.assert_allclose(model.acting.epsilons, epsilon_ladder(4))


class ReplaySizes(BaseCallback):
    """(agent steps, valid transitions) after each vectorized step's add, before the learner's turn."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.seen.append((self.model.num_timesteps, self.model.replay_buffer.size()))


def test_the_learner_waits_for_learning_starts_valid_transitions_then_keeps_the_replay_ratio():
    model = goal_pixel_apex(n_envs=3, replay_ratio=1.0)  # learning_starts 400, batches of 32: 3/32 batch a step
    model.learn(201)
    assert model.replay_buffer.size() < 400
    model.train(gradient_steps=1, batch_size=32)  # as a resumed run whose replay was not saved
    assert model.learner_steps == 0
    sizes = ReplaySizes()
    model.learn(999, reset_num_timesteps=False, callback=sizes)
    ready = next(steps for steps, size in sizes.seen if size >= 400)
    assert 400 < ready < 600 and model.num_timesteps == 1200
    assert model.learner_steps == (1200 - ready) // 32  # one batch of 32 per 32 transitions from there


def test_replay_settings_reach_the_replay():
    model = goal_pixel_apex(return_horizon=5, gamma=0.9, alpha=0.7, beta=0.5, priority_eps=1e-3, initial_priority="max")
    replay = model.replay_buffer
    assert (replay.n_steps, replay.gamma, replay.alpha, replay.beta, replay.priority_eps) == (5, 0.9, 0.7, 0.5, 1e-3)
    assert replay.initial_priority == "max"


def test_a_loaded_model_keeps_its_actors_random_state(tmp_path):
    # A resumed run must go on with its actors' exploration draws, not start them over from the seed.
    model = goal_pixel_apex()
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = ApeX.load(tmp_path / "model.zip", env=model.get_env(), device="cpu")
    greedy = np.zeros(model.n_envs, dtype=np.int64)
    draws = [model.acting.act(greedy) for _ in range(50)]
    np.testing.assert_array_equal(np.stack(draws), np.stack([loaded.acting.act(greedy) for _ in range(50)]))
    fresh = goal_pixel_apex()
    assert not np.array_equal(np.stack(draws), np.stack([fresh.acting.act(greedy) for _ in range(50)]))


def test_learner_step_minimises_the_importance_weighted_huber_loss():
    model = goal_pixel_apex()
    model.learn(600)  # fills the replay past learning_starts
    batch = model.replay_buffer.sample(32)
    policy = model.policy
    with torch.no_grad():
        for parameter in policy.q_net_target.parameters():  # so that online and target argmaxes differ
            parameter.add_(0.05 * torch.randn_like(parameter))
        next_online, next_target = policy.q_net(batch.next_observations), policy.q_net_target(batch.next_observations)
        assert (next_online.argmax(dim=1) != next_target.argmax(dim=1)).any()
        best = next_online.argmax(dim=1)
        targets = batch.rewards[:, 0] + batch.discounts[:, 0] * (1 - batch.dones[:, 0]) * next_target[torch.arange(32), best]
        errors = targets - policy.q_net(batch.observations)[torch.arange(32), batch.actions[:, 0]]
        huber = torch.where(errors.abs() < 1, 0.5 * errors**2, errors.abs() - 0.5)
        expected_loss = (batch.weights[:, 0] * huber).mean()
    stats = learner_step(policy, batch, max_grad_norm=40.0)
    torch.testing.assert_close(stats.td_errors[:, 0], errors)
    torch.testing.assert_close(stats.loss, expected_loss)
    with torch.no_grad():
        new_errors = targets - policy.q_net(batch.observations)[torch.arange(32), batch.actions[:, 0]]
        new_huber = torch.where(new_errors.abs() < 1, 0.5 * new_errors**2, new_errors.abs() - 0.5)
    assert (batch.weights[:, 0] * new_huber).mean() < expected_loss


def test_learner_step_clips_the_gradient_norm():
    model = goal_pixel_apex()
    model.learn(600)
    learner_step(model.policy, model.replay_buffer.sample(32), max_grad_norm=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.q_net.parameters() if p.grad is not None]))
    assert norm <= 1e-3 * (1 + 1e-4)


def test_settings_reach_the_replay_and_a_seed_repeats_the_run():
    def run(seed):
        model = goal_pixel_apex(seed=seed, gamma=0.9)
        model.learn(600)
        return model

    first = run(0)
    discounts = first.replay_buffer.sample(32).discounts[:, 0].numpy()
    assert first.replay_buffer.gamma == 0.9
    assert np.isclose(discounts[:, None], [0.9, 0.9**2, 0.9**3]).any(axis=1).all()
    again, other = run(0), run(1)
    online = first.q_net.state_dict()
    assert all(torch.equal(online[name], value) for name, value in again.q_net.state_dict().items())
    assert not all(torch.equal(online[name], value) for name, value in other.q_net.state_dict().items())


def test_target_network_is_copied_every_target_update_interval_learner_steps():
    model = goal_pixel_apex(target_update_interval=10, learning_starts=200, replay_ratio=2.0)
    model.learn(400)

    def target_equals_online():
        online, target = model.q_net.state_dict(), model.q_net_target.state_dict()
        return all(torch.equal(online[name], target[name]) for name in online)

    for _ in range(12):
        model.train(gradient_steps=1, batch_size=32)
        assert target_equals_online() == (model.learner_steps % 10 == 0), model.learner_steps


def test_the_learner_gives_its_batch_the_priorities_of_its_td_errors(monkeypatch):
    model = goal_pixel_apex()
    model.learn(600)
    seen = []

    def spy(policy, batch, max_grad_norm):
        stats = learner_step(policy, batch, max_grad_norm)
        seen.append((batch.indices, stats.td_errors[:, 0].numpy()))
        return stats

    monkeypatch.setattr(apex, "learner_step", spy)
    model.learn(16, reset_num_timesteps=False)  # 4 steps of 4 envs at ratio 2: one batch of 32
    assert len(seen) == 1
    indices, errors = seen[0]
    np.testing.assert_allclose(model.replay_buffer.tree.get(indices), (np.abs(errors) + 1e-6) ** 0.6, rtol=1e-6)


def test_the_replay_keeps_the_acting_networks_q_values():
    model = goal_pixel_apex()
    model.learn(200)  # before learning starts: the network is still the one that acted
    replay = model.replay_buffer
    valid = np.flatnonzero(replay.tree.leaf_values() > 0)
    batch = replay._get_samples(valid)
    with torch.no_grad():
        q_values = model.q_net(batch.observations)
    slots, envs = np.divmod(valid, replay.n_envs)
    np.testing.assert_allclose(replay.acting_q_taken[slots, envs], q_values.gather(1, batch.actions)[:, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(replay.acting_q_max[slots, envs], q_values.max(dim=1).values.numpy(), rtol=1e-5)


def test_new_transitions_get_actor_side_priorities():
    model = goal_pixel_apex()
    model.learn(600)
    replay = model.replay_buffer
    priorities = replay.tree.get(np.arange(replay.capacity))
    live = priorities[priorities > 0]
    # The max priority is (|TD| + eps)^alpha of some learner or actor batch: if new transitions
    # kept the starting max priority of 1, most leaves would hold exactly 1.
    assert np.mean(live == 1.0) < 0.05


def test_acting_reads_the_q_values_back_in_one_copy_and_takes_argmax_taken_and_max_from_them(monkeypatch):
    q_values = torch.tensor(
        [
            [1.0, 3.0, 3.0, 0.0],  # a tie: the first maximum, as torch's argmax
            [2.0, -1.0, 0.5, 2.0],
            [0.0, 1.0, 2.0, 5.0],
            [-4.0, 4.0, 1.0, 2.0],
        ]
    )
    epsilons = np.array([0.0, 0.0, 1.0, 1.0])  # two greedy envs, two playing at random
    acting, reference = EpsilonGreedy(epsilons, 4, seed=0), EpsilonGreedy(epsilons, 4, seed=0)
    copies = []
    cpu = torch.Tensor.cpu
    monkeypatch.setattr(
        torch.Tensor, "cpu", lambda tensor, *args, **kwargs: copies.append(tuple(tensor.shape)) or cpu(tensor, *args, **kwargs)
    )
    explored = 0
    for _ in range(8):
        step = act(lambda observations: q_values.clone(), torch.zeros(4, 1), acting)
        greedy = q_values.argmax(dim=1)
        actions = reference.act(greedy.numpy())
        assert greedy[:2].tolist() == [1, 0]
        np.testing.assert_array_equal(step.actions, actions)
        np.testing.assert_array_equal(step.q_taken, q_values.gather(1, torch.as_tensor(actions).view(-1, 1))[:, 0].numpy())
        np.testing.assert_array_equal(step.q_max, q_values.max(dim=1).values.numpy())
        assert (step.actions.dtype, step.q_taken.dtype, step.q_max.dtype) == (np.int64, np.float32, np.float32)
        explored += int((actions != greedy.numpy()).sum())
    assert explored > 0  # Q of actions that are not the argmax were read too
    assert copies == [(4, 4)] * 8  # one device-to-host copy per acting step, of the (N, A) Q-values


@pytest.mark.gpu
def test_acting_on_cuda_copies_one_tensor_to_the_host_per_step():
    from torch.profiler import ProfilerActivity, profile

    model = goal_pixel_apex(device="cuda")
    observations = torch.as_tensor(model.env.reset(), device="cuda")
    act(model.q_net, observations, model.acting)  # warm-up: cuDNN's choices, allocations
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        for _ in range(3):
            act(model.q_net, observations, model.acting)
    assert len(memory_copies(profiler, "DtoH")) == 3


def memory_copies(profiler, direction: str) -> list[str]:
    """Names of the CUDA memory copies in ``direction`` ("HtoD", "DtoH") that ``profiler`` saw,
    e.g. "Memcpy HtoD (Pinned -> Device)"."""
    return [event.name for event in profiler.events() if event.name.startswith(f"Memcpy {direction}")]


def test_on_the_cpu_nothing_is_pinned_and_batches_share_the_replays_arrays(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor, *args, **kwargs: pytest.fail("pinned memory on the CPU"))
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = to_device(array, "cpu")
    assert tensor.device.type == "cpu" and np.shares_memory(tensor.numpy(), array)
    assert not goal_pixel_apex().prefetching  # on the CPU nothing would overlap: each batch sees every priority


@pytest.mark.gpu
def test_to_cuda_batches_go_through_pinned_memory_without_waiting(monkeypatch):
    copies = []
    to = torch.Tensor.to
    monkeypatch.setattr(
        torch.Tensor,
        "to",
        lambda tensor, *args, **kwargs: (
            copies.append((tensor.is_pinned(), kwargs.get("non_blocking", False))) or to(tensor, *args, **kwargs)
        ),
    )
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = to_device(array, "cuda")
    assert copies == [(True, True)]
    np.testing.assert_array_equal(tensor.cpu().numpy(), array)


@pytest.mark.parametrize("prefetch", [None, True])
def test_the_learner_trains_written_out_steps_on_batches_drawn_in_order_of_their_priorities(prefetch, monkeypatch):
    # None, the CPU's default: each batch is drawn after the priorities of the one before are in
    # the tree. True, CUDA's: each next batch is drawn before them, the last one held over to the
    # next train() call. Either way: written-out steps on the batches drawn in that order.
    model, reference = goal_pixel_apex(), goal_pixel_apex()
    model.learn(600)
    reference.learn(600)
    model.prefetch = prefetch
    replay, expected_replay = model.replay_buffer, reference.replay_buffer
    np.testing.assert_array_equal(replay.tree.nodes, expected_replay.tree.nodes)
    losses, upcoming = [], None
    for _ in range(3):
        batch, upcoming = upcoming or expected_replay.sample(32), None
        errors, loss, _ = written_out_learner_step(reference.policy, batch, max_grad_norm=40.0)
        if prefetch:
            upcoming = expected_replay.sample(32)  # before this batch's priorities
        expected_replay.update_priorities(batch.indices, errors)
        losses.append(loss)
    # The logs come from the one host copy of each step: no .item() or .cpu() of its own.
    for name in ("item", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, lambda tensor, *args, **kwargs: pytest.fail("a device sync of its own"))
    learner_steps = model.learner_steps
    assert model.replay_limiter.batches_due(model.num_timesteps, learner_steps) == 0
    model.num_timesteps += 32  # 4 envs at ratio 2 in batches of 32: a batch per 16 transitions
    model.train(gradient_steps=1, batch_size=32)
    assert model.learner_steps == learner_steps + 2
    assert model.logger.name_to_value["train/loss"] == pytest.approx(np.mean(losses[:2]), rel=1e-5)
    model.num_timesteps += 16
    model.train(gradient_steps=1, batch_size=32)
    assert model.learner_steps == learner_steps + 3
    assert model.logger.name_to_value["train/loss"] == pytest.approx(losses[2], rel=1e-5)
    np.testing.assert_allclose(replay.tree.nodes, expected_replay.tree.nodes, rtol=1e-6)
    expected_weights = reference.q_net.state_dict()
    for name, value in model.q_net.state_dict().items():
        torch.testing.assert_close(value, expected_weights[name])


@pytest.mark.gpu
def test_on_cuda_the_learner_prefetches_from_pinned_memory_and_reads_each_step_back_once():
    from torch.profiler import ProfilerActivity, profile

    model = goal_pixel_apex(device="cuda")
    assert model.prefetching
    model.learn(600)
    model.num_timesteps += 48  # three batches due
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        model.train(gradient_steps=1, batch_size=32)
    to_device_copies, to_host_copies = memory_copies(profiler, "HtoD"), memory_copies(profiler, "DtoH")
    assert to_device_copies and all("Pinned -> Device" in name for name in to_device_copies), to_device_copies
    assert len(to_host_copies) == 3 and all("Device -> Pinned" in name for name in to_host_copies), to_host_copies
    assert model._prefetched is not None and model._prefetched.observations.is_cuda


def test_evaluation_acts_at_the_evaluation_epsilon():
    model = goal_pixel_apex(eval_epsilon=0.0)
    obs = model.env.reset()
    greedy = model.predict(np.repeat(obs[:1], 500, axis=0), deterministic=True)[0]
    assert np.all(model.predict(np.repeat(obs[:1], 500, axis=0))[0] == greedy)
    model.eval_epsilon = 1.0
    random_actions = model.predict(np.repeat(obs[:1], 4000, axis=0))[0]
    assert np.bincount(random_actions, minlength=4) / 4000 == pytest.approx([0.25] * 4, abs=0.03)


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"learning_starts": 10},
            "apex.learning_starts must lie between apex.batch_size \\(32\\) and half of apex.buffer_size",
        ),
        ({"learning_starts": 3000}, "apex.learning_starts must lie between"),
        ({"initial_priority": "min"}, "apex.initial_priority must be one of \\('actor', 'max'\\), got 'min'"),
        ({"replay_ratio": 0.0}, "apex.replay_ratio must be in \\(0, inf\\), got 0.0"),
        ({"return_horizon": 0}, "apex.return_horizon must be in \\[1, inf\\), got 0"),
    ],
)
def test_bad_settings_get_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_apex_config(**settings).validate()


@pytest.mark.parametrize("arch", ["conv", "coordconv"])
def test_ape_x_learns_goal_pixel(arch):
    model = goal_pixel_apex(arch)
    before = goal_pixel_success_rate(model, deterministic=True)
    model.learn(30_000)  # seed 0 reaches 1.0 (conv) and 0.93 (coordconv) at 20k, 1.0 both at 30k
    after = goal_pixel_success_rate(model, deterministic=True)
    assert before < 0.65
    assert after >= 0.9, f"{arch}: success {before:.2f} -> {after:.2f}"


def test_a_learner_without_a_local_replay_allocates_none_and_says_where_its_transitions_are(tmp_path):
    env = make_vec_env(GOAL_PIXEL_ID, n_envs=4, seed=0, env_kwargs=GOAL_PIXEL)
    model = ApeX("CnnPolicy", env, seed=0, device="cpu", local_replay=False, **apex.apex_kwargs("conv", tiny_apex_config()))
    with pytest.raises(RuntimeError, match=r"no replay of its own \(local_replay=False.*replay_buffer\.add is not available"):
        _ = model.replay_buffer.add
    model.save(tmp_path / "learner.zip")
    loaded = ApeX.load(tmp_path / "learner.zip", device="cpu")
    assert not loaded.local_replay
    with pytest.raises(RuntimeError, match="no replay of its own"):
        loaded.replay_buffer.size()
    assert isinstance(goal_pixel_apex().replay_buffer, apex.PrioritizedReplayBuffer)
