"""ServerClient: call another instance by name; routes come from the head, in-process apps get no socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import aiohttp
import orjson

from gymctl.errors import (
    HeadUnreachableError,
    ReplicaLostError,
    ServerError,
    UnknownServerError,
    WaitTimeoutError,
)
from gymctl.polling import poll_until
from gymctl.retry import RetryPolicy
from gymctl.server.asgi_dispatch import ASGIApp, asgi_request
from gymctl.server.auth import auth_headers
from gymctl.server.direct import DirectApp
from gymctl.server.pool import Pool
from gymctl.server.response import ServerResponse, cookie_header, new_session, parse_set_cookies

log = logging.getLogger("gymctl.client")

_JSON_HEADERS = {"Content-Type": "application/json"}
__all__ = ["ServerClient", "ServerResponse", "new_session"]
# Connection failures: a refused/failed connect never reached the server and is tried again; a connection lost
# mid-request may have reached it, so only a request without side effects (GET) is sent again.
# ClientOSError: a reset while the reply was awaited (a peer killed mid-call) comes as this, not as ConnectionResetError.
_RETRYABLE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError)
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
BUSY_WAIT_S = 120.0  # how long a call keeps waiting out 503 + Retry-After (a server at its limit) before failing
_HEAD_BACKOFF = RetryPolicy(first_s=0.1, factor=2.0, max_s=1.0)  # while waiting for the head to answer


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
        watch_s: float = 1.0,
        down_s: float = 6.0,
    ) -> None:
        self.head_url = head_url.rstrip("/") if head_url else None
        self.token = token
        self.local: dict[str, ASGIApp] = local if local is not None else {}
        self.routes: dict[str, list[str]] = dict(routes or {})
        self.pools: dict[str, Pool] = {}
        self.down_s = down_s  # a replica whose connection failed is skipped this long (the head's lease)
        self.watch_s = watch_s  # while calls are in flight, the head's leases are re-read this often
        for name, urls in self.routes.items():
            self._pool(name).update(urls, [])
        self._inflight = 0
        self._watch: asyncio.Task[None] | None = None
        self.use_host_url = use_host_url
        # Built once: the request path reads it only after a failure (no allocation per request).
        self.retry = RetryPolicy(retries=retries, first_s=0.1, factor=2.0, max_s=1.0, window_s=retry_window_s)
        self.head_wait_s = head_wait_s
        self._session = session
        self._own_session = session is None
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = 0.0
        self._auth = auth_headers(token)
        self._headers = {**_JSON_HEADERS, **self._auth}  # built once: every request sends the same ones
        self._auth_raw = [(b"authorization", f"Bearer {token}".encode())] if token else []

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            from gymctl.server.capacity import from_settings

            bound = from_settings().upstream_connections  # per upstream and in all: the process stays inside its open files
            self._session = new_session(limit=bound, per_host=bound)
        return self._session

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
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
            for name in {*self.pools, *self.routes}:
                self._pool(name).update(healthy.get(name, []), expired.get(name, []))

    def _pool(self, name: str) -> Pool:
        pool = self.pools.get(name)
        if pool is None:
            pool = self.pools[name] = Pool(name, down_s=self.down_s)
        return pool

    async def _watch_leases(self) -> None:
        """While calls are made, re-read the head every `watch_s`: replicas that joined get calls, and one whose
        lease expired has its calls in flight cancelled."""
        try:
            while True:
                await asyncio.sleep(self.watch_s)
                with contextlib.suppress(HeadUnreachableError, ServerError):
                    await self.refresh(unless_newer_than=time.monotonic() - self.watch_s)
                if self._inflight == 0:
                    return
        finally:
            self._watch = None

    async def resolve(self, server_name: str, *, refresh: bool = False, failed_at: float | None = None, affinity: str | None = None) -> str:
        """The base URL of one replica of `server_name` (least in flight; the same one again for one `affinity`)."""
        return (await self._resolve(server_name, refresh=refresh, failed_at=failed_at)).pick(affinity).url

    async def _resolve(self, server_name: str, *, refresh: bool = False, failed_at: float | None = None) -> Pool:
        pool = self.pools.get(server_name)
        if refresh or pool is None or not pool.replicas:
            try:
                await self.refresh(unless_newer_than=failed_at)
            except HeadUnreachableError:
                if pool is None or not pool.replicas:
                    raise
            pool = self.pools.get(server_name)
            if pool is None or not pool.replicas:
                raise UnknownServerError(server_name, sorted(self.routes))
        return pool

    # -- requests --------------------------------------------------------------------------
    async def post(
        self, server_name: str, path: str, json: Any = None, *, cookies: dict[str, str] | None = None, timeout: float | None = None, affinity: str | None = None,
    ) -> ServerResponse:
        """POST JSON to `server_name` at `path`; calls with one `affinity` (a rollout's id) stay on one replica."""
        return await self.request("POST", server_name, path, json=json, cookies=cookies, timeout=timeout, affinity=affinity)

    async def get(
        self, server_name: str, path: str, *, cookies: dict[str, str] | None = None, timeout: float | None = None, affinity: str | None = None,
    ) -> ServerResponse:
        return await self.request("GET", server_name, path, cookies=cookies, timeout=timeout, affinity=affinity)

    async def request(
        self, method: str, server_name: str, path: str, *,
        json: Any = None, cookies: dict[str, str] | None = None, timeout: float | None = None, affinity: str | None = None,
    ) -> ServerResponse:
        """One call. Sticky key: `affinity`, else the cookies (a resources server's session). A replica whose
        connection fails is skipped; one whose lease expires mid-call has the call cancelled: it fails over when
        the call carries no session cookies, else raises ReplicaLostError."""
        body = orjson.dumps(json) if json is not None else b""
        app = self.local.get(server_name)
        if app is not None:
            call = self._local(app, method, server_name, path, body, cookies, timeout)
            if timeout is None:
                return await call
            try:
                return await asyncio.wait_for(call, timeout)
            except TimeoutError:
                raise ServerError(f"{server_name} {path} timed out after {timeout} s", server=server_name) from None
        pool = self.pools.get(server_name)
        if pool is None or not pool.replicas:
            pool = await self._resolve(server_name)
        cookie = cookie_header(cookies) if cookies else None
        headers = {**self._headers, "Cookie": cookie} if cookie else self._headers
        key = affinity or cookie
        ctimeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
        task = asyncio.current_task()
        attempt = 0
        deferred = 0
        busy_budget = min(timeout, BUSY_WAIT_S) if timeout else BUSY_WAIT_S  # a caller's timeout bounds the waiting too
        started = time.monotonic()
        while True:
            replica = pool.pick(key)
            failed: BaseException | None = None
            busy: float | None = None
            replica.inflight += 1
            self._inflight += 1
            if task is not None:
                replica.tasks.add(task)
            if self._watch is None and self.head_url:
                self._watch = asyncio.get_running_loop().create_task(self._watch_leases())
            try:
                async with self.session.request(method, replica.url + path, data=body or None, headers=headers, timeout=ctimeout) as r:
                    data = await r.read()
                    busy = retry_after(r.status, r.headers)
                    if busy is None or time.monotonic() - started + busy > busy_budget:
                        return ServerResponse(r.status, data, dict(r.headers), parse_set_cookies(r.headers.getall("Set-Cookie", [])), server_name, path)
            except _RETRYABLE as e:
                pool.mark_down(replica)
                if not isinstance(e, aiohttp.ClientConnectorError) and method not in _IDEMPOTENT:
                    raise ServerError(
                        f"{server_name} at {replica.url} lost the connection during {method} {path} ({type(e).__name__}: {e}); "
                        "not sent again: the server may have acted on it", server=server_name,
                    ) from None
                failed = e
            except asyncio.CancelledError:
                if task is None or task not in replica.cancelled:
                    raise
                replica.cancelled.discard(task)
                if task.uncancel() > 0:  # the caller cancelled too
                    raise
                attempt += 1
                if cookies or attempt > self.retry.retries or not pool.eligible_besides(replica):
                    raise ReplicaLostError(server_name, replica.url, "its lease at the head expired") from None
                continue
            except TimeoutError:
                raise ServerError(f"{server_name} {path} timed out after {timeout} s", server=server_name) from None
            except aiohttp.ClientError as e:  # a broken reply (payload, protocol): typed, never a traceback in the caller
                raise ServerError(f"{server_name} at {replica.url} failed during {method} {path}: {type(e).__name__}: {e}", server=server_name) from None
            finally:
                replica.inflight -= 1
                self._inflight -= 1
                if task is not None:
                    replica.tasks.discard(task)
            if failed is None and busy is not None:  # a 503 with Retry-After: the server is at its limit and did not take the call
                deferred += 1
                await asyncio.sleep(busy_delay(busy, deferred))
                continue
            attempt += 1
            waited = time.monotonic() - started
            # A refused connection never reached the server: keep trying through a restart (retry.window_s).
            # A connection lost mid-request gets only `retry.retries` more tries.
            if not self.retry.allows(attempt, waited, in_window=isinstance(failed, aiohttp.ClientConnectorError)):
                raise ServerError(
                    f"{server_name} at {replica.url} unreachable after {attempt} attempts over {waited:.1f} s: {type(failed).__name__}: {failed}",
                    server=server_name,
                ) from None
            failed_at = time.monotonic()
            if not pool.eligible_besides(replica):  # another replica takes it at once; else wait for a restart
                await asyncio.sleep(self.retry.delay(attempt))
            with contextlib.suppress(HeadUnreachableError, UnknownServerError):  # keep the cached routes; the head may be restarting
                pool = await self._resolve(server_name, refresh=True, failed_at=failed_at)

    async def _local(self, app: ASGIApp, method: str, server_name: str, path: str, body: bytes, cookies: dict[str, str] | None,
                     timeout: float | None = None) -> ServerResponse:
        """One call to an instance of this process: its served checks and route, no socket (gymctl.server.direct).
        A busy server's 503 + Retry-After (admission control) is waited out as over HTTP."""
        raw = [(b"content-type", b"application/json"), *self._auth_raw]
        if cookies:
            raw.append((b"cookie", cookie_header(cookies).encode()))
        path_only, _, query = path.partition("?")
        busy_budget = min(timeout, BUSY_WAIT_S) if timeout else BUSY_WAIT_S
        started = deferred = 0.0
        while True:
            if type(app) is DirectApp:  # asgi_request's first step, one coroutine frame fewer under every await of the call
                status, headers, data = await app.request(method, path_only, body, raw, query.encode())
            else:
                status, headers, data = await asgi_request(app, method, path_only, body, raw, query.encode())
            if status != 503:
                break
            busy = retry_after(status, RawHeaders(headers))
            if busy is None:
                break
            if not deferred:
                started = time.monotonic()
            if time.monotonic() - started + busy > busy_budget:
                break
            deferred += 1
            await asyncio.sleep(busy_delay(busy, int(deferred)))
        hdrs: dict[str, str] = {}
        set_cookies = []
        for k, v in headers:
            name = k.decode().lower()
            if name == "set-cookie":
                set_cookies.append(v.decode())
            else:
                hdrs[name] = v.decode()
        return ServerResponse(status, data, hdrs, parse_set_cookies(set_cookies), server_name, path)


class RawHeaders:
    """`.get(name)` over ASGI's raw header pairs (what retry_after reads)."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str) -> str | None:
        key = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.raw if k.lower() == key), None)


def retry_after(status: int, headers: Any) -> float | None:
    """Seconds to wait when a reply is a busy server's 503 with Retry-After (gymctl.server.admission), else None.

    A 503 without the header (a replica lost, an app's own error) is an answer, not an invitation to retry.
    """
    if status != 503:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.05), 30.0)
    except ValueError:
        return 1.0  # an HTTP date: wait a second and ask again


def busy_delay(retry_after_s: float, times: int) -> float:
    """The wait before asking a busy server again, the `times`-th time in a row: Retry-After, doubled each time
    up to 8x, jittered by +-50% -- the clients turned away stay few per second, and so do the connections they
    open to ask again (each one a file descriptor of the busy server)."""
    return retry_after_s * float(min(2 ** (times - 1), 8)) * random.uniform(0.5, 1.5)
