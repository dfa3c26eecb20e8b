"""The upstream base URLs: sticky per session, failover when one is down, bounded retries with backoff."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from gymctl.server.credentials import redact_text, split_credentials

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_SESSIONS = 100_000


class UpstreamError(Exception):
    """The upstream could not give an answer; `.status` is what this server answers its caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UpstreamReply:
    status: int
    body: bytes
    url: str

    def json(self) -> object:
        return orjson.loads(self.body)


class UpstreamPool:
    """Spreads sessions over several OpenAI-compatible base URLs and keeps each session on one of them."""

    def __init__(self, base_urls: list[str], *, session: Callable[[], aiohttp.ClientSession], api_key: str | None = None,
                 headers: dict[str, str] | None = None, max_retries: int = 4, backoff_s: float = 0.25,
                 timeout_s: float | None = 600.0, down_cooldown_s: float = 5.0) -> None:
        if not base_urls:
            raise ValueError("base_url: at least one upstream URL is needed")
        # Credentials in a URL become that upstream's one Authorization header (aiohttp refuses both) and
        # leave the URL, so no error text names them.
        split = [split_credentials(u.rstrip("/")) for u in base_urls]
        self.base_urls = [u for u, _ in split]
        self._session = session
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._headers_of = [{**self.headers, "Authorization": basic} if basic else self.headers for _, basic in split]
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
        self.down_cooldown_s = down_cooldown_s
        self._sticky: OrderedDict[str, int] = OrderedDict()
        self._down_until = [0.0] * len(self.base_urls)
        self._rr = itertools.count()

    def new_session(self) -> str:
        """A fresh session key, placed round-robin (skipping upstreams that were just found down)."""
        key = uuid.uuid4().hex
        self._remember(key, self._first_up(next(self._rr) % len(self.base_urls)))
        return key

    def pick(self, session_key: str) -> int:
        """The index of the base URL for this session: the one it used before, else a stable hash of the key."""
        if session_key in self._sticky:
            self._sticky.move_to_end(session_key)
            return self._sticky[session_key]
        index = int.from_bytes(hashlib.sha256(session_key.encode()).digest()[:8], "big") % len(self.base_urls)
        index = self._first_up(index)
        self._remember(session_key, index)
        return index

    def _first_up(self, index: int) -> int:
        now = time.monotonic()
        for k in range(len(self.base_urls)):
            candidate = (index + k) % len(self.base_urls)
            if self._down_until[candidate] <= now:
                return candidate
        return index

    def _remember(self, session_key: str, index: int) -> None:
        self._sticky[session_key] = index
        self._sticky.move_to_end(session_key)
        while len(self._sticky) > MAX_SESSIONS:
            self._sticky.popitem(last=False)

    def url(self, index: int, path: str, *, server_root: bool = False) -> str:
        base = self.base_urls[index]
        return (base.removesuffix("/v1") if server_root else base) + path

    async def post(self, session_key: str, path: str, body: dict, *, server_root: bool = False) -> UpstreamReply:
        """POST JSON to the session's upstream; fail over on refused connections, retry 429/5xx/connection errors.

        Returns the reply for 2xx and non-retryable 4xx; raises UpstreamError for 401/403 (at once) and when
        the retries are spent.
        """
        data = orjson.dumps(body)
        index = self.pick(session_key)
        last = ""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            url = self.url(index, path, server_root=server_root)
            try:
                async with self._session().post(url, data=data, headers=self._headers_of[index], timeout=self.timeout) as r:
                    payload = await r.read()
                    status = r.status
            except aiohttp.ClientConnectorError as e:
                last = f"{url}: cannot connect ({e.os_error or e})"
                self._down_until[index] = time.monotonic() + self.down_cooldown_s
                moved = self._first_up((index + 1) % len(self.base_urls))
                if moved != index and self._down_until[moved] <= time.monotonic():
                    index = moved  # fail over to the next upstream now, no backoff
                    self._remember(session_key, index)
                    continue
            except TimeoutError:
                # A generation that outlived timeout_s is not retried: it would likely time out again.
                raise UpstreamError(504, f"upstream {url} did not answer within {self.timeout.total} s (timeout_s)") from None
            except (aiohttp.ClientError, OSError) as e:
                last = f"{url}: {type(e).__name__}: {e}"
            else:
                if status in (401, 403):
                    raise UpstreamError(502, f"upstream {url} refused the API key (HTTP {status}): "
                                             f"{_snippet(payload)}; check policy_api_key (api_key in the vllm_model config)")
                if status not in RETRY_STATUSES:
                    if 200 <= status < 300:
                        try:
                            orjson.loads(payload)
                        except orjson.JSONDecodeError:
                            last = f"{url}: HTTP {status} with a body that is not JSON: {_snippet(payload)}"
                            if attempt + 1 < attempts:
                                await asyncio.sleep(self._delay(attempt))
                            continue
                    return UpstreamReply(status, payload, url)
                last = f"{url}: HTTP {status}: {_snippet(payload)}"
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt))
        raise UpstreamError(502, f"upstream failed after {attempts} attempts; last: {last}")

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, 8.0)


def _snippet(payload: bytes) -> str:
    return redact_text(payload[:300].decode(errors="replace"))
