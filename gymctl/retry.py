"""RetryPolicy: how many times to try again and how long to wait before each try, declared once per caller."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: the n-th retry waits `min(first_s * factor**(n-1), max_s)`.

    `retries` bounds the tries after the first; `window_s` lets a caller keep going past that bound while
    a failure is known to be harmless (a refused connection never reached the server) and less than
    `window_s` seconds have passed since the first try. Build one per client, not per request.
    """

    retries: int = 3
    first_s: float = 0.1
    factor: float = 2.0
    max_s: float = 1.0
    window_s: float = 0.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""
        return min(self.first_s * self.factor ** (max(retry, 1) - 1), self.max_s)

    def allows(self, retry: int, waited_s: float = 0.0, *, in_window: bool = False) -> bool:
        """May retry number `retry` happen, `waited_s` after the first try?"""
        return retry <= self.retries or (in_window and waited_s < self.window_s)

    def delays(self) -> Iterator[float]:
        """The wait before each retry, without end (capped at `max_s`): for loops that poll until told to stop."""
        retry = 1
        while True:
            yield self.delay(retry)
            retry += 1
