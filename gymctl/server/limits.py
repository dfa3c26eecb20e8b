"""Limits that keep a server alive: a deadline for each whole request (slowloris) and a body-size cap (413).

Two parts, both cheap on the hot path:
- `http_protocol(timeout_s)`: uvicorn's httptools protocol with one timer per request. It is armed when a
  connection opens and when a request's first byte arrives, and cancelled once the whole request (headers
  and body) is in. A connection that sends nothing, or part of its headers or body, is closed after
  `timeout_s` (uvicorn's own keep-alive timer starts only after a response, and a single byte cancels it).
- `BodyLimitMiddleware`: pure ASGI. A declared `Content-Length` above the cap is answered 413 before a byte
  of the body is read; a chunked body is counted as it streams and cut off at the cap, also with 413.
"""

from __future__ import annotations

import asyncio
from typing import Any

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # a long multi-turn rollout with token ids stays far below this


class BodyTooLargeError(Exception):
    """Raised into the app when a streamed body passes the cap (the middleware answers 413)."""


def _too_large_body(limit: int) -> bytes:
    return (b'{"detail":"request body larger than ' + str(limit).encode() + b' bytes; raise GYMCTL_MAX_BODY_BYTES '
            b'on the server if this is intended"}')


class BodyLimitMiddleware:
    """413 for request bodies above `max_bytes`, decided before they are buffered."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"BodyLimitMiddleware({self.app!r}, max_bytes={self.max_bytes})"

    async def _reject(self, send: Any) -> None:
        body = _too_large_body(self.max_bytes)
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size > self.max_bytes:
                await self._reject(send)
                return
            if size >= 0:  # the server enforces Content-Length itself: nothing to count
                await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if over:  # the app's own error reply to BodyTooLargeError: ours goes out instead
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLargeError:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._reject(send)


def limited_app(app: Any, max_bytes: int | None = None) -> Any:
    """`app` behind the body-size cap (default: GYMCTL_MAX_BODY_BYTES, 16 MiB)."""
    if max_bytes is None:
        from gymctl.server.settings import ServerSettings

        max_bytes = ServerSettings.from_env().max_body_bytes
    return BodyLimitMiddleware(app, max_bytes)


def http_protocol(timeout_s: float | None = None) -> Any:
    """uvicorn's `http=` setting: the httptools protocol with a whole-request deadline ("auto" without httptools).

    `timeout_s` defaults to GYMCTL_REQUEST_TIMEOUT_S (30 s).
    """
    if timeout_s is None:
        from gymctl.server.settings import ServerSettings

        timeout_s = ServerSettings.from_env().request_timeout_s
    deadline_s = timeout_s
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without httptools (never in gymctl's installs: uvicorn[standard])
        return "auto"

    class DeadlineHttpToolsProtocol(HttpToolsProtocol):
        """Closes a connection whose request is not whole within the deadline of its first byte (or of connecting)."""

        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(deadline_s, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return DeadlineHttpToolsProtocol
