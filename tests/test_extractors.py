import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import NatureCNN

from rl_coordconv.extractors import ARCHS, CoordConvNatureCNN, policy_kwargs_for
from rl_coordconv.layers import AddCoords, CoordConv2d

ATARI_SPACE = spaces.Box(0, 255, (4, 84, 84), np.uint8)
FIRST_LAYER_COORD_WEIGHTS = 32 * 8 * 8  # per coordinate channel
ALL_LAYERS_COORD_WEIGHTS = 32 * 8 * 8 + 64 * 4 * 4 + 64 * 3 * 3


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(arch: str, space: gym.Space = ATARI_SPACE) -> torch.nn.Module:
    kwargs = policy_kwargs_for(arch)
    return kwargs["features_extractor_class"](space, **kwargs.get("features_extractor_kwargs", {}))


def test_conv_is_sb3_nature_cnn():
    assert ARCHS["conv"]["features_extractor_class"] is NatureCNN and ARCHS["conv"]["net_arch"] == []


@pytest.mark.parametrize(
    "arch, extra",
    [
        ("conv", 0),
        ("coordconv", 2 * FIRST_LAYER_COORD_WEIGHTS),
        ("coordconv_r", 3 * FIRST_LAYER_COORD_WEIGHTS),
        ("coordconv_all", 2 * ALL_LAYERS_COORD_WEIGHTS),
    ],
)
def test_parameter_counts_differ_from_nature_cnn_by_the_coordinate_weights(arch, extra):
    extractor = build(arch)
    assert count_parameters(extractor) - count_parameters(NatureCNN(ATARI_SPACE)) == extra
    assert extractor.features_dim == 512
    assert extractor(torch.zeros(3, 4, 84, 84)).shape == (3, 512)


def test_coordconv_layers_are_placed_as_named():
    def kinds(arch):
        return [type(layer).__name__ for layer in build(arch).cnn if isinstance(layer, torch.nn.Conv2d)]

    assert kinds("coordconv") == ["CoordConv2d", "Conv2d", "Conv2d"]
    assert kinds("coordconv_all") == ["CoordConv2d"] * 3
    assert build("coordconv_r").cnn[0].with_r


def naive_reference(extractor: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in which every CoordConv2d is the textbook AddCoords + nn.Conv2d, same weights."""
    import copy

    reference = copy.deepcopy(extractor)
    for index, layer in enumerate(reference.cnn):
        if isinstance(layer, CoordConv2d):
            conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride)
            conv.load_state_dict(layer.state_dict())
            reference.cnn[index] = torch.nn.Sequential(AddCoords(layer.with_r), conv)
    return reference


@pytest.mark.parametrize("arch", ["coordconv", "coordconv_r", "coordconv_all"])
def test_coordconv_extractors_equal_the_textbook_concatenation(arch):
    torch.manual_seed(0)
    extractor = build(arch)
    x = torch.rand(5, 4, 84, 84)
    torch.testing.assert_close(extractor(x), naive_reference(extractor)(x))


def test_coordconv_extractor_equals_nature_cnn_on_coordinates_appended_to_the_input():
    """With the same weights, CoordConvNatureCNN(x) == NatureCNN(AddCoords(x))."""
    torch.manual_seed(0)
    extractor = build("coordconv")
    reference = NatureCNN(spaces.Box(0, 255, (6, 84, 84), np.uint8))
    reference.load_state_dict(extractor.state_dict())
    x = torch.rand(5, 4, 84, 84)
    torch.testing.assert_close(extractor(x), reference(AddCoords()(x)))


@pytest.mark.parametrize(
    "space, message",
    [
        (spaces.Box(-1, 1, (8,), np.float32), "needs a \\(C, H, W\\) image Box"),
        (spaces.Discrete(3), "needs a \\(C, H, W\\) image Box"),
        (spaces.Box(0, 1, (4, 84, 84), np.float32), "needs uint8 images"),
        (spaces.Box(0, 255, (4, 20, 20), np.uint8), "H, W >= 36.*got shape \\(4, 20, 20\\)"),
        (spaces.Box(0, 255, (84, 84, 4), np.uint8), "channel-first"),
    ],
)
def test_bad_observation_spaces_get_clear_errors(space, message):
    with pytest.raises(ValueError, match=message):
        CoordConvNatureCNN(space)


def test_normalized_images_are_accepted_as_in_nature_cnn():
    space = spaces.Box(0, 1, (4, 84, 84), np.float32)
    extractor = CoordConvNatureCNN(space, normalized_image=True)
    assert extractor(torch.rand(2, 4, 84, 84)).shape == (2, 512)


def test_unknown_arch_lists_the_registry():
    with pytest.raises(ValueError, match="unknown arch 'coord'.*coordconv_all"):
        policy_kwargs_for("coord")


def test_sb3_writing_into_policy_kwargs_does_not_change_the_registry():
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([image_env])
    A2C("CnnPolicy", env, policy_kwargs=ARCHS["conv"], device="cpu")  # A2C adds optimizer_class to the dict
    assert "optimizer_class" not in ARCHS["conv"]
    dqn = DQN("CnnPolicy", env, policy_kwargs=ARCHS["conv"], buffer_size=100, device="cpu")
    assert isinstance(dqn.policy.optimizer, torch.optim.Adam)


def test_policy_kwargs_are_fresh_copies():
    kwargs = policy_kwargs_for("coordconv")
    kwargs["features_extractor_kwargs"]["with_r"] = True
    assert ARCHS["coordconv"]["features_extractor_kwargs"]["with_r"] is False


def image_env() -> gym.Env:
    import rl_coordconv.envs  # noqa: F401  (registers GoalPixel)

    return gym.make("GoalPixel-v0")


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("algorithm", [A2C, DQN])
def test_every_arch_trains_inside_sb3(arch, algorithm):
    env = make_vec_env(image_env, n_envs=2, seed=0)
    kwargs = (
        {"learning_starts": 16, "buffer_size": 200, "batch_size": 8, "train_freq": 4} if algorithm is DQN else {"n_steps": 8}
    )
    model = algorithm("CnnPolicy", env, policy_kwargs=ARCHS[arch], seed=0, device="cpu", **kwargs)
    extractor = model.policy.q_net.features_extractor if algorithm is DQN else model.policy.features_extractor
    convs = [layer for layer in extractor.cnn if isinstance(layer, torch.nn.Conv2d)]
    before = [conv.weight.detach().clone() for conv in convs]
    model.learn(64)
    for conv, weight in zip(convs, before):
        changed = (conv.weight != weight).flatten(1).any(dim=1)  # per output channel
        assert changed.any(), f"{conv} did not train"
        if isinstance(conv, CoordConv2d):  # the coordinate weights receive gradients too
            assert (conv.weight[:, conv.image_channels :] != weight[:, conv.image_channels :]).any()
    assert (
        sum(isinstance(conv, CoordConv2d) for conv in convs)
        == {"conv": 0, "coordconv": 1, "coordconv_r": 1, "coordconv_all": 3}[arch]
    )


def test_policies_with_normalize_images_false_pass_normalized_image_to_our_extractor():
    def float_image_env():
        env = image_env()
        space = spaces.Box(0.0, 1.0, env.observation_space.shape, np.float32)
        return gym.wrappers.TransformObservation(env, lambda obs: obs.astype(np.float32) / 255, space)

    env = make_vec_env(float_image_env, n_envs=1, seed=0)
    with pytest.raises(ValueError, match="needs uint8 images"):
        A2C("CnnPolicy", env, policy_kwargs=ARCHS["coordconv"], device="cpu")
    policy_kwargs = {**policy_kwargs_for("coordconv"), "normalize_images": False}
    model = A2C("CnnPolicy", env, policy_kwargs=policy_kwargs, n_steps=4, device="cpu")
    model.learn(8)
    assert isinstance(model.policy.features_extractor.cnn[0], CoordConv2d)
