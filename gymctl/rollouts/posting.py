"""One rollout's POST to the agent's /run: busy answers waited out, connection failures that never reached it retried.

The same code runs in the collecting process and in each of its spread processes (gymctl.rollouts.spread); it
returns what happened (`Posted`) and the collector decides what to write.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from gymctl.retry import RetryPolicy
from gymctl.server.client import busy_delay, retry_after

# The request never reached a live agent (refused, no route): try again. A connection lost mid-request may have
# started the rollout, so it is recorded as failed (a rerun retries it), never sent twice; a pooled connection is
# never reused past the agent's keep-alive (gymctl.server.response.CLIENT_KEEPALIVE_S).
# Sending /run again is a rerun of that rollout (a row is written only for a whole 200): safe when the connection was
# refused (the agent is down), dropped before any answer (the agent died mid-rollout; its supervisor restarts it) or
# cut inside the answer (it died while sending it: the answer is lost the same way; seen under kill -9 in CI).
# (ClientOSError: refused, reset by peer; TLS failures excepted, they would fail the same way again.)
_RETRYABLE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)
RETRY_WINDOW_S = 15.0  # ... for this long after the first try: longer than an agent's restart (~1 s, its backoff up to a few s)


@dataclass(slots=True)
class Posted:
    """The agent's answer (`status`, `raw`), or why there is none (`kind`, `reason`); busy answers waited out."""

    status: int | None
    raw: bytes
    latency_s: float
    deferred: int = 0
    kind: str | None = None  # agent_request_failed | timeout, when there is no answer
    reason: str = ""


@dataclass(frozen=True)
class RunTarget:
    """Where and how to POST /run (what a spread process is told at start)."""

    agent: str
    agent_url: str
    headers: dict[str, str]
    timeout_s: float | None
    retries: int

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "agent_url": self.agent_url, "headers": self.headers, "timeout_s": self.timeout_s, "retries": self.retries}


class RunPoster:
    """POSTs rollouts to one agent over one pooled session (this process's connections)."""

    def __init__(self, target: RunTarget, session: aiohttp.ClientSession) -> None:
        self.target = target
        self.session = session
        self._run_url = URL(target.agent_url.rstrip("/") + "/run")  # parsed once, not per request
        self._retry = RetryPolicy(retries=target.retries, first_s=0.2, factor=2.0, max_s=2.0, window_s=RETRY_WINDOW_S)
        self._timeout = aiohttp.ClientTimeout(total=target.timeout_s) if target.timeout_s else aiohttp.ClientTimeout(total=None)

    async def post(self, data: bytes, slot: int = 0) -> Posted:
        t = self.target
        started = time.monotonic()
        attempt = 0
        deferred = 0
        while True:
            try:
                async with self.session.post(self._run_url, data=data, headers=t.headers, timeout=self._timeout) as r:
                    raw = await r.read()
                    status = r.status
                    busy = retry_after(status, r.headers)
                if busy is None:
                    return Posted(status, raw, time.monotonic() - started, deferred)
                # The agent is at its limit and did not start the rollout: wait as asked (jittered), within --timeout.
                if t.timeout_s is not None and time.monotonic() - started + busy > t.timeout_s:
                    return Posted(status, raw, time.monotonic() - started, deferred)
                deferred += 1
                await asyncio.sleep(busy_delay(busy, deferred))
            except _RETRYABLE as e:
                if isinstance(e, aiohttp.ClientSSLError):
                    return self._failed(started, deferred, "agent_request_failed", f"request to {t.agent} /run failed: {type(e).__name__}: {e}")
                attempt += 1
                if not self._retry.allows(attempt, time.monotonic() - started, in_window=True):
                    return self._failed(started, deferred, "agent_request_failed",
                                        f"agent {t.agent} at {t.agent_url} unreachable after {attempt} attempts: {type(e).__name__}: {e}")
                await asyncio.sleep(self._retry.delay(attempt))
            except TimeoutError:
                return self._failed(started, deferred, "timeout", f"rollout timed out after {t.timeout_s:g} s (--timeout)")
            except (aiohttp.ClientError, OSError) as e:
                return self._failed(started, deferred, "agent_request_failed", f"request to {t.agent} /run failed: {type(e).__name__}: {e}")

    @staticmethod
    def _failed(started: float, deferred: int, kind: str, reason: str) -> Posted:
        return Posted(None, b"", time.monotonic() - started, deferred, kind, reason)

    async def close(self) -> None:
        """Nothing of its own to close: the session is the caller's."""
