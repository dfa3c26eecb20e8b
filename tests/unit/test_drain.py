"""gymctl.runtime.drain: at least the least drain, on while requests come, never past the limit."""

from __future__ import annotations

import asyncio
import itertools

from gymctl.runtime.drain import drain, drain_limit_s


async def test_with_no_request_coming_it_ends_at_the_least_drain():
    waited = await drain(lambda: 7, 0.3, quiet_s=0.1)
    assert 0.3 <= waited < 0.5


async def test_requests_coming_keep_it_serving_and_it_ends_a_quiet_spell_after_they_stop():
    count = 0

    async def caller() -> None:
        nonlocal count
        for _ in range(8):  # one every 0.1 s for 0.8 s, past the least drain of 0.3 s
            count += 1
            await asyncio.sleep(0.1)

    calls = asyncio.create_task(caller())
    waited = await drain(lambda: count, 0.3, quiet_s=0.3, max_s=5.0)
    await calls
    assert 0.8 + 0.3 - 0.15 <= waited < 0.8 + 0.3 + 0.4


async def test_requests_that_never_stop_end_it_at_the_limit():
    counter = itertools.count()
    waited = await drain(lambda: next(counter), 0.2, quiet_s=0.3, max_s=0.6)
    assert 0.6 <= waited < 0.8


def test_the_limit_of_a_swarm_tasks_two_second_drain_is_inside_its_ten_second_grace_period():
    assert drain_limit_s(2.0) == 6.0
