"""Not-so-Clevr (Liu et al., 2018): one 9x9 square per 64x64 canvas, at every possible centre.

Centres ``(i, j)`` (row, column) run over 4..59 each: 56 x 56 = 3136 examples. Each example has
its centre, the one-hot image of the centre pixel and the image of the 9x9 square around it.
Two splits: ``uniform`` (a seeded random 80/20 split) and ``quadrant`` (test = every centre in the
bottom-right quadrant, i > 32 and j > 32: 27 x 27 = 729 examples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CANVAS = 64
HALF_SIZE = 4  # the square spans centre - 4 .. centre + 4: 9 x 9 pixels
FIRST_CENTRE, LAST_CENTRE = HALF_SIZE, CANVAS - HALF_SIZE - 1  # 4 .. 59
QUADRANT_EDGE = CANVAS // 2  # test quadrant: both coordinates > 32
SPLITS = ("uniform", "quadrant")


def centres() -> np.ndarray:
    """All square centres, ``(3136, 2)`` int64 ``(row, column)``, row-major."""
    axis = np.arange(FIRST_CENTRE, LAST_CENTRE + 1)
    rows, columns = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([rows.ravel(), columns.ravel()], axis=1)


def one_hot_images(points: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` integer centres -> ``(N, 1, 64, 64)`` float images, 1 at each centre."""
    images = torch.zeros(len(points), 1, CANVAS, CANVAS, device=points.device)
    images[torch.arange(len(points), device=points.device), 0, points[:, 0], points[:, 1]] = 1.0
    return images


def square_images(points: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` integer centres -> ``(N, 1, 64, 64)`` float images of the 9x9 squares."""
    axis = torch.arange(CANVAS, device=points.device)
    inside_rows = (axis[None, :] - points[:, :1]).abs() <= HALF_SIZE  # (N, 64)
    inside_columns = (axis[None, :] - points[:, 1:]).abs() <= HALF_SIZE
    return (inside_rows[:, :, None] & inside_columns[:, None, :]).unsqueeze(1).float()


def normalized_coordinates(points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates -> [-1, 1], on the same scale as AddCoords: ``2 * p / 63 - 1``."""
    return 2.0 * points.float() / (CANVAS - 1) - 1.0


def unit_coordinates(points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates -> [0, 1]: ``p / 63``, the regression target (the official code uses p / 64)."""
    return points.float() / (CANVAS - 1)


def split_indices(split: str, seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices into :func:`centres` of the train and test examples of ``split``."""
    points = centres()
    if split == "quadrant":
        in_test = (points[:, 0] > QUADRANT_EDGE) & (points[:, 1] > QUADRANT_EDGE)
        return np.flatnonzero(~in_test), np.flatnonzero(in_test)
    if split == "uniform":
        order = np.random.default_rng(seed).permutation(len(points))
        n_test = round(test_fraction * len(points))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")


@dataclass
class NotSoClevr:
    """One split: the train and test centres as ``(N, 2)`` int64 tensors on ``device``. Inputs and
    targets (coordinates, one-hot and square images) are made from them per batch."""

    split: str
    train_points: torch.Tensor  # (N_train, 2) int64
    test_points: torch.Tensor  # (N_test, 2) int64

    @classmethod
    def build(cls, split: str, seed: int = 0, device: torch.device | str = "cpu") -> NotSoClevr:
        train, test = split_indices(split, seed)
        points = torch.as_tensor(centres())
        return cls(split, points[train].to(device), points[test].to(device))
