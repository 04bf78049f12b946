"""Objects found in generated images, and the position measures of the GAN and VAE experiments.

A generated image is read the simple way the experiment calls for: every pixel close to a
palette colour belongs to that colour, and each connected region of one colour (OpenCV's
connected components) large enough to be a shape is an object, at its centroid. The measures
then compare where objects appear (against the data) and how they move along a latent
interpolation (smoothly, or jumping, vanishing, splitting).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import torch

from rl_coordconv.supervised.shapes import PALETTE, SIZE

COLOUR_DISTANCE = 0.4  # RGB distance to a palette colour within which a pixel has that colour
MIN_AREA = 8  # pixels; a whole shape has 29 (circle) or 49 (square)


class FoundObject(NamedTuple):
    colour: int  # index in PALETTE
    row: float  # centroid, pixels
    col: float
    area: int  # pixels


def find_objects(image: torch.Tensor | np.ndarray) -> list[FoundObject]:
    """The objects in one ``(3, H, W)`` image in [0, 1], ordered by colour then position."""
    pixels = np.asarray(image, dtype=np.float32).transpose(1, 2, 0)  # (H, W, 3)
    distances = np.linalg.norm(pixels[:, :, None, :] - PALETTE[None, None], axis=-1)  # (H, W, colours)
    nearest = distances.argmin(axis=-1)
    coloured = distances.min(axis=-1) < COLOUR_DISTANCE
    found = []
    for colour in range(len(PALETTE)):
        mask = (coloured & (nearest == colour)).astype(np.uint8)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for label in range(1, count):  # 0 is the background
            area = int(stats[label, cv2.CC_STAT_AREA])
            if area >= MIN_AREA:
                col, row = centroids[label]
                found.append(FoundObject(colour, float(row), float(col), area))
    return found


def centre_histogram(centres: np.ndarray, cells: int = 8) -> np.ndarray:
    """``(cells, cells)`` fractions of the ``(M, 2)`` ``(row, col)`` centres falling in each cell of
    the canvas cut into ``cells x cells`` equal squares (all zeros for no centres)."""
    histogram = np.zeros((cells, cells))
    if len(centres):
        index = np.clip((np.asarray(centres) * cells / SIZE).astype(int), 0, cells - 1)
        np.add.at(histogram, (index[:, 0], index[:, 1]), 1.0)
        histogram /= len(centres)
    return histogram


def position_coverage(data_centres: np.ndarray, generated_centres: np.ndarray, cells: int = 8) -> dict[str, float]:
    """How well generated object positions cover the data's.

    - ``histogram_distance``: total variation between the two centre histograms (0: the same
      distribution over cells, 1: disjoint, or no generated object at all);
    - ``cells_reached``: the fraction of cells holding data centres where some generated object lies.
    """
    data, generated = centre_histogram(data_centres, cells), centre_histogram(generated_centres, cells)
    occupied = data > 0
    return {
        "histogram_distance": 0.5 * float(np.abs(data - generated).sum()) if len(generated_centres) else 1.0,
        "cells_reached": float((generated[occupied] > 0).mean()),
    }


def interpolation_measures(paths: list[list[list[FoundObject]]]) -> dict[str, float]:
    """How objects move along latent interpolations.

    :param paths: per interpolation, the objects found in each of its frames, in order.
    :return: ``mean_jump``: pixels an object's centre moves between consecutive frames, over
        the steps where the same colours are present in both frames (each object matched to the
        nearest of its colour in the next frame); ``broken_steps``: the fraction of steps where
        the objects change (one vanishes, appears or splits: the colours found differ) or there
        is no object to follow (neither frame holds one).
    """
    jumps: list[float] = []
    steps = broken = 0
    for frames in paths:
        for before, after in zip(frames, frames[1:]):
            steps += 1
            if not before and not after or sorted(o.colour for o in before) != sorted(o.colour for o in after):
                broken += 1
                continue
            for obj in before:
                same = [o for o in after if o.colour == obj.colour]
                jumps.append(min(np.hypot(o.row - obj.row, o.col - obj.col) for o in same))
    return {
        "mean_jump": float(np.mean(jumps)) if jumps else float("nan"),
        "broken_steps": broken / steps if steps else float("nan"),
    }


def object_count_error(images: torch.Tensor, true_counts: np.ndarray) -> float:
    """Mean absolute difference between the objects found in ``images`` and ``true_counts``."""
    found = np.array([len(find_objects(image)) for image in images])
    return float(np.abs(found - true_counts).mean())
