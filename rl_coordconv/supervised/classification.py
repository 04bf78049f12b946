"""The classification control: a "what, not where" task, where CoordConv should change little.

The paper puts one CoordConv layer at the bottom of ResNet-50 on ImageNet and reports only a
small gain. ImageNet cannot be had here, so the control is scikit-learn's 8x8 digits (1,797
images that ship with the package), each pasted at a seeded random offset on a 16x16 canvas so
that the digit's identity, not its position, is what is learned; train and test hold different
digit images. A small ResNet (a 3x3 stem, three residual blocks, global average pooling) is
trained with and without a CoordConv stem, over several seeds, and the test accuracies are
compared with a t-interval over the seeds.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rl_coordconv.analysis.statistics import mean_interval
from rl_coordconv.supervised.archs import ARCHS, conv_layer
from rl_coordconv.supervised.fitting import batches_per_epoch, fit, minimize
from rl_coordconv.supervised.models import count_parameters
from rl_coordconv.supervised.settings import validate_settings

CANVAS = 16
DIGIT = 8


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, ``(1797, 8, 8)`` float64 in [0, 16] and ``(1797,)`` labels, read from the
    file scikit-learn ships (``load_digits`` reads the same file, after seconds of importing sklearn)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the classification control reads scikit-learn's digits: pip install scikit-learn")
    table = np.loadtxt(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    return table[:, :-1].reshape(-1, DIGIT, DIGIT), table[:, -1].astype(np.int64)


def digit_canvases(seed: int, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_images, train_labels, test_images, test_labels)``: images ``(N, 1, 16, 16)`` in
    [0, 1], each digit at a uniform offset; a seeded split of the 1,797 digit images."""
    digit_images, digit_labels = load_digits()
    rng = np.random.default_rng(seed)
    count = len(digit_images)
    offsets = rng.integers(0, CANVAS - DIGIT + 1, size=(count, 2))
    canvases = np.zeros((count, 1, CANVAS, CANVAS), dtype=np.float32)
    for k, (row, col) in enumerate(offsets):
        canvases[k, 0, row : row + DIGIT, col : col + DIGIT] = digit_images[k] / 16.0
    order = rng.permutation(count)
    test, train = order[: round(test_fraction * count)], order[round(test_fraction * count) :]
    images, labels = torch.from_numpy(canvases), torch.from_numpy(digit_labels)
    return images[train], labels[train], images[test], labels[test]


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """``(B, 1, 16, 16)`` -> ``(B, 10)`` logits; the stem is a ``CoordConv2d`` for ``arch="coordconv"``
    (the paper's one CoordConv layer at the bottom) and a plain convolution otherwise."""

    def __init__(self, arch: str, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_layer(arch, 1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(
            ResidualBlock(width, width), ResidualBlock(width, 2 * width, stride=2), ResidualBlock(2 * width, 2 * width)
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(images)).mean(dim=(2, 3)))


@dataclass
class ClassificationConfig:
    arch: str = "coordconv"
    seed: int = 0
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting and what is accepted."""
        validate_settings(self, {"arch": ARCHS}, ("epochs", "batch_size"))


@dataclass
class ClassificationResult:
    config: ClassificationConfig
    parameters: int
    seconds: float
    train_accuracy: float
    test_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list, repr=False)  # fit's records, one per epoch


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def train_classifier(config: ClassificationConfig, progress: bool = True, writer=None) -> ClassificationResult:
    """Train one :class:`SmallResNet` on the digit canvases of ``config.seed`` (Adam, cosine decay),
    checking the test and train accuracies (``test/accuracy``, ``train/accuracy``) after each epoch."""
    config.validate()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    train_images, train_labels, test_images, test_labels = (part.to(device) for part in digit_canvases(config.seed))
    model = SmallResNet(config.arch).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * batches_per_epoch(len(train_images), config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def step(indices: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(model(train_images[indices]), train_labels[indices])
        minimize(optimizer, loss)
        return {"loss": loss}

    fitted = fit(
        model,
        step,
        len(train_images),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        schedule=schedule,
        check=lambda: {
            "test/accuracy": accuracy(model, test_images, test_labels),
            "train/accuracy": accuracy(model, train_images, train_labels),
        },
        device=device,
        progress=progress,
        description=f"classification/{config.arch}/seed{config.seed}",
        writer=writer,
    )
    return ClassificationResult(
        config,
        count_parameters(model),
        fitted.seconds,
        accuracy(model, train_images, train_labels),
        accuracy(model, test_images, test_labels),
        fitted.history,
    )


def compare(results: list[ClassificationResult]) -> dict[str, tuple[float, float, float]]:
    """Test accuracy per arch and CoordConv minus conv over the seeds both ran, each as
    :func:`mean_interval`; the difference is paired by seed."""
    by_arch = {arch: {r.config.seed: r.test_accuracy for r in results if r.config.arch == arch} for arch in ARCHS}
    summary = {arch: mean_interval(np.array(list(accuracies.values()))) for arch, accuracies in by_arch.items() if accuracies}
    seeds = sorted(set(by_arch["conv"]) & set(by_arch["coordconv"]))
    if seeds:
        summary["coordconv - conv"] = mean_interval(np.array([by_arch["coordconv"][s] - by_arch["conv"][s] for s in seeds]))
    return summary


def markdown(results: list[ClassificationResult], machine: str) -> str:
    summary = compare(results)
    seeds = sorted({r.config.seed for r in results})
    lines = [
        f"## Classification control: digits at random positions ({machine})",
        "",
        f"Test accuracy, mean over seeds {seeds} with its 95 % t-interval.",
        "",
        "| model | test accuracy | parameters | seconds per run |",
        "|---|---|---:|---:|",
    ]
    for arch in ARCHS:
        mine = [r for r in results if r.config.arch == arch]
        if mine:
            mean, low, high = summary[arch]
            lines.append(
                f"| {arch} | {mean:.4f} [{low:.4f}, {high:.4f}] | {mine[0].parameters:,} | "
                f"{np.mean([r.seconds for r in mine]):.0f} |"
            )
    if "coordconv - conv" in summary:
        mean, low, high = summary["coordconv - conv"]
        if len(seeds) < 2:
            verdict = "one seed: no interval, no verdict"
        elif low <= 0 <= high:
            verdict = "no meaningful difference (the interval holds 0)"
        else:
            verdict = "CoordConv better" if low > 0 else "CoordConv worse"
        lines += ["", f"CoordConv - conv, paired by seed: {mean:+.4f} [{low:+.4f}, {high:+.4f}]: {verdict}."]
    return "\n".join(lines) + "\n"
