"""Stopping a long job cleanly: Ctrl-C and ``kill`` alike stop a command with a checkpoint, and
a write that must not be cut in half holds them back until it has ended."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# The signals that stop a long job the way Ctrl-C does: SIGTERM is what ``kill``, a job
# scheduler's time limit and a container's stop send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stops_on_signals(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command's ``main``: while it runs, Ctrl-C (SIGINT) and ``kill`` (SIGTERM) both
    raise ``KeyboardInterrupt`` in the main thread, so a training run stops either way with a
    checkpoint. A shell starts background jobs (``nohup ... &`` in a script) with SIGINT ignored,
    and Python leaves it ignored: this takes it back. The handlers from before return after."""

    @functools.wraps(main)
    def main_stopped_by_signals(*args: Any, **kwargs: Any) -> int:
        if threading.current_thread() is not threading.main_thread():
            return main(*args, **kwargs)
        previous = {signum: signal.signal(signum, signal.default_int_handler) for signum in STOP_SIGNALS}
        try:
            return main(*args, **kwargs)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return main_stopped_by_signals


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C or ``kill`` (:data:`STOP_SIGNALS`) back until the block has ended, then
    deliver it: a write inside cannot be cut in half, and the signal still stops the program right
    after. Blocks may nest. Only the main thread handles signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # Each signal once, in the order it came: an ignored Ctrl-C first must not hide a kill.
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)  # now handled by the handler that was there before
