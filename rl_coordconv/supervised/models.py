"""The paper's Not-so-Clevr models, CoordConv and conv for each task. Architectures follow the official code.

- classification: ``(B, 2)`` normalized centre -> ``(B, 4096)`` logits over the 64x64 pixels;
- rendering: ``(B, 2)`` normalized centre -> :class:`Rendering` (``(B, 4096)`` per-pixel logits
  of the 9x9 square, plus the CoordConv model's intermediate centre logits);
- regression: ``(B, 1, 64, 64)`` one-hot image -> ``(B, 2)`` centre in [0, 1] (pixel / 63).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from rl_coordconv.layers import CoordConv2d
from rl_coordconv.supervised.archs import ARCHS
from rl_coordconv.supervised.data import CANVAS

MODELS = ARCHS[::-1]  # the order they run in: CoordConv's minutes before the conv models' half hour


def he_initialize(module: nn.Module) -> nn.Module:
    """He-normal weights and zero biases for every conv and linear layer, as the official code."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


def tile(coordinates: torch.Tensor, size: int = CANVAS) -> torch.Tensor:
    """``(B, 2)`` -> ``(B, 2, size, size)``: each coordinate as a constant map."""
    return coordinates[:, :, None, None].expand(-1, -1, size, size)


class CoordConvClassifier(nn.Module):
    """Tile (i, j) over the canvas, add coordinate channels, five 1x1 convs (32, 32, 64, 64, 1):
    7,553 parameters. Each pixel compares its own position with (i, j).

    The four 1x1 convs after the CoordConv layer run as ``nn.Linear`` on channels-last features:
    the same maps and parameters, about 1.6x faster on CPU than NCHW 1x1 convolutions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.coordconv = CoordConv2d(2, 32, 1)
        self.pixel_mlp = nn.Sequential(
            nn.ReLU(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
        )

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        features = self.coordconv(tile(coordinates)).permute(0, 2, 3, 1)  # (B, 64, 64, 32)
        return self.pixel_mlp(features).flatten(1)


class DeconvClassifier(nn.Module):
    """The paper's conv model: (i, j) as a 1x1x2 map, six stride-2 transposed convs
    (64m, 64m, 64m, 32m, 32m, 1 channels; BatchNorm + ReLU on the first five) up to 64x64 logits.
    103,585 parameters at ``width=1``, kernel 3."""

    def __init__(self, width: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        channels = [2, 64 * width, 64 * width, 64 * width, 32 * width, 32 * width]
        padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = []
        for channels_in, channels_out in zip(channels, channels[1:]):
            layers += [
                nn.ConvTranspose2d(channels_in, channels_out, kernel_size, 2, padding, output_padding=1),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
            ]
        layers.append(nn.ConvTranspose2d(channels[-1], 1, kernel_size, 2, padding, output_padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        return self.net(coordinates[:, :, None, None]).flatten(1)


class Rendering(NamedTuple):
    image_logits: torch.Tensor  # (B, 4096): per-pixel logits, painted where > 0
    centre_logits: torch.Tensor | None  # (B, 4096): the CoordConv renderer's softmax input


class CoordConvRenderer(nn.Module):
    """The classifier locates the centre; a softmax over the 4096 pixels "sharpens" it into a
    one-hot-like map, and five 3x3 convs (8, 8, 16, 16, 1; ReLU between) paint the square around
    it: 11,850 parameters. As the official ``--interm_loss softmax`` option, the centre logits are
    returned for an intermediate classification loss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.locator = CoordConvClassifier()
        channels = [1, 8, 8, 16, 16]
        layers: list[nn.Module] = []
        for channels_in, channels_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(channels[-1], 1, 3, padding=1))
        # channels_last: small-channel 3x3 convs run about 1.7x faster on CPU.
        self.painter = he_initialize(nn.Sequential(*layers)).to(memory_format=torch.channels_last)

    def forward(self, coordinates: torch.Tensor) -> Rendering:
        centre_logits = self.locator(coordinates)
        sharpened = centre_logits.softmax(dim=1).view(-1, 1, CANVAS, CANVAS)
        return Rendering(self.painter(sharpened).flatten(1), centre_logits)


class DeconvRenderer(DeconvClassifier):
    """The deconv classifier with per-pixel sigmoid outputs (the official ``deconv_rendering``)."""

    def forward(self, coordinates: torch.Tensor) -> Rendering:
        return Rendering(super().forward(coordinates), None)


class CoordConvRegressor(nn.Module):
    """AddCoords, three 1x1 convs (8), a 3x3 conv (8), a 3x3 conv (2), global max-pool, no ReLU:
    906 parameters. The max-pool picks the pixel where the one-hot input lights up; the network
    reads that pixel's coordinate channels.

    The coordinate weights start at zero. With random ones the coordinate ramps, not the one-hot
    pixel, win the max-pool at initialization; the max then sits at a canvas corner for every
    input, and gradients never reach the one-hot path (we measured 0 of 8 seeds training).
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = he_initialize(
            nn.Sequential(
                CoordConv2d(1, 8, 1),
                nn.Conv2d(8, 8, 1),
                nn.Conv2d(8, 8, 1),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.Conv2d(8, 2, 3, padding=1),
                nn.AdaptiveMaxPool2d(1),
                nn.Flatten(),
            )
        )
        with torch.no_grad():
            self.net[0].weight[:, 1:] = 0.0  # input channel 0 is the image, then the coordinates

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class ConvRegressor(nn.Module):
    """The paper's conv regressor (official ``big_conv``): four 3x3 convs of 16 channels with ReLU,
    2x2 max-pools after the first three, then dense 64 and dense 2: 72,850 parameters."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, channels_in in enumerate([1, width, width, width]):
            layers += [nn.Conv2d(channels_in, width, 3, padding=1), nn.ReLU()]
            if index < 3:
                layers.append(nn.MaxPool2d(2))
        feature_size = CANVAS // 8
        layers += [nn.Flatten(), nn.Linear(width * feature_size**2, 64), nn.ReLU(), nn.Linear(64, 2)]
        self.net = he_initialize(nn.Sequential(*layers))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


BUILDERS = {
    ("classification", "coordconv"): CoordConvClassifier,
    ("classification", "conv"): DeconvClassifier,
    ("rendering", "coordconv"): CoordConvRenderer,
    ("rendering", "conv"): DeconvRenderer,
    ("regression", "coordconv"): CoordConvRegressor,
    ("regression", "conv"): ConvRegressor,
}


def build_model(task: str, model: str) -> nn.Module:
    """The model for ``task`` (classification, rendering, regression) and ``model`` (coordconv or conv)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    if (task, model) not in BUILDERS:
        raise ValueError(f"unknown task {task!r}; choose one of {tuple(dict.fromkeys(t for t, _ in BUILDERS))}")
    return BUILDERS[task, model]()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
