"""Stable-Baselines3 feature extractors: SB3's Nature CNN with CoordConv layers.

The baseline ``"conv"`` is SB3's own :class:`~stable_baselines3.common.torch_layers.NatureCNN`.
Every CoordConv variant is that network with some of its ``nn.Conv2d`` layers replaced by
:class:`~rl_coordconv.layers.CoordConv2d` of the same shape, so the architectures and
``features_dim`` match by construction and only the coordinate weights are added.

Any SB3 algorithm takes them through ``policy_kwargs``::

    A2C("CnnPolicy", env, policy_kwargs=ARCHS["coordconv"])
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import gymnasium as gym
import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import NatureCNN

from rl_coordconv.layers import CoordConv2d

# Nature CNN: 8x8 stride 4, then 4x4 stride 2, then 3x3 stride 1, all unpadded.
NATURE_CNN_MIN_SIZE = 36


def check_image_space(observation_space: gym.Space, extractor: str, normalized_image: bool) -> None:
    """Raise a clear ``ValueError`` unless ``observation_space`` is a channel-first image that the
    Nature CNN can read: a 3-d ``Box`` ``(C, H, W)`` with H, W >= 36, uint8 in [0, 255] unless
    ``normalized_image``."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
        raise ValueError(
            f"{extractor} needs a (C, H, W) image Box observation space, got {observation_space}. "
            "Use MlpPolicy/MultiInputPolicy for non-image observations."
        )
    if not is_image_space(observation_space, check_channels=False, normalized_image=normalized_image):
        raise ValueError(
            f"{extractor} needs uint8 images with values in [0, 255], got {observation_space}. "
            "For already-normalized float images pass normalize_images=False to the policy."
        )
    channels, height, width = observation_space.shape
    if min(height, width) < NATURE_CNN_MIN_SIZE or channels > min(height, width):
        raise ValueError(
            f"{extractor} expects channel-first images (C, H, W) with H, W >= {NATURE_CNN_MIN_SIZE} "
            f"(e.g. (4, 84, 84) for stacked Atari frames), got shape {observation_space.shape}."
        )


class CoordConvNatureCNN(NatureCNN):
    """SB3's Nature CNN with CoordConv at the first conv layer or at all three.

    Input ``(B, C, H, W)`` float (SB3 scales uint8 images to [0, 1] before the extractor when
    ``normalize_images=True``); output ``(B, features_dim)``.

    :param observation_space: a channel-first image space, e.g. ``Box(0, 255, (4, 84, 84), uint8)``.
    :param features_dim: width of the final linear layer, as in ``NatureCNN``.
    :param normalized_image: passed by SB3 when the policy has ``normalize_images=False``.
    :param coord_layers: ``"first"`` (CoordConv on the first layer only) or ``"all"``.
    :param with_r: add the radius channel to each CoordConv layer.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 512,
        normalized_image: bool = False,
        coord_layers: Literal["first", "all"] = "first",
        with_r: bool = False,
    ) -> None:
        if coord_layers not in ("first", "all"):
            raise ValueError(f"coord_layers must be 'first' or 'all', got {coord_layers!r}")
        check_image_space(observation_space, type(self).__name__, normalized_image)
        super().__init__(observation_space, features_dim, normalized_image)
        self.coord_layers = coord_layers
        self.with_r = with_r
        convs = [i for i, layer in enumerate(self.cnn) if isinstance(layer, nn.Conv2d)]
        for index in convs if coord_layers == "all" else convs[:1]:
            self.cnn[index] = _coordconv_like(self.cnn[index], with_r)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))


def _coordconv_like(conv: nn.Conv2d, with_r: bool) -> CoordConv2d:
    """A freshly initialised CoordConv2d with the hyperparameters of ``conv``."""
    return CoordConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        with_r=with_r,
    )


def _coordconv(coord_layers: str, with_r: bool) -> dict[str, Any]:
    return {
        "features_extractor_class": CoordConvNatureCNN,
        "features_extractor_kwargs": {"coord_layers": coord_layers, "with_r": with_r},
        "net_arch": [],
    }


class _Registry(Mapping):
    """A read-only name -> ``policy_kwargs`` mapping whose lookups return fresh deep copies.

    SB3 writes into the ``policy_kwargs`` it is given (A2C adds its RMSprop optimizer there): with
    a shared dict, ``A2C(..., policy_kwargs=ARCHS["conv"])`` would hand RMSprop to every later
    model built from ``ARCHS["conv"]`` in the same process, a DQN included."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self._entries = entries

    def __getitem__(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._entries[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


# Architecture name -> SB3 ``policy_kwargs`` (each lookup a fresh copy).
# ``net_arch=[]`` puts the heads straight on the 512 features, as SB3 does for NatureCNN. It must
# be explicit: SB3 picks that default only when the extractor class IS NatureCNN, and would give
# any subclass two extra hidden layers of 64 units per head.
ARCHS: Mapping[str, dict[str, Any]] = _Registry(
    {
        "conv": {"features_extractor_class": NatureCNN, "net_arch": []},
        "coordconv": _coordconv("first", with_r=False),
        "coordconv_r": _coordconv("first", with_r=True),
        "coordconv_all": _coordconv("all", with_r=False),
    }
)


def policy_kwargs_for(arch: str) -> dict[str, Any]:
    """A fresh copy of ``ARCHS[arch]``, with a clear error for an unknown name."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch]
