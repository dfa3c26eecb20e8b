"""Registration with the head: register on start, renew by heartbeat, back off while it is away, deregister."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gymctl.retry import RetryPolicy

log = logging.getLogger("gymctl.registration")

# send(path, json) -> HTTP status; raises OSError/aiohttp errors when the head is unreachable.
Sender = Callable[[str, dict[str, Any]], Awaitable[int]]


def registration_record(
    *, instance: str, server_type: str, impl: str, url: str, host: str, port: int,
    host_url: str | None = None, entrypoint: str | None = None, dir_path: str | None = None,
    start_time: float | None = None, alias_of: str | None = None,
) -> dict[str, Any]:
    """The body a server registers with (NeMo Gym's instance fields plus gymctl's)."""
    return {
        "process_name": instance,
        "config_path": instance,
        "server_type": server_type,
        "name": impl,
        "url": url,
        "host": host,
        "port": port,
        "host_url": host_url,
        "pid": os.getpid(),
        "entrypoint": entrypoint,
        "dir_path": dir_path,
        "start_time": start_time or time.time(),
        "alias_of": alias_of,
    }


def _reason(e: BaseException) -> str:
    """Why a send to the head failed, as logs and errors print it."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Registrar:
    """Keeps a set of records registered: heartbeats every `interval_s`; re-registers after a head restart."""

    def __init__(self, send: Sender, records: list[dict[str, Any]], *, interval_s: float = 2.0, head_url: str = "",
                 alive: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.send = send
        self.alive = alive  # registering on another process's behalf: beat only while it answers (else its lease lapses)
        self.records = records
        self.interval_s = interval_s
        self.head_url = head_url
        self.registered = asyncio.Event()
        self.refused: str | None = None  # why the head refused us (401, 409): waiting longer will not help
        self.refused_event = asyncio.Event()
        self.last_error = ""  # the last reason the head could not be reached
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    async def beat(self) -> bool:
        """Register or renew every record once; True if the head took them all."""
        if self.alive is not None and not await self.alive():
            self.last_error = "the server does not answer"
            return False
        try:
            for record in self.records:
                status = await self.send("/register", record)
                if status == 401:
                    self._refuse(f"head at {self.head_url} refused registration: wrong or missing GYMCTL_AUTH_TOKEN")
                    return False
                if status == 409:
                    self._refuse(
                        f"head at {self.head_url} refused {record['process_name']}: another instance already holds {record['url']} "
                        "(two hosts advertise the same address and port); give each host its own address "
                        "(the instance's host, or GYMCTL_ADVERTISE_HOST)"
                    )
                    return False
                if status >= 300:
                    log.error("head at %s refused registration of %s: HTTP %s", self.head_url, record["process_name"], status)
                    return False
        except Exception as e:  # noqa: BLE001 -- the head is away (or failing): keep serving, retry
            self.last_error = _reason(e)
            if not self._warned:
                log.warning("head at %s unreachable (%s); retrying in the background", self.head_url, type(e).__name__)
                self._warned = True
            return False
        self.refused = None
        self.refused_event.clear()
        if self._warned:
            log.warning("head at %s reachable again; registered", self.head_url)
            self._warned = False
        self.registered.set()
        return True

    def _refuse(self, reason: str) -> None:
        if self.refused != reason:
            log.error("%s", reason)
        self.refused = reason
        self.refused_event.set()

    async def run(self) -> None:
        """Heartbeat every `interval_s`; while the head refuses or is away, retry sooner, backing off up to `interval_s`."""
        backoff = RetryPolicy(first_s=0.1, factor=2.0, max_s=self.interval_s)
        failures = 0
        while True:
            if await self.beat():
                failures = 0
                await asyncio.sleep(self.interval_s)
            else:
                failures += 1
                await asyncio.sleep(backoff.delay(failures))

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self, *, deregister: bool = True) -> bool:
        """Stop beating; with `deregister`, take every record off the head. True when the head took every deregistration
        (a failure is logged: the head may be gone already, and its lease drops the record in time)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not deregister:
            return True
        done = True
        for record in self.records:
            try:
                status = await asyncio.wait_for(self.send("/deregister", {"process_name": record["process_name"], "url": record["url"]}), 2)
            except Exception as e:  # noqa: BLE001 -- the head may be gone already; its lease will drop us
                status, reason = 0, _reason(e)
            else:
                reason = f"HTTP {status}"
            if not 200 <= status < 300:
                done = False
                log.warning("could not deregister %s (%s) from the head at %s: %s; its lease there drops it",
                            record["process_name"], record["url"], self.head_url, reason)
        return done
