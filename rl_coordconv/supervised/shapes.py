"""Sort-of-CLEVR-like scenes: one or two coloured squares and circles on a black canvas.

The data set of the paper's GAN and VAE experiments, generated (nothing is downloaded): each
scene holds one or two objects, each a square or a circle of one of :data:`PALETTE`'s colours,
at a uniformly drawn centre, never touching another object. Everything is seeded: a seed gives
the same scenes on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SIZE = 32  # canvas side, pixels
RADIUS = 3  # a square's half side and a circle's radius: squares are 7x7, circles 29 pixels
SHAPES = ("square", "circle")
# Saturated RGB colours in [0, 1], far apart from each other and from the black background.
PALETTE = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
    ],
    dtype=np.float32,
)
# Centres at least this far apart on both axes' larger gap (Chebyshev): two shapes never touch.
MIN_GAP = 2 * RADIUS + 2


@dataclass(frozen=True)
class Scenes:
    """``N`` scenes: images and what is in them.

    :ivar images: ``(N, 3, SIZE, SIZE)`` float32 in [0, 1], channels RGB.
    :ivar objects: ``(N, 2, 4)`` int64 rows ``(shape, colour, row, col)`` of each object's index in
        :data:`SHAPES`, in :data:`PALETTE` and its centre pixel; ``-1`` rows where a scene has one object.
    """

    images: torch.Tensor
    objects: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def centres(self) -> np.ndarray:
        """``(M, 2)`` float64 ``(row, col)`` centres of all objects of all scenes."""
        present = self.objects[:, :, 0] >= 0
        return self.objects[present][:, 2:].astype(np.float64)


def draw(image: np.ndarray, shape: int, colour: int, row: int, col: int) -> None:
    """Paint one object into ``image`` (``(3, H, W)`` float, in place)."""
    rows, cols = np.ogrid[: image.shape[1], : image.shape[2]]
    if SHAPES[shape] == "square":
        mask = (np.abs(rows - row) <= RADIUS) & (np.abs(cols - col) <= RADIUS)
    else:
        mask = (rows - row) ** 2 + (cols - col) ** 2 <= RADIUS**2
    image[:, mask] = PALETTE[colour][:, None]


def generate(n: int, seed: int, max_objects: int = 2) -> Scenes:
    """``n`` scenes of 1 to ``max_objects`` (1 or 2) objects, uniformly placed and not touching."""
    if max_objects not in (1, 2):
        raise ValueError(f"max_objects must be 1 or 2, got {max_objects!r}")
    if n < 1:
        raise ValueError(f"n must be a positive number of scenes, got {n!r}")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, SIZE, SIZE), dtype=np.float32)
    objects = np.full((n, 2, 4), -1, dtype=np.int64)
    for scene in range(n):
        count = rng.integers(1, max_objects + 1)
        colours = rng.choice(len(PALETTE), size=count, replace=False)
        placed: list[tuple[int, int]] = []
        while len(placed) < count:
            row, col = (int(value) for value in rng.integers(RADIUS, SIZE - RADIUS, size=2))
            if all(max(abs(row - r), abs(col - c)) >= MIN_GAP for r, c in placed):
                placed.append((row, col))
        for k, (row, col) in enumerate(placed):
            shape = int(rng.integers(len(SHAPES)))
            draw(images[scene], shape, int(colours[k]), row, col)
            objects[scene, k] = (shape, colours[k], row, col)
    return Scenes(torch.from_numpy(images), objects)


def moving_object_pairs(pairs: int, seed: int, min_distance: float = 12.0) -> tuple[Scenes, Scenes]:
    """``pairs`` pairs of one-object scenes, the same shape in the same colour at two centres at
    least ``min_distance`` pixels apart: the ends of interpolations along which one object should
    move, neither fading nor changing. Pair ``k`` is scene ``k`` of the first and of the second."""
    if pairs < 1:
        raise ValueError(f"pairs must be a positive number, got {pairs!r}")
    rng = np.random.default_rng(seed)
    images = np.zeros((2, pairs, 3, SIZE, SIZE), dtype=np.float32)
    objects = np.full((2, pairs, 2, 4), -1, dtype=np.int64)
    for pair in range(pairs):
        shape, colour = int(rng.integers(len(SHAPES))), int(rng.integers(len(PALETTE)))
        while True:
            (row, col), (other_row, other_col) = rng.integers(RADIUS, SIZE - RADIUS, size=(2, 2))
            if np.hypot(row - other_row, col - other_col) >= min_distance:
                break
        for end, (r, c) in enumerate(((row, col), (other_row, other_col))):
            draw(images[end, pair], shape, colour, int(r), int(c))
            objects[end, pair, 0] = (shape, colour, r, c)
    first, second = (Scenes(torch.from_numpy(images[end]), objects[end]) for end in (0, 1))
    return first, second
