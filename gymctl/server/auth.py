"""Optional bearer-token auth between gymctl components (GYMCTL_AUTH_TOKEN); liveness paths stay open."""

from __future__ import annotations

import hmac
import os
from typing import Any

LIVENESS_PATHS = frozenset({"/", "/health", "/livez"})
TOKEN_ENV = "GYMCTL_AUTH_TOKEN"


def auth_token() -> str | None:
    """The shared token from the environment, or None when auth is off."""
    return os.environ.get(TOKEN_ENV) or None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class BearerAuthMiddleware:
    """Pure ASGI middleware: 401 unless `Authorization: Bearer <token>` matches (constant-time)."""

    def __init__(self, app: Any, token: str, exempt: frozenset[str] = LIVENESS_PATHS) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.exempt = exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        reason = b"missing Authorization header" if not given else b"wrong bearer token"
        body = b'{"detail":"unauthorized: ' + reason + b'; set GYMCTL_AUTH_TOKEN to the deployment\'s token"}'
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
