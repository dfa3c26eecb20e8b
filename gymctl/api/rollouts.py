"""Rollouts of in-memory rows for a training loop: each row to its agent's /run, yielded as it finishes, with its position."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from gymctl.errors import InputError, ServerError
from gymctl.retry import RetryPolicy
from gymctl.rollouts.resume import ROLLOUT_INDEX, TASK_INDEX
from gymctl.rollouts.tasks import RESPONSES_CREATE_PARAMS
from gymctl.server.asgi_dispatch import ASGIApp, asgi_request
from gymctl.server.client import BUSY_WAIT_S, RawHeaders, busy_delay, retry_after

AGENT_TYPE = "responses_api_agents"
# The request never reached a live agent: another try is safe (as gymctl collect does).
_RETRYABLE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)
_LOCAL_HEADERS = [(b"content-type", b"application/json")]
_RETRY = RetryPolicy(retries=2, first_s=0.2, factor=2.0, max_s=5.0)


def agent_of(row: Any, index: int, default: str | None) -> str:
    """The agent a row names (`agent_ref.name`), else `default`; InputError for a row that is not one or names none."""
    if not isinstance(row, Mapping):
        raise InputError(f"row {index} is a {type(row).__name__}, not a mapping with {RESPONSES_CREATE_PARAMS}", source="rows")
    if not isinstance(row.get(RESPONSES_CREATE_PARAMS), Mapping):
        keys = ", ".join(sorted(map(str, row))[:8]) or "none"
        raise InputError(f"row {index} has no {RESPONSES_CREATE_PARAMS} object (keys: {keys}); each row needs one with its input", source="rows")
    ref = row.get("agent_ref")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    if isinstance(name, str) and name:
        return name
    if default:
        return default
    raise InputError(
        f"row {index} names no agent: give it agent_ref: {{type: {AGENT_TYPE}, name: AGENT}}, or pass agent=AGENT to run_rollouts", source="rows",
    )


def check_rows(rows: Iterable[Any], agent: str | None) -> list[tuple[dict[str, Any], str]]:
    """Every row with its agent, checked before any rollout starts (a bad row fails the batch at once, not half-way)."""
    checked = []
    for i, row in enumerate(rows):
        name = agent_of(row, i, agent)  # first: it says what is wrong with a row that is not a mapping
        checked.append((dict(row), name))
    return checked


def _detail(raw: bytes) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode(errors="replace") or "(empty body)"
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        return detail if isinstance(detail, str) else orjson.dumps(detail).decode()[:500]
    return orjson.dumps(data).decode()[:500]


class RowRunner:
    """POSTs rows to agents' /run over one pooled session with at most `concurrency` in flight."""

    def __init__(self, session: aiohttp.ClientSession, agent_urls: dict[str, str], *, headers: dict[str, str],
                 concurrency: int, timeout_s: float | None, local: dict[str, ASGIApp] | None = None) -> None:
        self.session = session
        self.local = local or {}  # agents served in this process: called through their ASGI app, no socket on either side
        self.agent_urls = agent_urls
        self.headers = {"Content-Type": "application/json", **headers}
        # In-process calls are held to the agent's auth and admission as socket calls are (gymctl.server.direct).
        self.local_headers = [*_LOCAL_HEADERS, *((k.lower().encode(), v.encode()) for k, v in headers.items())]
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s

    async def one(self, index: int, row: dict[str, Any], agent: str) -> dict[str, Any]:
        """The agent's reply for one row (its verify reply: reward, response with token ids where the model gives them)."""
        ref = {"type": AGENT_TYPE, "name": agent}
        body = {**row, TASK_INDEX: row.get(TASK_INDEX, index), ROLLOUT_INDEX: row.get(ROLLOUT_INDEX, 0), "agent_ref": ref}
        url = self.agent_urls[agent] + "/run"
        data = orjson.dumps(body)
        attempt = 0
        started = time.monotonic()
        app = self.local.get(agent)
        while app is not None:
            try:
                status, out, raw = await asyncio.wait_for(asgi_request(app, "POST", "/run", data, self.local_headers), self.timeout_s)
            except TimeoutError:
                raise ServerError(f"row {index}: the rollout through {agent} took over {self.timeout_s:g} s (timeout_s)", server=agent) from None
            busy = retry_after(status, RawHeaders(out))  # the agent at its concurrency limit: wait and ask again
            if busy is None or time.monotonic() - started + busy > BUSY_WAIT_S:
                break
            attempt += 1
            await asyncio.sleep(busy_delay(busy, attempt))
        while app is None:
            try:
                async with self.session.post(url, data=data, headers=self.headers, timeout=self.timeout) as r:
                    raw = await r.read()
                    status = r.status
                break
            except _RETRYABLE as e:
                attempt += 1
                if not _RETRY.allows(attempt):
                    raise ServerError(f"row {index}: agent {agent} at {url} unreachable after {attempt} attempts: {type(e).__name__}: {e}", server=agent) from None
                await asyncio.sleep(_RETRY.delay(attempt))
            except TimeoutError:
                raise ServerError(f"row {index}: the rollout through {agent} took over {self.timeout_s:g} s (timeout_s)", server=agent) from None
            except (aiohttp.ClientError, OSError) as e:
                waited = time.monotonic() - started
                raise ServerError(f"row {index}: request to {agent} /run failed after {waited:.1f} s: {type(e).__name__}: {e}", server=agent) from None
        if status != 200:
            raise ServerError(f"row {index}: agent {agent} /run answered {status}: {_detail(raw)}", server=agent, status=status)
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):
            raise ServerError(f"row {index}: agent {agent} /run answered 200 without a JSON object: {raw[:200]!r}", server=agent, status=status)
        reply[TASK_INDEX] = body[TASK_INDEX]
        reply[ROLLOUT_INDEX] = body[ROLLOUT_INDEX]
        reply["agent_ref"] = ref
        return reply

    async def stream(self, rows: list[tuple[dict[str, Any], str]]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """(row position, reply) as each rollout finishes; the first failure cancels the rest and is raised."""
        if not rows:
            return
        pending = iter(enumerate(rows))
        done: asyncio.Queue[tuple[int, dict[str, Any]] | BaseException] = asyncio.Queue()

        async def worker() -> None:
            for index, (row, agent) in pending:  # one shared iterator: each row taken once
                try:
                    done.put_nowait((index, await self.one(index, row, agent)))
                except Exception as e:  # noqa: BLE001 -- handed to the consumer, which raises it
                    done.put_nowait(e)
                    return

        workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(rows)))]
        try:
            for _ in range(len(rows)):
                item = await done.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
