"""Optional bearer-token auth between gymctl components (GYMCTL_AUTH_TOKEN); probe paths stay open.

With a token set, every request needs `Authorization: Bearer <token>` except the probe paths:
`/` and `/health` (every server's liveness), `/livez` (the head's liveness) and the head's readiness
`/health` `/healthz` `/readyz`. Readiness stays open on purpose: container healthchecks, `docker compose
--wait` and load balancers probe it without credentials, and it tells only whether the deployment is
complete (and the names it still waits for), never an address, a config value or the token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gymctl.server.trusted_networks import TrustedNetworks

PROBE_PATHS = frozenset({"/", "/health", "/livez", "/healthz", "/readyz"})
TOKEN_ENV = "GYMCTL_AUTH_TOKEN"


def auth_token() -> str | None:
    """The shared token from the environment (GYMCTL_AUTH_TOKEN, read by ServerSettings), or None when auth is off."""
    from gymctl.server.settings import ServerSettings

    return ServerSettings.from_env().auth_token or None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _digest(value: bytes) -> bytes:
    # Comparing fixed-size digests keeps the comparison's time independent of the token's length too.
    return hashlib.sha256(value).digest()


def _reject_body(reason: str) -> bytes:
    return b'{"detail":"unauthorized: ' + reason.encode() + b'; send Authorization: Bearer <GYMCTL_AUTH_TOKEN of the deployment>"}'


class BearerAuthMiddleware:
    """Pure ASGI middleware: 401 with a one-line reason unless the bearer token matches (constant time)."""

    def __init__(self, app: Any, token: str, exempt: frozenset[str] = PROBE_PATHS, trusted: TrustedNetworks | None = None) -> None:
        self.app = app
        self._expected = _digest(token.encode())
        self.exempt = exempt
        self.trusted = trusted  # callers on the stack's private network (NeMo Gym servers send no token)

    def __repr__(self) -> str:  # never the token, not even its digest
        return f"BearerAuthMiddleware({self.app!r})"

    def check(self, header: bytes | None) -> str | None:
        """None when the Authorization header carries the token; else why not (never echoing what was sent)."""
        if not header:
            return "missing Authorization header"
        scheme, _, given = header.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not given.strip():
            return "Authorization header is not 'Bearer <token>'"
        if not hmac.compare_digest(_digest(given.strip()), self._expected):
            return "wrong bearer token"
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if self.trusted is not None and client and self.trusted.trusts(client[0]):
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        reason = self.check(header)
        if reason is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": f"unauthorized: {reason}"})
            return
        body = _reject_body(reason)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
