"""Mixed precision: the feature extractor in bfloat16, everything else in float32.

With ``precision="bf16"`` every SB3 features extractor of a policy (the Nature CNN's convolutions
and its 512-unit linear layer: nearly all of an Atari agent's FLOPs) runs under
``torch.autocast(dtype=torch.bfloat16)``, and its features come back as float32. The heads
(logits, values, Q-values), the losses, returns, TD targets, priorities and importance weights are
then float32 as in ``fp32``, and so are the weights, their gradients and the optimizer's state:
autocast only lowers the precision of the compute inside the extractor. A checkpoint holds no
trace of the precision it was trained in, so it loads into either.

bfloat16 pays only where the hardware computes it natively: on a CPU with AVX-512 BF16 or AMX
(or an Arm CPU with BF16), on a GPU that supports it. Elsewhere it is emulated and slower than
float32, so :func:`check_precision` refuses it there.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch
import torch.nn as nn
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

PRECISIONS = ("fp32", "bf16")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: x86 AVX-512 BF16 or AMX; Arm BF16.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as Linux lists them (``flags`` on x86, ``Features`` on Arm); None
    where ``/proc/cpuinfo`` cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        name, _, values = line.partition(":")
        if name.strip() in ("flags", "Features"):
            flags.update(values.split())
    return flags


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS` and, for ``bf16``,
    ``device`` computes bfloat16 natively (it would be slower than float32 otherwise)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        return
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("precision bf16 on CUDA, but this torch sees no CUDA GPU; use precision=fp32")
        # Native bfloat16 from compute capability 8.0 (Ampere) on; torch.cuda.is_bf16_supported()
        # also counts emulation, which is slower than fp32.
        capability = torch.cuda.get_device_capability(device)
        if capability[0] < 8:
            raise ValueError(
                f"precision bf16 on {torch.cuda.get_device_name(device)} (compute capability {capability[0]}."
                f"{capability[1]}): no native bfloat16 before 8.0, so bf16 would be slower than fp32 there; "
                "use precision=fp32"
            )
        return
    flags = cpu_flags()
    if flags is None:
        raise ValueError(
            f"precision bf16: cannot tell whether this {platform.machine()} CPU computes bfloat16 "
            "natively (no /proc/cpuinfo), and bf16 is slower than fp32 where it does not; use precision=fp32"
        )
    if not flags & set(NATIVE_BFLOAT16_FLAGS):
        lacking = "avx512_bf16 (AVX-512 BF16) and amx_bf16 (AMX)" if "avx512f" in flags or "sse2" in flags else "bf16"
        raise ValueError(
            f"precision bf16: this CPU lacks {lacking}, so bfloat16 would be emulated there and be "
            "slower than fp32; use precision=fp32"
        )


def _forward_in_bfloat16(extractor: nn.Module, observations: torch.Tensor) -> torch.Tensor:
    """``extractor``'s own forward under bfloat16 autocast, its features returned as float32."""
    with torch.autocast(observations.device.type, dtype=torch.bfloat16):
        features = type(extractor).forward(extractor, observations)
    return features.float()


def use_precision(network: nn.Module, precision: str) -> nn.Module:
    """Make every features extractor inside ``network`` (an SB3 policy, its Q-networks included)
    compute in ``precision``; returns ``network``. Applied to a network, not saved with it: call it
    again after loading a checkpoint. The weights and state dict do not change."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    for module in network.modules():
        if isinstance(module, BaseFeaturesExtractor):
            module.__dict__.pop("forward", None)  # back to the class's own forward (fp32)
            if precision == "bf16":
                # An instance attribute, found before the class's forward by nn.Module.__call__.
                module.forward = functools.partial(_forward_in_bfloat16, module)
    return network


def precision_of(network: nn.Module) -> str:
    """The precision :func:`use_precision` last gave ``network``'s extractors (``fp32`` if never)."""
    extractors = [module for module in network.modules() if isinstance(module, BaseFeaturesExtractor)]
    return "bf16" if any("forward" in module.__dict__ for module in extractors) else "fp32"
