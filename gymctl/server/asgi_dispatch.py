"""In-process HTTP: call an ASGI app directly (no socket) with the same request/response semantics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gymctl.server.direct import DirectApp

ASGIApp = Callable[..., Any]
log = logging.getLogger("gymctl.dispatch")


async def asgi_request(
    app: ASGIApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    *,
    scope: dict[str, Any] | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Send one HTTP request to `app` in this event loop; return (status, headers, body).

    A `gymctl.server.direct.DirectApp` answers it straight from the route (the same reply, without the ASGI
    stack); `scope` is the one to send instead of building it (the caller then reads what the app put in it).
    """
    if isinstance(app, DirectApp):
        return await app.request(method, path, body, headers, query)
    scope = scope or {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": {},
    }
    done = asyncio.Event()
    body_sent = False
    status = 500
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            out_headers = list(message.get("headers", []))
        elif kind == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette sends its 500 and then re-raises for the server to log; over HTTP the caller only sees
        # the 500, so in-process callers see just that too (and the traceback goes to the log, as uvicorn's would).
        log.exception("%s %s failed in-process", method, path)
        if not chunks and status < 500:
            status, out_headers, chunks = 500, [(b"content-type", b"text/plain; charset=utf-8")], [b"Internal Server Error"]
    finally:
        done.set()
    return status, out_headers, b"".join(chunks)
