"""Admission control: a server at its concurrency limit answers 503 with Retry-After instead of falling over.

Pure ASGI, one integer counter per served app: a request is admitted while fewer than `limit` are in
flight, else answered at once, body unread, with 503, `Retry-After` and `Connection: close` (the
connection's file descriptor goes back to the process while the client waits). gymctl's clients
(ServerClient, the collector, the bench client) wait that long, with jitter, and try again; a 503 without
Retry-After stays an error. Liveness probes are always admitted. The default limit comes from the
process's open-files budget (gymctl.server.capacity).
"""

from __future__ import annotations

from typing import Any

ALWAYS_ADMITTED = frozenset({"/", "/health"})


def _busy_body(limit: int) -> bytes:
    return (b'{"detail":"server busy: ' + str(limit).encode() + b' requests in flight (its limit, GYMCTL_MAX_CONCURRENCY); '
            b'retry after the Retry-After header"}')


class AdmissionMiddleware:
    """503 + Retry-After beyond `limit` requests in flight; `admitted` / `rejected` count what it decided."""

    def __init__(self, app: Any, limit: int, retry_after_s: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"admission limit {limit}: admit at least one request")
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self.admitted = 0
        self.rejected = 0
        body = _busy_body(limit)
        self._start = {"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(0, int(retry_after_s))).encode()), (b"connection", b"close")]}
        self._body = {"type": "http.response.body", "body": body}

    def __repr__(self) -> str:
        return f"AdmissionMiddleware({self.app!r}, limit={self.limit})"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.rejected += 1
            await send(self._start)
            await send(self._body)
            return
        self.in_flight += 1
        self.admitted += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def admitted_app(app: Any, limit: int | None = None) -> Any:
    """`app` behind admission control (limit default: GYMCTL_MAX_CONCURRENCY, else the open-files budget)."""
    from gymctl.server.settings import ServerSettings

    settings = ServerSettings.from_env()
    if limit is None:
        from gymctl.server.capacity import capacity

        limit = capacity(settings.max_concurrency, settings.upstream_connections).max_concurrency
    return AdmissionMiddleware(app, limit, settings.retry_after_s)
