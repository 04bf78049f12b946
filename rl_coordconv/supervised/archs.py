"""The two architectures every supervised experiment compares, and the layer that tells them apart."""

from __future__ import annotations

import torch.nn as nn

from rl_coordconv.layers import CoordConv2d

ARCHS = ("conv", "coordconv")


def conv_layer(arch: str, in_channels: int, out_channels: int, kernel_size: int, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)`` for ``arch="conv"``; for
    ``"coordconv"`` the same as a :class:`CoordConv2d`, whose input gains two coordinate channels:
    its weight is ``(out_channels, in_channels + 2, k, k)``. Either takes ``(B, in_channels, H, W)``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    layer = CoordConv2d if arch == "coordconv" else nn.Conv2d
    return layer(in_channels, out_channels, kernel_size, **kwargs)
