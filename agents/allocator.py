"""Keep freed host memory for reuse, so that CPU training does not page-fault every batch.

glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MB) with fresh ``mmap`` and
returns them to the system on ``free``. A CPU learner step at batch 512 allocates tensors of
that size several times over (a float batch of 4x84x84 stacks is 58 MB, the first layer's output
26 MB): each is then page-faulted in anew, zero-filled by the kernel, on every step. That cost
29 % of an Ape-X learner step on two cores (docs/benchmarks.md). PyTorch's CPU performance guide
answers this by preloading jemalloc or tcmalloc; raising glibc's mmap and trim thresholds does
the same for these sizes without a preloaded library: freed blocks stay in the heap and the next
step's tensors reuse them. The price is a heap that settles a few blocks above the peak in use
(about 150 MB more resident memory for that learner). Blocks of 1 GiB and more (a large replay's
frame array) are still mapped and unmapped directly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

MMAP_THRESHOLD = 1 << 30  # bytes: smaller blocks come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # bytes of free heap top kept rather than returned to the system

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc keep freed blocks below 1 GiB for reuse instead of unmapping them.

    Process-wide and idempotent; call it once at the start of a training process.

    :return: whether the thresholds were set (False where the C library is not glibc, e.g. macOS).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
