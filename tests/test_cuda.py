"""The CUDA paths against the CPU: gradients of every CoordConv2d path, the extractors and a whole
SB3 policy on CUDA, a checkpoint saved on CUDA and evaluated on CPU, a run on the second GPU.

Every test here needs a GPU (``gpu`` marker: skipped with a reason where there is none) and runs
with TF32 off (the ``no_tf32`` fixture), so float32 results compare at float32 tolerances.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from rl_coordconv.agents.a2c import A2CConfig, make_a2c
from rl_coordconv.commands import evaluate, train
from rl_coordconv.envs import make_atari_vec_env
from rl_coordconv.extractors import ARCHS
from rl_coordconv.layers import AddCoords, CoordConv2d

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("no_tf32")]
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", CoordConv2d.PATHS)
def test_every_path_has_the_naive_concats_gradients_on_cuda(path):
    torch.manual_seed(0)
    layer = CoordConv2d(4, 16, 8, stride=4, with_r=True, path=path)
    naive = nn.Conv2d(4 + 3, 16, 8, stride=4)
    naive.load_state_dict(layer.state_dict())
    x = torch.randn(6, 4, 84, 84)
    cotangent = torch.randn(6, 16, 20, 20)
    x_cpu = x.clone().requires_grad_(True)
    (naive(AddCoords(with_r=True)(x_cpu)) * cotangent).sum().backward()
    layer = layer.cuda()
    x_cuda = x.cuda().requires_grad_(True)
    (layer(x_cuda) * cotangent.cuda()).sum().backward()
    torch.testing.assert_close(x_cuda.grad.cpu(), x_cpu.grad, **TOLERANCE)
    torch.testing.assert_close(layer.weight.grad.cpu(), naive.weight.grad, rtol=1e-4, atol=1e-3)  # sums of 14k terms
    torch.testing.assert_close(layer.bias.grad.cpu(), naive.bias.grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_the_extractors_and_a_whole_sb3_policy_match_the_cpu(arch):
    env = make_atari_vec_env("MsPacman", 2, seed=0)
    observations = env.reset()
    cpu = make_a2c(env, arch, A2CConfig(n_envs=2), seed=0, device="cpu")
    cuda = make_a2c(env, arch, A2CConfig(n_envs=2), seed=0, device="cuda")
    cuda.policy.load_state_dict(cpu.policy.state_dict())
    features = {}
    for name, model in (("cpu", cpu), ("cuda", cuda)):
        obs = model.policy.obs_to_tensor(observations)[0]
        assert obs.device.type == name
        values, log_probs, entropy = model.policy.evaluate_actions(obs, torch.tensor([0, 3], device=obs.device))
        (values.sum() + log_probs.sum() + entropy.sum()).backward()
        features[name] = [tensor.detach().cpu() for tensor in (values, log_probs, entropy)]
        features[name] += [parameter.grad.cpu() for parameter in model.policy.parameters()]
    for on_cpu, on_cuda in zip(features["cpu"], features["cuda"]):
        torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-3)
    cuda.learn(40)  # SB3's own loop on the GPU: rollout, update
    assert all(parameter.device.type == "cuda" for parameter in cuda.policy.parameters())
    env.close()


def run_dir_of(runs: Path) -> Path:
    (config,) = runs.glob("*/*/seed*/config.json")
    return config.parent


@pytest.mark.parametrize("agent", ["a2c", "apex"])
def test_a_checkpoint_saved_on_cuda_is_evaluated_on_the_cpu(agent, tmp_path):
    settings = (
        ["--set", "a2c.n_envs=2"]
        if agent == "a2c"
        else [
            "--set",
            "apex.n_envs=2",
            "--set",
            "apex.buffer_size=2000",
            "--set",
            "apex.learning_starts=200",
            "--set",
            "apex.batch_size=32",
        ]
    )
    assert (
        train.main(
            [
                "--agent",
                agent,
                "--arch",
                "coordconv",
                "--timesteps",
                "400",
                "--device",
                "cuda",
                "--runs",
                str(tmp_path),
                "--no-progress",
                "--set",
                "eval_episodes=0",
                "--set",
                "checkpoint_every=400",
                *settings,
            ]
        )
        == 0
    )
    run_dir = run_dir_of(tmp_path)
    assert json.loads((run_dir / "config.json").read_text())["resolved_device"].startswith("cuda")
    assert evaluate.main([str(run_dir), "--episodes", "1", "--device", "cpu", "--no-progress"]) == 0
    (record,) = run_dir.glob("evaluation_*.json")
    assert np.isfinite(json.loads(record.read_text())["mean_score"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_a_run_on_the_second_gpu_stays_there(tmp_path):
    assert (
        train.main(
            [
                "--arch",
                "coordconv",
                "--timesteps",
                "200",
                "--device",
                "cuda:1",
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
        )
        == 0
    )
    run_dir = run_dir_of(tmp_path)
    assert json.loads((run_dir / "config.json").read_text())["resolved_device"] == "cuda:1"
    layer = CoordConv2d(4, 8, 3).to("cuda:1")
    layer(torch.randn(2, 4, 9, 9, device="cuda:1"))
    assert layer.coordinate_patches.cached is None or layer.coordinate_patches.cached.device == torch.device("cuda:1")
    assert layer.coordinates.cached.device == torch.device("cuda:1")  # auto takes the concat on CUDA
    copy.deepcopy(layer)(torch.randn(2, 4, 9, 9, device="cuda:1"))
