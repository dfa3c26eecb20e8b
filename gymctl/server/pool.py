"""Replica pools: registrations sharing one instance name; new sessions go to the least busy, a session sticks."""

from __future__ import annotations

import asyncio
import time

# Marks the cancellations a pool makes, so a request tells them from its caller's own.
LOST = "gymctl: replica lease expired"


class Replica:
    """One registration of an instance: its URL, health at the head, and the calls in flight to it."""

    __slots__ = ("cancelled", "down_until", "healthy", "inflight", "tasks", "url")

    def __init__(self, url: str, healthy: bool = True) -> None:
        self.url = url
        self.healthy = healthy  # the head's view (lease current)
        self.down_until = 0.0  # monotonic: skipped until then after a connection failure
        self.inflight = 0
        self.tasks: set[asyncio.Task[object]] = set()  # tasks with a call in flight here
        self.cancelled: set[asyncio.Task[object]] = set()  # those this pool cancelled (lease expired)

    def lose(self) -> None:
        """The lease expired (or the registration is gone): cancel every call in flight here."""
        self.healthy = False
        for task in self.tasks:
            if task not in self.cancelled:
                self.cancelled.add(task)
                task.cancel(LOST)

    def __repr__(self) -> str:
        return f"Replica({self.url!r}, healthy={self.healthy}, inflight={self.inflight})"


class Pool:
    """The replicas of one instance name.

    `pick(key)` sends a new session key to the eligible replica with the fewest calls in flight (ties
    rotate) and every later call with that key to the same replica while it stays eligible. Eligible:
    healthy at the head and not marked down by a connection failure in the last `down_s`. When none is
    eligible it falls back to healthy-but-down, then to expired registrations (the head may be wrong).
    """

    def __init__(self, name: str, *, down_s: float = 6.0, sticky_max: int = 65536) -> None:
        self.name = name
        self.down_s = down_s
        self.sticky_max = sticky_max
        self.replicas: list[Replica] = []
        self.sticky: dict[str, Replica] = {}
        self._turn = 0

    @property
    def urls(self) -> list[str]:
        return [r.url for r in sorted(self.replicas, key=lambda r: not r.healthy)]

    def update(self, healthy: list[str], expired: list[str]) -> list[Replica]:
        """Apply the head's listing; replicas that were healthy and no longer are get their calls cancelled (returned)."""
        known = {r.url: r for r in self.replicas}
        replicas: list[Replica] = []
        lost: list[Replica] = []
        for url in healthy:
            r = known.pop(url) if url in known else Replica(url)
            r.healthy = True
            replicas.append(r)
        for url in expired:
            if url not in known:
                replicas.append(Replica(url, healthy=False))
                continue
            r = known.pop(url)
            if r.healthy:
                lost.append(r)
            r.healthy = False
            replicas.append(r)
        # Gone from the listing while healthy: it deregistered (a replica leaving; it drains what it holds) or the head
        # restarted empty: its calls in flight go on. Only a lease that expired cancels them (above).
        lost.extend(r for r in known.values() if not r.healthy and r.tasks)
        self.replicas = replicas
        if known:  # forget sessions bound to replicas that left
            self.sticky = {k: r for k, r in self.sticky.items() if r.url not in known}
        for r in lost:
            r.lose()
        return lost

    def mark_down(self, replica: Replica) -> None:
        """A connection to it failed: skip it for new and sticky calls for `down_s` (until the head says more)."""
        replica.down_until = time.monotonic() + self.down_s

    def eligible_besides(self, replica: Replica) -> bool:
        """Another replica could take a call now (healthy, not marked down)."""
        now = time.monotonic()
        return any(r is not replica and r.healthy and r.down_until <= now for r in self.replicas)

    def pick(self, key: str | None = None) -> Replica:
        replicas = self.replicas
        if len(replicas) == 1:
            return replicas[0]
        if not replicas:
            raise LookupError(self.name)
        now = time.monotonic()
        if key is not None:
            bound = self.sticky.get(key)
            if bound is not None and bound.healthy and bound.down_until <= now:
                return bound
        best = self._least([r for r in replicas if r.healthy and r.down_until <= now])
        if best is None:
            best = self._least([r for r in replicas if r.healthy]) or self._least(replicas)
        assert best is not None
        if key is not None:
            sticky = self.sticky
            sticky[key] = best
            if len(sticky) > self.sticky_max:
                del sticky[next(iter(sticky))]  # oldest session first (dicts keep insertion order)
        return best

    def _least(self, candidates: list[Replica]) -> Replica | None:
        if not candidates:
            return None
        self._turn += 1
        n = len(candidates)
        start = self._turn % n
        best = candidates[start]
        for i in range(1, n):
            r = candidates[(start + i) % n]
            if r.inflight < best.inflight:
                best = r
        return best
