"""A NeMo Gym server as a child process: started on its own interpreter, registered by gymctl on its behalf.

The process gymctl starts is the server itself (`<venv>/bin/python <dir>/app.py`, no wrapper): NeMo Gym servers
do not register, so gymctl waits for its `GET /` to answer (bounded), registers it with the head under the
server's own pid, renews the lease while `/` answers (a server that stops answering lapses to unhealthy) and
deregisters it when it exits. A `Supervisor` restarts it like any other child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from gymctl.runtime.children import Child, OutputSink
from gymctl.runtime.nemo_gym import NemoGymLaunch
from gymctl.server.auth import auth_headers

# send(path, json) -> HTTP status (gymctl.server.registration.Sender), made once the child's session exists
Sender = Callable[[str, dict[str, Any]], Awaitable[int]]
SenderFactory = Callable[[aiohttp.ClientSession], Sender]


def _pdeathsig() -> None:  # pragma: no cover -- runs in the child between fork and exec
    """SIGTERM the server when the gymctl process that started it dies (even by SIGKILL); default signal dispositions."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(Exception):
        _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


try:
    import ctypes

    _LIBC: Any = ctypes.CDLL(None, use_errno=True)  # loaded here, never in a forked child
except OSError:  # pragma: no cover
    _LIBC = None


def http_sender(head_url: str, token: str | None) -> SenderFactory:
    """A registration sender over HTTP (the head in another process), bound to a session when the loop runs."""

    def bind(session: aiohttp.ClientSession) -> Sender:
        async def send(path: str, body: dict[str, Any]) -> int:
            async with session.post(head_url.rstrip("/") + path, json=body, headers=auth_headers(token),
                                    timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()
                return r.status

        return send

    return bind


class NemoGymChild(Child):
    """One NeMo Gym server process, registered at the head by gymctl while its `/` answers."""

    def __init__(self, spec: NemoGymLaunch, *, sink: OutputSink, sender: SenderFactory, start_timeout_s: float,
                 heartbeat_s: float = 2.0, log_path: Path | None = None) -> None:
        super().__init__(spec.name, spec.argv, spec.env, sink=sink, log_path=log_path, cwd=str(spec.cwd))
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.heartbeat_s = heartbeat_s
        self._sender_factory = sender
        self._send: Sender | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()
        self.gave_up: str | None = None  # why gymctl stopped it while starting (its / never answered)

    # -- process ------------------------------------------------------------------------------
    def fork(self, run: Callable[[int], int], close_fds: list[int]) -> None:
        """A NeMo Gym server is never a fork of gymctl: it runs on its own interpreter."""
        self.spawn()

    def spawn(self, extra_env: dict[str, str] | None = None) -> None:
        """Start `<python> <dir>/app.py` in the server's directory and a session of its own (its pid is its group)."""
        self._reset()
        self.gave_up = None
        self.registered = asyncio.Event()
        r, w = os.pipe()
        try:
            self._popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                start_new_session=True, close_fds=True, preexec_fn=_pdeathsig if _LIBC is not None else None,
            )
        except OSError as e:
            os.close(r)
            os.close(w)
            from gymctl.errors import StartupError

            raise StartupError(f"{self.name}: cannot start {self.argv[0]}: {e.strerror or e}", instance=self.name) from None
        os.close(w)
        self.pid, self._read_fd, self._ready_fd = self._popen.pid, r, None

    async def attach(self) -> None:
        await super().attach()
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._send = self._sender_factory(self._session)
        self._keeper = asyncio.create_task(self._keep_registered())

    async def wait(self) -> int:
        code = await super().wait()
        if self._popen is not None:
            self._popen.returncode = code  # reaped by gymctl: Popen must never wait for a pid reused since
        await self._stop_keeper(deregister=True)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        return code

    # -- registration on its behalf -------------------------------------------------------------
    async def answers(self, timeout_s: float = 2.0) -> bool:
        """Does the server's GET / answer (any status: NeMo Gym serves / on every server)?"""
        session = self._session or aiohttp.ClientSession()
        try:
            async with session.get(self.spec.url + "/", timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                await r.read()
                return True
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False
        finally:
            if session is not self._session:
                await session.close()

    def _records(self) -> list[dict[str, Any]]:
        return [{**r, "pid": self.pid, "start_time": time.time() - (time.monotonic() - self.started_at)} for r in self.spec.records]

    async def _keep_registered(self) -> None:
        deadline = self.started_at + self.start_timeout_s
        while not await self.answers(timeout_s=1.0):
            if not self.running:
                return
            if time.monotonic() > deadline:
                self.gave_up = (f"NotReadyError: {self.name} (pid {self.pid}) did not answer GET {self.spec.url}/ within "
                                f"{self.start_timeout_s:.0f} s (server_spinup_timeout_seconds); stopping it")
                self.tail.append(self.gave_up)
                self.sink.line(self.name, self.gave_up)
                self.signal_group(signal.SIGTERM)
                return
            await asyncio.sleep(0.1)
        self.url = self.spec.url
        records = self._records()
        refused = 0
        assert self._send is not None
        while self.running:
            try:
                if await self.answers(timeout_s=5.0):
                    statuses = [await self._send("/register", record) for record in records]
                    if all(status < 300 for status in statuses):
                        self.registered.set()
                    elif refused != max(statuses):
                        refused = max(statuses)
                        self.sink.note(f"the head refused to register {self.name}: HTTP {refused}")
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass  # the head is away: retry at the next beat
            await asyncio.sleep(self.heartbeat_s if self.registered.is_set() else 0.1)

    async def _stop_keeper(self, *, deregister: bool) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if deregister and self.registered.is_set() and self._send is not None:
            for record in self.spec.records:
                with contextlib.suppress(Exception):  # the head may be gone already; its lease will drop it
                    await asyncio.wait_for(self._send("/deregister", {"process_name": record["process_name"], "url": record["url"]}), 2)
