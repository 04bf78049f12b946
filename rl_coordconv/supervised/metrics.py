"""Metrics of the Not-so-Clevr tasks, each a mean over a batch, as a Python float."""

from __future__ import annotations

import torch



def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose argmax is the target. ``(B, K)`` logits, ``(B,)`` class indices."""
    return (logits.argmax(dim=1) == targets).float().mean().item()
