"""bfloat16 compute in the feature extractor, float32 everywhere else; refused where it would be slow."""

import copy
import json

import pytest
import torch
import torch.nn as nn
from helpers import GOAL_PIXEL, assert_learns_goal_pixel, goal_pixel_success_rate, tiny_apex_config
from stable_baselines3.common.env_util import make_vec_env

from rl_coordconv import precision
from rl_coordconv.agents import evaluation
from rl_coordconv.agents.a2c import A2CConfig, make_a2c
from rl_coordconv.agents.apex import make_apex
from rl_coordconv.commands import train
from rl_coordconv.envs import GOAL_PIXEL_ID, make_atari_vec_env
from rl_coordconv.layers import AddCoords, CoordConv2d
from rl_coordconv.precision import check_precision, precision_of, use_precision

BFLOAT16 = dict(rtol=0.05, atol=0.05)  # 8 bits of mantissa: about 2 significant digits
needs_native_bfloat16 = pytest.mark.skipif(
    not (precision.cpu_flags() or set()) & set(precision.NATIVE_BFLOAT16_FLAGS),
    reason="this CPU computes bfloat16 only by emulation (no avx512_bf16, amx_bf16 or bf16 flag)",
)


def atari_a2c(arch: str):
    env = make_atari_vec_env("MsPacman", 2, seed=0)
    return env, make_a2c(env, arch, A2CConfig(n_envs=2), seed=0, device="cpu")


@pytest.mark.parametrize("arch", ["conv", "coordconv", "coordconv_all"])
def test_bf16_policy_outputs_and_gradients_match_fp32_and_stay_float32(arch):
    env, model = atari_a2c(arch)
    bf16 = copy.deepcopy(model.policy)
    use_precision(bf16, "bf16")
    assert precision_of(bf16) == "bf16" and precision_of(model.policy) == "fp32"
    observations = model.policy.obs_to_tensor(env.reset())[0]
    actions = torch.tensor([0, 3])
    outputs, gradients = {}, {}
    for name, policy in (("fp32", model.policy), ("bf16", bf16)):
        values, log_probs, entropy = policy.evaluate_actions(observations, actions)
        loss = values.square().mean() - log_probs.mean() - 0.01 * entropy.mean()
        loss.backward()
        assert {values.dtype, log_probs.dtype, entropy.dtype, loss.dtype} == {torch.float32}  # the losses stay fp32
        outputs[name] = torch.cat([values.flatten(), log_probs, entropy]).detach()
        gradients[name] = [parameter.grad for parameter in policy.parameters()]
        assert all(parameter.dtype == torch.float32 for parameter in policy.parameters())
    torch.testing.assert_close(outputs["bf16"], outputs["fp32"], **BFLOAT16)
    # Each parameter's gradient points the same way (cosine) with about the same size.
    for ours, theirs in zip(gradients["bf16"], gradients["fp32"]):
        cosine = torch.nn.functional.cosine_similarity(ours.flatten(), theirs.flatten(), dim=0)
        assert cosine > 0.99 and abs(ours.norm() / theirs.norm() - 1) < 0.05, (cosine, ours.norm(), theirs.norm())
    assert bf16.state_dict().keys() == model.policy.state_dict().keys()
    env.close()


def test_the_extractor_computes_in_bfloat16_and_only_the_extractor():
    env, model = atari_a2c("coordconv")
    use_precision(model.policy, "bf16")
    seen = {}
    for name, module in model.policy.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(lambda module, inputs, output, name=name: seen.__setitem__(name, output.dtype))
    model.policy.evaluate_actions(model.policy.obs_to_tensor(env.reset())[0], torch.tensor([0, 1]))
    assert {name: dtype for name, dtype in seen.items() if name.startswith("features_extractor")} == {
        "features_extractor.cnn.0": torch.bfloat16,
        "features_extractor.cnn.2": torch.bfloat16,
        "features_extractor.cnn.4": torch.bfloat16,
        "features_extractor.linear.0": torch.bfloat16,
    }
    assert seen["action_net"] == seen["value_net"] == torch.float32  # the heads in fp32
    use_precision(model.policy, "fp32")  # and back
    seen.clear()
    model.policy.evaluate_actions(model.policy.obs_to_tensor(env.reset())[0], torch.tensor([0, 1]))
    assert set(seen.values()) == {torch.float32}
    env.close()


@pytest.mark.parametrize("path", CoordConv2d.PATHS)
def test_coordconv_under_autocast_on_every_path_and_float32_after(path):
    torch.manual_seed(0)
    layer = CoordConv2d(4, 8, 3, stride=2, with_r=True, path=path)
    naive = nn.Conv2d(7, 8, 3, stride=2)
    naive.load_state_dict(layer.state_dict())
    x = torch.rand(2, 4, 15, 15)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, expected = layer(x), naive(AddCoords(with_r=True)(x))
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected.float(), **BFLOAT16)
        # The parts reused without autograd were computed in bfloat16: a float32 call recomputes them.
        torch.testing.assert_close(layer(x), naive(AddCoords(with_r=True)(x)), rtol=1e-5, atol=1e-5)


def test_bf16_is_refused_on_a_cpu_without_native_bfloat16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx2", "avx512f"})
    with pytest.raises(
        ValueError,
        match=r"this CPU lacks avx512_bf16 \(AVX-512 BF16\) and amx_bf16 \(AMX\), so "
        r"bfloat16 would be emulated there and be slower than fp32",
    ):
        check_precision("bf16", "cpu")
    check_precision("fp32", "cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx512f", "avx512_bf16"})
    check_precision("bf16", "cpu")
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; choose one of \('fp32', 'bf16'\)"):
        check_precision("fp16", "cpu")


def test_bf16_is_refused_on_a_gpu_before_ampere_and_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="precision bf16 on CUDA, but this torch sees no CUDA GPU"):
        check_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    capabilities = {0: (8, 0), 1: (7, 0)}  # the device asked for is the one checked
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[torch.device(device).index or 0])
    check_precision("bf16", "cuda:0")
    with pytest.raises(ValueError, match=r"Tesla V100 \(compute capability 7\.0\): no native bfloat16 before 8\.0"):
        check_precision("bf16", "cuda:1")


def test_distributed_bf16_is_refused_where_the_rollout_actors_cpu_lacks_it(monkeypatch):
    from rl_coordconv.agents.run_config import ExperimentConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx2"})
    config = ExperimentConfig(agent="apex", device="cuda", precision="bf16")
    config.validate()  # the learner's GPU computes bfloat16
    config.distributed.enabled = True
    with pytest.raises(ValueError, match="this CPU lacks avx512_bf16"):
        config.validate()


def test_train_refuses_bf16_on_such_a_cpu_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx2"})
    assert train.main(["--timesteps", "100", "--runs", str(tmp_path), "--set", "precision=bf16", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this CPU lacks avx512_bf16" in err, err
    assert not any(tmp_path.iterdir())


@needs_native_bfloat16
def test_the_precision_is_recorded_resumed_as_it_was_and_evaluated_in_it(tmp_path, capsys, monkeypatch):
    calls = []
    in_bfloat16 = precision._forward_in_bfloat16
    monkeypatch.setattr(precision, "_forward_in_bfloat16", lambda *args: calls.append(1) or in_bfloat16(*args))
    argv = [
        "--timesteps",
        "200",
        "--runs",
        str(tmp_path),
        "--no-progress",
        "--set",
        "a2c.n_envs=2",
        "--set",
        "eval_episodes=0",
        "--set",
        "checkpoint_every=200",
    ]
    assert train.main([*argv, "--set", "precision=bf16"]) == 0
    run_dir = tmp_path / "MsPacman" / "a2c-conv" / "seed0"
    assert len(calls) >= 200 // 2  # every rollout step and update ran the extractor in bfloat16
    assert json.loads((run_dir / "config.json").read_text())["config"]["precision"] == "bf16"
    capsys.readouterr()
    assert train.main([*argv, "--timesteps", "400", "--resume"]) == 2  # the default, fp32, differs from the run's
    err = capsys.readouterr().err
    assert "differ from the saved run" in err and "'precision'" in err, err
    assert train.main([*argv, "--timesteps", "400", "--resume", "--set", "precision=bf16"]) == 0
    model = evaluation.load_for_evaluation(
        evaluation.run_config_for_evaluation(run_dir, "cpu"), run_dir / "checkpoints" / "model_400_steps.zip"
    )
    assert precision_of(model.policy) == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse2", "avx2"})  # evaluated where bf16 is emulated
    capsys.readouterr()
    config = evaluation.run_config_for_evaluation(run_dir, "cpu")
    assert config.precision == "fp32" and "Evaluating in fp32 rather than the run's bf16" in capsys.readouterr().out


@needs_native_bfloat16
def test_a2c_learns_goal_pixel_in_bf16_within_the_fp32_budget():
    def make_in_bf16(env, arch, config, **kwargs):
        model = make_a2c(env, arch, config, **kwargs)
        use_precision(model.policy, "bf16")
        return model

    # test_a2c.py's budget and settings in fp32: 2 envs x 5 steps, 30k agent steps.
    assert_learns_goal_pixel(make_in_bf16, A2CConfig(n_envs=2, n_steps=5, learning_rate=7e-4), "coordconv", 30_000)


@needs_native_bfloat16
def test_the_apex_agent_learns_goal_pixel_in_bf16_within_the_fp32_budget():
    config = tiny_apex_config()
    env = make_vec_env(GOAL_PIXEL_ID, n_envs=config.n_envs, seed=0, env_kwargs=GOAL_PIXEL)
    model = use_precision_of_model(make_apex(env, "coordconv", config, seed=0, device="cpu"))
    before = goal_pixel_success_rate(model, deterministic=True)
    model.learn(30_000)  # test_apex.py's budget in fp32
    after = goal_pixel_success_rate(model, deterministic=True)
    assert before < 0.65 and after >= 0.9, (before, after)


def use_precision_of_model(model):
    use_precision(model.policy, "bf16")
    return model
