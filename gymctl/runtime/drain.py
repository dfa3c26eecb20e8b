"""A leaving replica's drain: it has deregistered, and serves on while its callers still send it new requests.

Callers pick replicas from a listing they re-read every second (ServerClient.watch_s), so one that deregistered
still gets new calls until every caller has re-read it; on a loaded machine a re-read can come late. Closing while
calls still arrive resets the connections they are written on (a POST cut that way is not sent again). So the drain
lasts `min_s`, then goes on until no new request has arrived for `quiet_s`, and ends at `max_s` whatever comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

QUIET_S = 1.0  # no new request for this long: every caller has re-read the listing (a health probe every 2 s still lets it end)
POLL_S = 0.1


def drain_limit_s(min_s: float) -> float:
    """The longest drain for a given least one: three times it (2 s -> 6 s, inside a swarm task's 10 s grace period)."""
    return 3 * min_s


async def drain(requests_seen: Callable[[], int], min_s: float, *, max_s: float | None = None, quiet_s: float = QUIET_S) -> float:
    """Wait while the server should keep serving; the seconds it waited. `requests_seen`: requests received so far."""
    limit = drain_limit_s(min_s) if max_s is None else max_s
    started = time.monotonic()
    seen = requests_seen()
    last_new = started
    while True:
        now = time.monotonic()
        waited = now - started
        if waited >= limit or (waited >= min_s and now - last_new >= quiet_s):
            return waited
        await asyncio.sleep(POLL_S)
        count = requests_seen()
        if count != seen:
            seen, last_new = count, time.monotonic()
