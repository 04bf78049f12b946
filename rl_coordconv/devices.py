"""The devices a run accepts: ``cpu``, ``cuda`` and ``cuda:<index>`` (and, where a command
resolves it, ``auto``)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA GPU where there is one, else the CPU (as SB3 resolves it); any
    other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str, *, allow_auto: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` unless it is a device this package runs on and this
    machine has: torch also parses ``mps``, ``meta`` or ``xla``, which fail later, deep in a step."""
    accepted = ("auto, " if allow_auto else "") + "cpu, cuda or cuda:<index>"
    if allow_auto and name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use {accepted}")
    if device.type == "cpu":
        return
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
            f"use {'auto or cpu' if allow_auto else 'cpu'}"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPUs "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
