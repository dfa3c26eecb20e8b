"""Replica pools: new sessions spread by least in flight, a session sticks, a down or expired replica is skipped."""

from __future__ import annotations

import asyncio
from collections import Counter

from gymctl.server.pool import LOST, Pool


def pool_of(*urls: str, down_s: float = 60.0) -> Pool:
    pool = Pool("policy_model", down_s=down_s)
    pool.update(list(urls), [])
    return pool


def test_new_sessions_spread_evenly_and_each_sticks():
    pool = pool_of("http://a", "http://b", "http://c")
    first = {f"s{i}": pool.pick(f"s{i}").url for i in range(300)}
    assert Counter(first.values()) == {"http://a": 100, "http://b": 100, "http://c": 100}
    for _ in range(3):
        assert all(pool.pick(k).url == url for k, url in first.items())


def test_least_in_flight_wins_for_a_new_session():
    pool = pool_of("http://a", "http://b")
    busy = pool.pick("s1")
    busy.inflight = 5
    assert {pool.pick(f"n{i}").url for i in range(4)} == {u for u in ("http://a", "http://b") if u != busy.url}
    assert pool.pick("s1") is busy  # stickiness beats load


def test_a_replica_marked_down_is_skipped_and_its_sessions_move():
    pool = pool_of("http://a", "http://b")
    keys = [f"s{i}" for i in range(10)]
    on_a = [k for k in keys if pool.pick(k).url == "http://a"]
    assert on_a
    pool.mark_down(next(r for r in pool.replicas if r.url == "http://a"))
    assert all(pool.pick(k).url == "http://b" for k in keys)
    assert all(pool.pick(k).url == "http://b" for k in on_a)  # rebound, and stays rebound


def test_all_down_falls_back_rather_than_failing():
    pool = pool_of("http://a", "http://b")
    for r in pool.replicas:
        pool.mark_down(r)
    assert pool.pick("x").url in {"http://a", "http://b"}
    pool.update([], ["http://a", "http://b"])  # the head says both expired: still a last resort
    assert pool.pick("y").url in {"http://a", "http://b"}


def test_expired_and_gone_replicas_leave_the_rotation_and_forget_their_sessions():
    pool = pool_of("http://a", "http://b")
    assert pool.update(["http://a", "http://b"], []) == []
    lost = pool.update(["http://a"], ["http://b"])
    assert [r.url for r in lost] == ["http://b"]
    assert {pool.pick(f"s{i}").url for i in range(6)} == {"http://a"}
    assert pool.urls == ["http://a", "http://b"]  # healthy first
    pool.update(["http://a"], [])
    assert [r.url for r in pool.replicas] == ["http://a"]
    assert all(r.url == "http://a" for r in pool.sticky.values())


async def test_lease_expiry_cancels_the_calls_in_flight_to_that_replica_only():
    pool = pool_of("http://a", "http://b")
    a, b = sorted(pool.replicas, key=lambda r: r.url)
    started = asyncio.Event()

    async def call_on(replica):
        replica.tasks.add(asyncio.current_task())
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            replica.tasks.discard(asyncio.current_task())

    ta, tb = asyncio.create_task(call_on(a)), asyncio.create_task(call_on(b))
    await started.wait()
    await asyncio.sleep(0)
    pool.update(["http://b"], ["http://a"])
    await asyncio.sleep(0)
    assert ta.cancelled() and not tb.done()
    assert ta in a.cancelled
    tb.cancel()
    try:
        await ta
    except asyncio.CancelledError as e:
        assert e.args == (LOST,)


async def test_a_replica_that_deregistered_keeps_its_calls_in_flight_and_takes_no_new_session():
    # A scale-down: the stopping replica deregisters and drains what it holds; cancelling those calls here would fail
    # rollouts that its graceful shutdown was about to finish.
    pool = pool_of("http://a", "http://b")
    a = next(r for r in pool.replicas if r.url == "http://a")
    call = asyncio.create_task(asyncio.sleep(30))
    a.tasks.add(call)
    assert pool.update(["http://b"], []) == []
    await asyncio.sleep(0)
    assert not call.done()
    assert {pool.pick(f"s{i}").url for i in range(6)} == {"http://b"}
    call.cancel()
