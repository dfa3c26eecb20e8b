"""capture_signals: the first SIGINT/SIGTERM asks to stop, the second forces, and the old handlers come back."""

from __future__ import annotations

import asyncio
import os
import signal

from gymctl.runtime.signals import capture_signals


async def _deliver(sig: int, seen: list[int]) -> None:
    """Send `sig` to this process and give the loop time to run its handler (between callbacks)."""
    before = len(seen)
    os.kill(os.getpid(), sig)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(seen) > before:
            return


async def test_first_signal_stops_second_forces_later_ones_are_ignored():
    stops: list[int] = []
    forces: list[int] = []
    calls: list[int] = []
    with capture_signals(lambda sig: (stops.append(sig), calls.append(sig)), lambda sig: (forces.append(sig), calls.append(sig))):
        await _deliver(signal.SIGTERM, calls)
        assert stops == [signal.SIGTERM] and forces == []
        await _deliver(signal.SIGINT, calls)
        assert forces == [signal.SIGINT]
        await _deliver(signal.SIGINT, calls)  # a third: nothing more is called
        assert stops == [signal.SIGTERM] and forces == [signal.SIGINT]


async def test_previous_handlers_are_restored_on_exit():
    seen: list[int] = []

    def mine(sig, frame) -> None:
        seen.append(sig)

    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.signal(signal.SIGTERM, mine)
    try:
        with capture_signals(lambda sig: None, lambda sig: None):
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is before_int
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the restored handler, not the loop's
        await asyncio.sleep(0.05)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before_term)


async def test_handlers_are_restored_when_the_body_raises():
    before = signal.getsignal(signal.SIGINT)
    try:
        with capture_signals(lambda sig: None):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert signal.getsignal(signal.SIGINT) is before
