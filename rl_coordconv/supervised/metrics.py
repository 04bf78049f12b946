"""Metrics of the Not-so-Clevr tasks, each a mean over a batch, as a Python float."""

from __future__ import annotations

import torch

from rl_coordconv.supervised.data import CANVAS


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose argmax is the target. ``(B, K)`` logits, ``(B,)`` class indices."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def iou(logits: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean intersection over union of the painted pixels (logit > 0, i.e. sigmoid > 0.5) and the
    true masks, per example as in the official code. ``(B, P)`` logits, ``(B, P)`` 0/1 masks."""
    painted, truth = logits > 0, masks > 0.5
    intersection = (painted & truth).sum(dim=1)
    union = (painted | truth).sum(dim=1)
    return (intersection / union).mean().item()


def pixel_accuracy(unit_predictions: torch.Tensor, points: torch.Tensor) -> float:
    """Share of examples whose predicted centre rounds to the true pixel in both coordinates.
    ``(B, 2)`` predictions in [0, 1] units of ``pixel / 63``, ``(B, 2)`` integer pixels."""
    pixels = torch.round(unit_predictions * (CANVAS - 1))
    return (pixels == points).all(dim=1).float().mean().item()


def squared_error_pixels(unit_predictions: torch.Tensor, points: torch.Tensor) -> float:
    """Mean squared error per coordinate, in pixels squared."""
    return ((unit_predictions * (CANVAS - 1) - points) ** 2).mean().item()
