"""CoordConv layers (Liu et al., 2018, arXiv 1807.03247).

A CoordConv layer is a convolution whose input carries two (or three) extra channels holding each
pixel's position: the row index and the column index, each scaled to [-1, 1], and optionally the
radius ``r = sqrt(row^2 + col^2)``.

``CoordConv2d`` gives exactly ``conv(AddCoords(x))`` without concatenating batch-sized coordinate
tensors. Convolution is linear in its input channels, so

    conv(concat(x, c)) = conv_x(x) + conv_c(c),

and ``conv_c(c)`` does not depend on the batch: it is computed once per forward, as one small
matrix product of the coordinate weights with the coordinate patches (cached per input size), and
broadcast-added. Where autograd does not record on CPU (rollouts, target networks, evaluation),
it is reused for as long as the weight keeps its values. The weight stays ONE tensor of shape
``(out, in + 2 [+1], k, k)``, so state dicts match the layout of a naive concat implementation.

Which of the two exact forms is cheaper depends on the device. On CPU the broadcast-add costs
1.03x a plain convolution where a concat costs 1.07-1.27x (docs/benchmarks.md). On a GPU (H200,
2026-11-28) the network takes under 2 ms and the broadcast-add's extra kernels count: it cost
1.22-1.49x, against 1.05-1.15x for a naive concat network (``AddCoords`` then ``nn.Conv2d``).
``CoordConv2d``'s own concat path came after that measurement and has not yet been timed on a
GPU; ``CoordConv2d.path = "auto"`` takes the broadcast-add on CPU and, on the strength of the
naive concat's numbers, the concat path (coordinate channels cached on the device) elsewhere,
until ``scripts/bench_layers.py --device cuda`` measures both paths of the layer itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    # Built in float64 and cast once: exact to float64 rounding, and float16/bfloat16 keep the
    # exact endpoints that a low-precision linspace loses.
    rows = _unit_range(height, device).view(height, 1).expand(height, width)
    columns = _unit_range(width, device).view(1, width).expand(height, width)
    channels = [rows, columns]
    if with_r:
        channels.append(torch.sqrt(rows**2 + columns**2))
    return torch.stack(channels).unsqueeze(0).to(dtype)


def _unit_range(size: int, device: torch.device | str | None) -> torch.Tensor:
    """``2 * idx / (size - 1) - 1`` for ``idx`` in ``0 .. size - 1``, float64 (zero when size is 1)."""
    if size == 1:
        return torch.zeros(1, device=device, dtype=torch.float64)
    return 2.0 * torch.arange(size, device=device, dtype=torch.float64) / (size - 1) - 1.0


class _CoordinateChannelsBuilder:
    """``(height, width, device, dtype) -> coordinate_channels(...)`` for one ``with_r``: a named
    class, not a lambda, so that the layers pickle (``torch.save`` of a whole model, process pools)."""

    def __init__(self, with_r: bool) -> None:
        self.with_r = with_r

    def __call__(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return coordinate_channels(height, width, self.with_r, device=device, dtype=dtype)


class _CoordinateCache:
    """Holds a tensor built from the input's height and width, rebuilt only when the input's
    height, width, device or dtype changes, so a forward pass never copies coordinates from the host.

    A plain object rather than a module: it is called on every forward, and ``nn.Module.__call__``
    measurably slows small batches (docs/benchmarks.md). Nothing here belongs in a state dict.
    The tensor is built outside inference mode, so a first call under ``torch.inference_mode()``
    does not leave a tensor that a later training step cannot save for backward.

    :param build: ``(height, width, device, dtype) -> tensor``.
    """

    def __init__(self, build: Callable[[int, int, torch.device, torch.dtype], torch.Tensor]) -> None:
        self.build = build
        self.cached: torch.Tensor | None = None
        self._key: tuple | None = None

    def __getstate__(self) -> dict:
        """Pickled and deep-copied without the tensor: it is rebuilt on the first call after loading,
        on whatever device the layer is then used."""
        return {"build": self.build, "cached": None, "_key": None}

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.shape[-2], like.shape[-1], like.device, like.dtype)
        if key != self._key:
            with torch.inference_mode(False):
                self.cached, self._key = self.build(*key), key
        return self.cached


class _FrozenParts(NamedTuple):
    """What CoordConv2d reuses while autograd does not record: see ``CoordConv2d._frozen_parts``."""

    key: tuple  # input height, width, device, dtype; weight dtype; autocast dtype (None: off)
    weight: torch.Tensor  # a snapshot of the weight these parts were computed from
    image_weight: torch.Tensor  # weight[:, :in_channels], contiguous
    coordinate_term: torch.Tensor  # (O, H_out * W_out)


def _check_image_batch(x: torch.Tensor, layer: str, in_channels: int | None = None) -> None:
    if x.dim() != 4:
        raise ValueError(f"{layer} expects a (B, C, H, W) batch, got a tensor of shape {tuple(x.shape)}")
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(f"{layer} was built for {in_channels} input channels, got a batch of shape {tuple(x.shape)}")


class AddCoords(nn.Module):
    """Appends coordinate channels to a batch of images.

    ``(B, C, H, W) -> (B, C + 2, H, W)``, or ``C + 3`` with ``with_r``: row index, column index,
    then radius, as in :func:`coordinate_channels`. Any H x W, batch size, dtype and device.
    """

    def __init__(self, with_r: bool = False) -> None:
        super().__init__()
        self.with_r = with_r
        self.coordinates = _CoordinateCache(_CoordinateChannelsBuilder(with_r))

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
    :param path: how the coordinates enter: ``"broadcast_add"`` (the coordinate term computed once
        and added), ``"concat"`` (cached coordinate channels concatenated to the batch), or
        ``"auto"`` (the cheaper by device: broadcast-add on CPU, concat on CUDA). Every path gives
        the same result and gradients; the state dict does not depend on it.
    """

    PATHS = ("auto", "broadcast_add", "concat")

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
        path: str = "auto",
    ) -> None:
        if path not in self.PATHS:
            raise ValueError(f"CoordConv2d path must be one of {self.PATHS}, got {path!r}")
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
        self.path = path
        self.coordinate_patches = _CoordinateCache(self._coordinate_patches)
        self.coordinates = _CoordinateCache(_CoordinateChannelsBuilder(with_r))
        self._frozen: _FrozenParts | None = None

    def __getstate__(self) -> dict:
        """Pickled and deep-copied without the parts reused between rollout calls (rebuilt on use)."""
        return {**super().__getstate__(), "_frozen": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_batch(x, "CoordConv2d", self.image_channels)
        if self.path == "concat" or (self.path == "auto" and x.device.type != "cpu"):
            coords = self.coordinates(x).expand(x.shape[0], -1, -1, -1)
            return self._conv_forward(torch.cat([x, coords], dim=1), self.weight, self.bias)
        weight = self.weight
        # On CUDA, comparing values would synchronize the device: there the term is recomputed.
        if (torch.is_grad_enabled() and weight.requires_grad) or weight.device.type != "cpu":
            image_weight, coordinate_term = weight[:, : self.image_channels], self._coordinate_term(x)
        else:
            image_weight, coordinate_term = self._frozen_parts(x)
        out = self._conv_forward(x, image_weight, self.bias)
        # In place is safe for autograd: convolution does not keep its output for backward.
        return out.add_(coordinate_term.view(1, *out.shape[1:]))

    def _frozen_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Without autograd on CPU (rollouts, target networks, evaluation): the contiguous image
        weight and the coordinate term, reused for as long as the weight keeps its values.

        Reuse is decided by comparing values, not version counters: SB3's ``polyak_update`` writes
        target networks through ``.data``, which no version counter sees, and a stale term would be
        silently wrong. The comparison is one pass over the weight; it saves the weight slice and
        the coordinate matmul, which dominate small batches (docs/benchmarks.md)."""
        weight = self.weight
        # Under autocast the term is computed (and kept) in the compute dtype: a term kept from
        # a bfloat16 call must not serve a float32 one.
        autocast = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
        key = (x.shape[-2], x.shape[-1], x.device, x.dtype, weight.dtype, autocast)
        frozen = self._frozen
        if frozen is None or frozen.key != key or not torch.equal(frozen.weight, weight):
            # Normal tensors even under torch.inference_mode(), so later autograd may use them.
            with torch.inference_mode(False), torch.no_grad():
                frozen = _FrozenParts(
                    key,
                    weight.clone(),
                    weight[:, : self.image_channels].contiguous(),
                    self._coordinate_term(x),
                )
            self._frozen = frozen
        return frozen.image_weight, frozen.coordinate_term

    def _coordinate_term(self, x: torch.Tensor) -> torch.Tensor:
        """``conv_c(coordinates)`` as ``(O, H_out * W_out)``: one small matmul of the coordinate
        weights with the cached patches, cheaper than a batch-1 convolution call."""
        # Each output's coordinate weights end its flattened weight row: a strided view, no copy
        # (reshape copies only a weight in another memory format, e.g. channels_last).
        flat_weight = self.weight.reshape(self.out_channels, -1)
        patches = self.coordinate_patches(x)
        return flat_weight[:, flat_weight.shape[1] - patches.shape[0] :] @ patches

    def _coordinate_patches(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The coordinate channels, padded as this layer pads its input and unfolded into the
        patches the kernel sees: ``(n_coords * kh * kw, H_out * W_out)``."""
        coords = coordinate_channels(height, width, self.with_r, device=device, dtype=torch.float64)
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        coords = F.pad(coords, self._reversed_padding_repeated_twice, mode=mode)
        patches = F.unfold(coords, self.kernel_size, dilation=self.dilation, stride=self.stride)
        return patches[0].to(dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, image_channels={self.image_channels}, with_r={self.with_r}, path={self.path!r}"
