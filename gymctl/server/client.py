"""ServerClient: call another instance by name; routes come from the head, in-process apps get no socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

import aiohttp
import orjson

from gymctl.errors import (
    HeadUnreachableError,
    ServerError,
    UnknownServerError,
    WaitTimeoutError,
)
from gymctl.polling import poll_until
from gymctl.retry import RetryPolicy
from gymctl.server.asgi_dispatch import ASGIApp, asgi_request
from gymctl.server.auth import auth_headers

log = logging.getLogger("gymctl.client")

_JSON_HEADERS = {"Content-Type": "application/json"}
# Connection failures worth another try: the request never reached a server.
_RETRYABLE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionResetError)
_HEAD_BACKOFF = RetryPolicy(first_s=0.1, factor=2.0, max_s=1.0)  # while waiting for the head to answer


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
            text = self.body[:500].decode(errors="replace")
            raise ServerError(f"{self.server} {self.path} answered {self.status}: {text}", server=self.server, status=self.status)
        return self


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    """One pooled keep-alive session; no shared cookie jar (cookies travel per rollout, explicitly)."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, keepalive_timeout=30, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        json_serialize=lambda o: orjson.dumps(o).decode(),
    )


def _parse_set_cookies(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        pair = v.split(";", 1)[0]
        if "=" in pair:
            k, _, val = pair.partition("=")
            out[k.strip()] = val.strip().strip('"')
    return out


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


class ServerClient:
    """Routes `post(server_name, path)` to an instance by name.

    Routes are read from the head's `/server_instances` once and cached; a connection failure
    refreshes them (a restarted server has a new port) and retries a bounded number of times.
    While the head is down, cached routes keep working. Instances living in this process are
    called in-process through their ASGI app.
    """

    def __init__(
        self,
        head_url: str | None,
        *,
        token: str | None = None,
        local: dict[str, ASGIApp] | None = None,
        routes: dict[str, list[str]] | None = None,
        use_host_url: bool = False,
        retries: int = 3,
        retry_window_s: float = 10.0,
        head_wait_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.head_url = head_url.rstrip("/") if head_url else None
        self.token = token
        self.local: dict[str, ASGIApp] = local if local is not None else {}
        self.routes: dict[str, list[str]] = dict(routes or {})
        self.use_host_url = use_host_url
        # Built once: the request path reads it only after a failure (no allocation per request).
        self.retry = RetryPolicy(retries=retries, first_s=0.1, factor=2.0, max_s=1.0, window_s=retry_window_s)
        self.head_wait_s = head_wait_s
        self._session = session
        self._own_session = session is None
        self._rr = itertools.count()
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = 0.0
        self._auth = auth_headers(token)
        self._headers = {**_JSON_HEADERS, **self._auth}  # built once: every request sends the same ones
        self._auth_raw = [(b"authorization", f"Bearer {token}".encode())] if token else []

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session()
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    # -- routing ---------------------------------------------------------------------------
    async def instances(self) -> list[dict[str, Any]]:
        """The head's `/server_instances` list (raises HeadUnreachableError)."""
        if not self.head_url:
            raise HeadUnreachableError("(no head configured)", 0, "set GYMCTL_HEAD_URL or head_server")
        head_url = self.head_url
        last = ""

        async def listed() -> tuple[Any] | None:
            nonlocal last
            try:
                async with self.session.get(f"{head_url}/server_instances", headers=self._auth) as r:
                    body = await r.read()
                    if r.status == 401:
                        raise ServerError(f"head at {head_url} refused the auth token (401); set GYMCTL_AUTH_TOKEN to the deployment's token", server="head", status=401)
                    if r.status != 200:
                        raise ServerError(f"head {head_url}/server_instances answered {r.status}", server="head", status=r.status)
                    try:
                        return (orjson.loads(body),)  # wrapped: an empty list is an answer too
                    except orjson.JSONDecodeError:
                        raise ServerError(f"{head_url}/server_instances did not answer JSON; is --head a gymctl or NeMo Gym head?", server="head") from None
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                last = type(e).__name__
                return None

        try:
            answer = await poll_until(listed, self.head_wait_s, what=f"head at {head_url}", backoff=_HEAD_BACKOFF)
        except WaitTimeoutError as e:
            raise HeadUnreachableError(head_url, e.waited_s, last) from None
        assert answer is not None
        items: list[dict[str, Any]] = answer[0]
        return items

    async def refresh(self, *, unless_newer_than: float | None = None) -> None:
        """Reload every route from the head; healthy registrations first, expired ones only as a last resort.

        Callers that failed at time T pass `unless_newer_than=T`: when a refresh finished after T while they
        waited for the lock, they take its result instead of asking the head again (no stampede).
        """
        async with self._refresh_lock:
            if unless_newer_than is not None and self._refreshed_at > unless_newer_than:
                return
            try:
                items = await self.instances()
            finally:
                self._refreshed_at = time.monotonic()  # waiters behind a failed refresh keep the cached routes
            healthy: dict[str, list[str]] = {}
            expired: dict[str, list[str]] = {}
            for item in items:
                url = (item.get("host_url") if self.use_host_url else None) or item.get("url")
                if url:
                    bucket = healthy if item.get("status", "healthy") == "healthy" else expired
                    bucket.setdefault(item["process_name"], []).append(url.rstrip("/"))
            self.routes = {**expired, **healthy}

    async def resolve(self, server_name: str, *, refresh: bool = False, failed_at: float | None = None) -> str:
        """The base URL of one instance of `server_name` (round-robin over replicas)."""
        urls = self.routes.get(server_name)
        if refresh or not urls:
            try:
                await self.refresh(unless_newer_than=failed_at)
            except HeadUnreachableError:
                if not urls:
                    raise
            urls = self.routes.get(server_name)
            if not urls:
                raise UnknownServerError(server_name, sorted(self.routes))
        return urls[0] if len(urls) == 1 else urls[next(self._rr) % len(urls)]

    # -- requests --------------------------------------------------------------------------
    async def post(self, server_name: str, path: str, json: Any = None, *, cookies: dict[str, str] | None = None, timeout: float | None = None) -> ServerResponse:
        """POST JSON to `server_name` at `path`."""
        return await self.request("POST", server_name, path, json=json, cookies=cookies, timeout=timeout)

    async def get(self, server_name: str, path: str, *, cookies: dict[str, str] | None = None, timeout: float | None = None) -> ServerResponse:
        return await self.request("GET", server_name, path, cookies=cookies, timeout=timeout)

    async def request(
        self, method: str, server_name: str, path: str, *, json: Any = None, cookies: dict[str, str] | None = None, timeout: float | None = None,
    ) -> ServerResponse:
        body = orjson.dumps(json) if json is not None else b""
        app = self.local.get(server_name)
        if app is not None:
            call = self._local(app, method, server_name, path, body, cookies)
            if timeout is None:
                return await call
            try:
                return await asyncio.wait_for(call, timeout)
            except TimeoutError:
                raise ServerError(f"{server_name} {path} timed out after {timeout} s", server=server_name) from None
        url = await self.resolve(server_name)
        headers = {**self._headers, "Cookie": _cookie_header(cookies)} if cookies else self._headers
        ctimeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                async with self.session.request(method, url + path, data=body or None, headers=headers, timeout=ctimeout) as r:
                    data = await r.read()
                    return ServerResponse(
                        r.status, data, dict(r.headers),
                        _parse_set_cookies(r.headers.getall("Set-Cookie", [])), server_name, path,
                    )
            except _RETRYABLE as e:
                attempt += 1
                waited = time.monotonic() - started
                # A refused connection never reached the server: keep trying through a restart (retry.window_s).
                # A connection lost mid-request gets only `retry.retries` more tries.
                if not self.retry.allows(attempt, waited, in_window=isinstance(e, aiohttp.ClientConnectorError)):
                    raise ServerError(
                        f"{server_name} at {url} unreachable after {attempt} attempts over {waited:.1f} s: {type(e).__name__}: {e}",
                        server=server_name,
                    ) from None
                failed_at = time.monotonic()
                await asyncio.sleep(self.retry.delay(attempt))
                with contextlib.suppress(HeadUnreachableError, UnknownServerError):  # keep the cached route; the head may be restarting
                    url = await self.resolve(server_name, refresh=True, failed_at=failed_at)
            except TimeoutError:
                raise ServerError(f"{server_name} {path} timed out after {timeout} s", server=server_name) from None

    async def _local(self, app: ASGIApp, method: str, server_name: str, path: str, body: bytes, cookies: dict[str, str] | None) -> ServerResponse:
        raw = [(b"content-type", b"application/json"), *self._auth_raw]
        if cookies:
            raw.append((b"cookie", _cookie_header(cookies).encode()))
        path_only, _, query = path.partition("?")
        status, headers, data = await asgi_request(app, method, path_only, body, raw, query.encode())
        hdrs: dict[str, str] = {}
        set_cookies = []
        for k, v in headers:
            name = k.decode().lower()
            if name == "set-cookie":
                set_cookies.append(v.decode())
            else:
                hdrs[name] = v.decode()
        return ServerResponse(status, data, hdrs, _parse_set_cookies(set_cookies), server_name, path)
