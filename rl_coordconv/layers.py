"""CoordConv layers (Liu et al., 2018, arXiv 1807.03247).

A CoordConv layer is a convolution whose input carries two (or three) extra channels holding each
pixel's position: the row index and the column index, each scaled to [-1, 1], and optionally the
radius ``r = sqrt(row^2 + col^2)``.

``CoordConv2d`` gives exactly ``conv(AddCoords(x))`` without concatenating batch-sized coordinate
tensors. Convolution is linear in its input channels, so

    conv(concat(x, c)) = conv_x(x) + conv_c(c),

and ``conv_c(c)`` does not depend on the batch: it is computed once per forward at batch size 1
and broadcast-added. The weight stays ONE tensor of shape ``(out, in + 2 [+1], k, k)``, so state
dicts match the layout of a naive concat implementation.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def coordinate_channels(
    height: int,
    width: int,
    with_r: bool = False,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The coordinate channels for one ``height x width`` image.

    :return: ``(1, 2, H, W)`` (``(1, 3, H, W)`` with ``with_r``): channel 0 is the row index,
        channel 1 the column index, each ``2 * idx / (size - 1) - 1`` in [-1, 1] (0 where the size
        is 1); channel 2 is ``sqrt(row^2 + col^2)``, centred on the image middle.
    """
    if height < 1 or width < 1:
        raise ValueError(f"coordinate channels need a positive height and width, got {height} x {width}")
    # Built in float32 and cast once: linspace in float16/bfloat16 loses the exact endpoints.
    rows = _unit_range(height, device).view(height, 1).expand(height, width)
    columns = _unit_range(width, device).view(1, width).expand(height, width)
    channels = [rows, columns]
    if with_r:
        channels.append(torch.sqrt(rows**2 + columns**2))
    return torch.stack(channels).unsqueeze(0).to(dtype)


def _unit_range(size: int, device: torch.device | str | None) -> torch.Tensor:
    if size == 1:
        return torch.zeros(1, device=device)
    return torch.linspace(-1.0, 1.0, size, device=device)


class _CoordinateCache(nn.Module):
    """Holds the coordinate channels of the last input size as a non-persistent buffer.

    The buffer follows ``module.to(device)`` and is rebuilt only when the input's height, width,
    device or dtype changes, so a forward pass never copies coordinates from the host.
    """

    def __init__(self, with_r: bool) -> None:
        super().__init__()
        self.with_r = with_r
        self.register_buffer("coords", torch.empty(0), persistent=False)

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        height, width = like.shape[-2:]
        cached = self.coords
        if cached.shape[-2:] != (height, width) or cached.device != like.device or cached.dtype != like.dtype:
            cached = coordinate_channels(height, width, self.with_r, device=like.device, dtype=like.dtype)
            self.coords = cached
        return cached


def _check_image_batch(x: torch.Tensor, layer: str, in_channels: int | None = None) -> None:
    if x.dim() != 4:
        raise ValueError(f"{layer} expects a (B, C, H, W) batch, got a tensor of shape {tuple(x.shape)}")
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"{layer} was built for {in_channels} input channels, got a batch of shape {tuple(x.shape)}"
        )


class AddCoords(nn.Module):
    """Appends coordinate channels to a batch of images.

    ``(B, C, H, W) -> (B, C + 2, H, W)``, or ``C + 3`` with ``with_r``: row index, column index,
    then radius, as in :func:`coordinate_channels`. Any H x W, batch size, dtype and device.
    """

    def __init__(self, with_r: bool = False) -> None:
        super().__init__()
        self.with_r = with_r
        self.coordinates = _CoordinateCache(with_r)

    @property
    def num_coordinate_channels(self) -> int:
        return 3 if self.with_r else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_batch(x, "AddCoords")
        coords = self.coordinates(x)
        return torch.cat([x, coords.expand(x.shape[0], -1, -1, -1)], dim=1)

    def extra_repr(self) -> str:
        return f"with_r={self.with_r}"


class CoordConv2d(nn.Conv2d):
    """Drop-in for ``nn.Conv2d`` that sees each pixel's coordinates.

    ``CoordConv2d(C, O, k, ...)(x)`` equals ``nn.Conv2d(C + 2, O, k, ...)(AddCoords()(x))`` with
    the same weight, for any stride, padding (and padding mode) and dilation. ``in_channels`` is
    the number of channels of the input WITHOUT coordinates; ``weight`` has shape
    ``(O, C + 2 [+1], k, k)``, its last 2 (or 3) input channels acting on the coordinates.

    :param with_r: also append the radius channel ``sqrt(row^2 + col^2)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        with_r: bool = False,
    ) -> None:
        if groups != 1:
            raise ValueError(
                f"CoordConv2d supports groups=1 only, got groups={groups}: the coordinate channels "
                "belong to no input group. Use AddCoords followed by a grouped nn.Conv2d instead."
            )
        self.image_channels = in_channels
        self.with_r = with_r
        super().__init__(
            in_channels + (3 if with_r else 2),
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=1,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.coordinates = _CoordinateCache(with_r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_batch(x, "CoordConv2d", self.image_channels)
        image_weight = self.weight[:, : self.image_channels]
        coordinate_weight = self.weight[:, self.image_channels :]
        out = self._conv_forward(x, image_weight, self.bias)
        coordinate_term = self._conv_forward(self.coordinates(x), coordinate_weight, None)
        # In place is safe for autograd: convolution does not keep its output for backward.
        return out.add_(coordinate_term)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, image_channels={self.image_channels}, with_r={self.with_r}"
