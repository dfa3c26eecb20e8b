"""RetryPolicy (bounded tries, capped backoff, a window for harmless failures) and poll_until (bounded, typed error)."""

from __future__ import annotations

import itertools
import time

import pytest

from gymctl.errors import NotReadyError, WaitTimeoutError
from gymctl.polling import poll_until
from gymctl.retry import RetryPolicy
from gymctl.runtime.supervisor import RESTART_BACKOFF


def test_delays_double_from_first_and_are_capped():
    policy = RetryPolicy(retries=3, first_s=0.1, factor=2.0, max_s=0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert list(itertools.islice(policy.delays(), 4)) == [0.1, 0.2, 0.4, 0.5]


def test_retries_are_bounded_unless_inside_the_window():
    policy = RetryPolicy(retries=2, window_s=10.0)
    assert policy.allows(1) and policy.allows(2) and not policy.allows(3)
    assert policy.allows(7, waited_s=9.9, in_window=True)
    assert not policy.allows(7, waited_s=10.0, in_window=True)
    assert not policy.allows(7, waited_s=1.0, in_window=False)


def test_the_supervisor_restarts_after_half_a_second_doubling_to_eight():
    assert [RESTART_BACKOFF.delay(n) for n in (0, 1, 2, 3, 4, 5, 6)] == [0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


async def test_poll_until_returns_the_first_truthy_value():
    calls = iter([None, 0, "", "ready"])
    assert await poll_until(lambda: next(calls), 5, 0.001, what="x") == "ready"


async def test_poll_until_awaits_async_predicates():
    n = 0

    async def third_time() -> bool:
        nonlocal n
        n += 1
        return n >= 3

    assert await poll_until(third_time, 5, 0.001, what="x") is True and n == 3


async def test_poll_until_gives_up_in_time_with_a_typed_error_naming_what_it_waited_for():
    t0 = time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        await poll_until(lambda: False, 0.2, 0.02, what="head at http://h:1 ready", detail=lambda: "last: ConnectionRefused")
    assert 0.2 <= time.monotonic() - t0 < 1.0
    err = info.value
    assert isinstance(err, NotReadyError) and err.what == "head at http://h:1 ready" and err.waited_s >= 0.2
    assert str(err).startswith("head at http://h:1 ready: not after 0.2 s (last: ConnectionRefused)")


async def test_poll_until_tries_once_even_with_no_time_and_lets_predicate_errors_through():
    with pytest.raises(WaitTimeoutError):
        await poll_until(lambda: None, 0, what="x")

    def broken() -> bool:
        raise ValueError("not a wait")

    with pytest.raises(ValueError):
        await poll_until(broken, 5, what="x")


async def test_poll_until_backs_off_with_a_policy():
    stamps: list[float] = []

    def record() -> bool:
        stamps.append(time.monotonic())
        return len(stamps) == 4

    await poll_until(record, 5, what="x", backoff=RetryPolicy(first_s=0.02, factor=2.0, max_s=1.0))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08
