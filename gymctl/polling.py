"""poll_until (async) and poll_until_sync: the one readiness wait, with a deadline, raising WaitTimeoutError with what it waited for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from gymctl.errors import WaitTimeoutError
from gymctl.retry import RetryPolicy

T = TypeVar("T")


@overload
async def poll_until(
    predicate: Callable[[], Awaitable[T]], timeout_s: float, interval_s: float = ..., *,
    what: str, backoff: RetryPolicy | None = ..., detail: Callable[[], str] | None = ...,
    on_timeout: Callable[[], Exception] | None = ...,
) -> T: ...


@overload
async def poll_until(
    predicate: Callable[[], T], timeout_s: float, interval_s: float = ..., *,
    what: str, backoff: RetryPolicy | None = ..., detail: Callable[[], str] | None = ...,
    on_timeout: Callable[[], Exception] | None = ...,
) -> T: ...


async def poll_until(
    predicate: Callable[[], Any],
    timeout_s: float,
    interval_s: float = 0.05,
    *,
    what: str,
    backoff: RetryPolicy | None = None,
    detail: Callable[[], str] | None = None,
    on_timeout: Callable[[], Exception] | None = None,
) -> Any:
    """Call `predicate` until it returns something truthy and return that; tried at least once.

    Between tries wait `interval_s` (or `backoff`'s growing delays). After `timeout_s` raise
    WaitTimeoutError naming `what` (and `detail()`, e.g. the last error seen). Exceptions of the
    predicate propagate: a predicate catches the failures that mean "not yet". `on_timeout()` builds a
    more specific error instead (one that carries a log tail, say).
    """
    start = time.monotonic()
    delays = backoff.delays() if backoff is not None else None
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise on_timeout() if on_timeout else WaitTimeoutError(what, waited, detail() if detail else "")
        pause = next(delays) if delays is not None else interval_s
        await asyncio.sleep(min(pause, max(timeout_s - waited, 0.0)))


def poll_until_sync(
    predicate: Callable[[], T | None],
    timeout_s: float,
    interval_s: float = 0.25,
    *,
    what: str,
    detail: Callable[[], str] | None = None,
    on_timeout: Callable[[], Exception] | None = None,
) -> T:
    """poll_until for code without an event loop (the Docker edge): the same contract, blocking sleeps."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise on_timeout() if on_timeout else WaitTimeoutError(what, waited, detail() if detail else "")
        time.sleep(min(interval_s, max(timeout_s - waited, 0.0)))
