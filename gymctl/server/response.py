"""A server's reply, cookie helpers and the pooled HTTP session every ServerClient uses."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from gymctl.errors import ServerError
from gymctl.server.credentials import redact_text


class ServerResponse:
    """A reply from another server: status, body bytes, headers, and the cookies it set."""

    __slots__ = ("body", "cookies", "headers", "path", "server", "status")

    def __init__(self, status: int, body: bytes, headers: dict[str, str], cookies: dict[str, str], server: str, path: str) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.cookies = cookies
        self.server = server
        self.path = path

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return orjson.loads(self.body)

    def raise_for_status(self) -> ServerResponse:
        if not self.ok:
            text = redact_text(self.body[:500].decode(errors="replace"))  # an upstream URL's password never reaches a log
            raise ServerError(f"{self.server} {self.path} answered {self.status}: {text}", server=self.server, status=self.status)
        return self


# A pooled connection idle this long is closed by the client before any server closes it: below uvicorn's
# default keep-alive (5 s: NeMo Gym's servers, vLLM) and gymctl's (75 s), so a request never goes out on a
# connection the server is closing (the race a blind retry would otherwise have to cover).
CLIENT_KEEPALIVE_S = 4.0


def new_session(limit: int = 0, per_host: int = 0) -> aiohttp.ClientSession:
    """One pooled keep-alive session; no shared cookie jar (cookies travel per rollout, explicitly).

    `limit` / `per_host` bound the connections in use (0: no bound); a request beyond waits for one.
    """
    from gymctl.server.connector import PacedConnector  # new connections to one upstream opened a few at a time
    from gymctl.server.tls import client_ssl

    # DNS kept 10 s (aiohttp's default): a restarted peer's name (a swarm task's) points at its new address soon.
    connector = PacedConnector(limit=limit, limit_per_host=per_host, ttl_dns_cache=10, keepalive_timeout=CLIENT_KEEPALIVE_S,
                               enable_cleanup_closed=True, ssl=client_ssl())
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        json_serialize=lambda o: orjson.dumps(o).decode(),
    )


def parse_set_cookies(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        pair = v.split(";", 1)[0]
        if "=" in pair:
            k, _, val = pair.partition("=")
            out[k.strip()] = val.strip().strip('"')
    return out


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())
