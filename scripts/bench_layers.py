"""Cost of CoordConv in the Nature CNN: plain nn.Conv2d vs naive concat vs CoordConv2d.

Times SB3's NatureCNN (the "conv" arch), the same network with AddCoords concatenated before a
wider first convolution (the textbook "naive" CoordConv), and our CoordConvNatureCNN on each of
CoordConv2d's paths ("broadcast_add", "concat", and "coordconv": the path the layer takes on the
device, broadcast-add on CPU and concat on CUDA), on a training step (forward + backward) and on
inference.
The variants run interleaved in each round; ratios are taken within a round and the median over
rounds is reported, so slow drifts of a noisy machine cancel out. A second, identical Nature CNN
("control") is timed the same way: its ratio to the first shows the noise floor of the ratios.
"add-only" is a bound, not an implementation: the first layer is a plain convolution that adds a
precomputed coordinate term, i.e. what any broadcast-add CoordConv costs if the term were free.

    python scripts/bench_layers.py [--device cuda] [--rounds 61] [--window 0.02] [--precision bf16]
    python scripts/bench_layers.py --memory-format [--precision bf16]

``--precision bf16`` runs every variant under bfloat16 autocast, as ``precision=bf16`` runs the
agents' feature extractors (:mod:`rl_coordconv.precision`): the ratios are then within bf16.
``--memory-format`` times the conv and CoordConv networks in channels_last memory (weights and
input) against the same networks in the default layout, and prints the largest difference of
their outputs and weight gradients (equal up to float rounding, or the layout is of no use).
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.torch_layers import NatureCNN

from rl_coordconv.extractors import CoordConvNatureCNN
from rl_coordconv.layers import AddCoords, CoordConv2d
from rl_coordconv.precision import PRECISIONS, check_precision

ATARI = spaces.Box(0, 255, (4, 84, 84), np.uint8)


class NaiveCoordNatureCNN(nn.Module):
    """Concatenates coordinate channels to every batch, then a Nature CNN with 6 input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.add_coords = AddCoords()
        self.cnn = NatureCNN(spaces.Box(0, 255, (6, 84, 84), np.uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.add_coords(x))


class ConstantTermConv(nn.Module):
    """A convolution plus a fixed ``(1, O, H_out, W_out)`` term: CoordConv2d's extra elementwise
    pass, without computing the term or slicing the weight."""

    def __init__(self, conv: nn.Conv2d, term: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("term", term)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).add_(self.term)


def add_only_bound(device: torch.device) -> nn.Module:
    network = NatureCNN(ATARI)
    first = network.cnn[0]
    with torch.no_grad():
        term = torch.randn_like(first(torch.zeros(1, *ATARI.shape)))
    network.cnn[0] = ConstantTermConv(first, term)
    return network.to(device)


def coordconv_on_path(path: str, device: torch.device) -> nn.Module:
    """CoordConvNatureCNN with its CoordConv2d forced onto one path (``"auto"``: the layer's choice)."""
    network = CoordConvNatureCNN(ATARI).to(device)
    for layer in network.modules():
        if isinstance(layer, CoordConv2d):
            layer.path = path
    return network


def make_networks(device: torch.device) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "conv": NatureCNN(ATARI).to(device),
        "control": NatureCNN(ATARI).to(device),
        "naive": NaiveCoordNatureCNN().to(device),
        "add_only": add_only_bound(device),
        "coordconv": coordconv_on_path("auto", device),
        "broadcast_add": coordconv_on_path("broadcast_add", device),
        "concat": coordconv_on_path("concat", device),
    }


def time_call(fn, iterations: int, device: torch.device) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the timed GPU, not the default one
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iterations


def train_step(net: nn.Module, x: torch.Tensor):
    def step():
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()

    return step


def inference(net: nn.Module, x: torch.Tensor):
    def forward():
        with torch.inference_mode():
            net(x)

    return forward


def in_precision(fn, device: torch.device, precision: str):
    """``fn`` as is (fp32), or under bfloat16 autocast."""
    if precision == "fp32":
        return fn

    def in_bfloat16():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            fn()

    return in_bfloat16


def bench(device: torch.device, rounds: int, window: float, precision: str = "fp32") -> list[dict]:
    networks = make_networks(device)
    workloads = [
        ("train", 80, train_step),
        ("train", 32, train_step),
        ("inference", 8, inference),
        ("inference", 80, inference),
    ]
    rows = []
    for mode, batch, make_plain_fn in workloads:

        def make_fn(net, x, make_plain_fn=make_plain_fn):
            return in_precision(make_plain_fn(net, x), device, precision)

        x = torch.rand(batch, 4, 84, 84, device=device)
        # Enough calls per measurement to fill ``window`` seconds: short calls are noisy alone.
        iterations = max(1, math.ceil(window / time_call(make_fn(networks["conv"], x), 3, device)))
        seconds = {name: [] for name in networks}
        for _ in range(rounds):
            order = list(networks)
            random.shuffle(order)
            for name in order:
                seconds[name].append(time_call(make_fn(networks[name], x), iterations, device))
        ratios = {
            name: statistics.median(t / c for t, c in zip(seconds[name], seconds["conv"]))
            for name in networks
            if name != "conv"
        }
        rows.append(
            {
                "mode": mode,
                "batch": batch,
                **{f"{name}_ms": 1e3 * statistics.median(seconds[name]) for name in networks},
                **{f"{name}_ratio": ratio for name, ratio in ratios.items()},
            }
        )
        print(
            f"{mode:9s} B={batch:<3d} conv {rows[-1]['conv_ms']:7.2f} ms | "
            + " | ".join(f"{name} {ratio:.3f}x" for name, ratio in ratios.items()),
            flush=True,
        )
    return rows


def bench_memory_format(device: torch.device, rounds: int, window: float, precision: str = "fp32") -> list[dict]:
    """channels_last / default-layout time of the conv and CoordConv networks on each workload."""
    torch.manual_seed(0)
    defaults = {"conv": NatureCNN(ATARI).to(device), "coordconv": CoordConvNatureCNN(ATARI).to(device)}
    channels_last = {name: copy.deepcopy(net).to(memory_format=torch.channels_last) for name, net in defaults.items()}
    rows = []
    for mode, batch, make_plain_fn in [("train", 80, train_step), ("inference", 16, inference)]:
        x = torch.rand(batch, 4, 84, 84, device=device)
        x_last = x.contiguous(memory_format=torch.channels_last)
        for name in defaults:
            variants = {
                "default": in_precision(make_plain_fn(defaults[name], x), device, precision),
                "channels_last": in_precision(make_plain_fn(channels_last[name], x_last), device, precision),
            }
            iterations = max(1, math.ceil(window / time_call(variants["default"], 3, device)))
            seconds = {variant: [] for variant in variants}
            for _ in range(rounds):
                for variant in random.sample(list(variants), len(variants)):
                    seconds[variant].append(time_call(variants[variant], iterations, device))
            ratio = statistics.median(last / default for last, default in zip(seconds["channels_last"], seconds["default"]))
            difference = largest_difference(defaults[name], channels_last[name], x, x_last, device, precision)
            rows.append({"mode": mode, "batch": batch, "network": name, "ratio": ratio, "difference": difference})
            print(
                f"{mode:9s} B={batch:<3d} {name:9s} default {1e3 * statistics.median(seconds['default']):7.2f} ms | "
                f"channels_last {ratio:.3f}x | largest output/gradient difference {difference:.2e}",
                flush=True,
            )
    return rows


def largest_difference(
    default: nn.Module, channels_last: nn.Module, x: torch.Tensor, x_last: torch.Tensor, device: torch.device, precision: str
) -> float:
    """The largest absolute difference of the two networks' outputs and weight gradients on one batch."""
    results = []
    for net, inputs in ((default, x), (channels_last, x_last)):
        net.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            output = net(inputs)
        output.float().square().mean().backward()
        results.append([output.float(), *(p.grad.float() for p in net.parameters())])
    return max((a - b).abs().max().item() for a, b in zip(*results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=61, help="interleaved rounds; the median is reported")
    parser.add_argument(
        "--window", type=float, default=0.02, help="seconds timed per variant per round; short windows interleave finely"
    )
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="compute precision of every variant")
    parser.add_argument(
        "--memory-format", action="store_true", help="channels_last against the default layout, conv and CoordConv"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    try:
        check_precision(args.precision, device)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"Nature CNN on (B, 4, 84, 84); {name}; torch {torch.__version__}; {args.precision}; median of {args.rounds} rounds")
    (bench_memory_format if args.memory_format else bench)(device, args.rounds, args.window, args.precision)


if __name__ == "__main__":
    main()
