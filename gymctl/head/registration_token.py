"""Registration is authenticated in the local runtimes even with auth off: a token made at start, kept for the host.

With no GYMCTL_AUTH_TOKEN and a head on loopback, the head generates a registration token; `/register` and
`/deregister` need it, every other path stays as it was (reads stay open for NeMo Gym's clients). The deployment's
own processes get it in GYMCTL_REGISTRATION_TOKEN; `gymctl serve` started by hand on the same host reads it from
a file only its owner can read (`registration_token_path`; a later head on the same port overwrites it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gymctl.hosts import is_loopback
from gymctl.server.auth import BearerAuthMiddleware

PROTECTED = frozenset({"/register", "/deregister"})
def is_loopback_url(url: str) -> bool:
    return is_loopback(urlsplit(url).hostname)


def registration_token_path(port: int) -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache") / "gymctl" / "registration"
    return base / f"head-{port}.token"


def new_registration_token() -> str:
    return secrets.token_urlsafe(32)


def keep_registration_token(port: int, token: str) -> None:
    """Write the token (0600, in a 0700 folder) where `gymctl serve` on this host finds it; best effort."""
    path = registration_token_path(port)
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)


def guard_registration(app: Any, auth_token: str | None, token: str | None, head_url: str, port: int) -> tuple[Any, str | None]:
    """(the head app, the token registrations need): with auth off and the head listening on loopback only
    (`head_url` is where it is bound), `/register` and `/deregister` need a registration token (the one given,
    else a new one); a head listening beyond loopback (0.0.0.0 in a container) stays open, with a warning."""
    if auth_token:
        return app, auth_token
    if not is_loopback_url(head_url):
        if not token:  # the seed's trusted-network mode (and plain `docker compose up` without a token): say so loudly
            logging.getLogger("gymctl.head").warning(
                "head at %s runs WITHOUT AUTH: anyone who reaches it can register any URL and read the config; "
                "set GYMCTL_AUTH_TOKEN (gymctl check flags this)", head_url)
        return app, token
    token = token or new_registration_token()
    keep_registration_token(port, token)
    return RegistrationAuthMiddleware(app, token), token


def read_registration_token(head_url: str) -> str | None:
    """The token of the loopback head at `head_url`, when one runs on this host and we may read its file."""
    if not is_loopback_url(head_url):
        return None
    port = urlsplit(head_url).port or 80
    with contextlib.suppress(OSError):
        return registration_token_path(port).read_text().strip() or None
    return None


class RegistrationAuthMiddleware(BearerAuthMiddleware):
    """401 on `/register` and `/deregister` without the registration token; every other path passes."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in PROTECTED:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
