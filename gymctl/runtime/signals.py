"""One way to capture SIGINT/SIGTERM on the event loop: the first asks to stop, the second forces, exit restores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def force_exit(sig: int) -> None:
    """The default second-signal action: leave now, with the shell's code for an interrupt (130)."""
    os._exit(130)


@contextlib.contextmanager
def capture_signals(
    on_stop: Callable[[int], None],
    on_force: Callable[[int], None] = force_exit,
    signals: tuple[int, ...] = STOP_SIGNALS,
) -> Iterator[None]:
    """While inside: the first of `signals` calls `on_stop(sig)`, the second `on_force(sig)`, later ones nothing.

    Handlers go on the running loop (they run in it, between callbacks, like uvicorn's); on exit the
    loop's handlers are removed and whatever handled each signal before is put back.
    """
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in signals}
    count = 0

    def handler(sig: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            on_stop(sig)
        elif count == 2:
            on_force(sig)

    for sig in signals:
        loop.add_signal_handler(sig, handler, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            if previous[sig] is not None:  # None: set outside Python; leave what remove_signal_handler put
                signal.signal(sig, previous[sig])
