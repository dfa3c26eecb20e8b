"""A NeMo Gym server as a child process: started on its own interpreter, registered by gymctl on its behalf.

The process gymctl starts is the server itself (`<venv>/bin/python <dir>/app.py`, no wrapper): NeMo Gym servers
do not register, so gymctl waits for its `GET /` to answer (bounded), registers it with the head under the
server's own pid through gymctl's Registrar (the same 401/409 handling and backoff as gymctl's servers), renews
the lease while `/` answers (a server that stops answering lapses to unhealthy) and deregisters it when it exits. A `Supervisor` restarts it like any other child.
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

from gymctl.errors import WaitTimeoutError
from gymctl.polling import poll_until
from gymctl.runtime.children import Child, OutputSink
from gymctl.runtime.nemo_gym import NemoGymLaunch
from gymctl.server.auth import auth_headers
from gymctl.server.registration import Registrar

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
                 heartbeat_s: float = 2.0, log_path: Path | None = None, head_url: str = "the head") -> None:
        super().__init__(spec.name, spec.argv, spec.env, sink=sink, log_path=log_path, cwd=str(spec.cwd))
        self.spec = spec
        self.start_timeout_s = start_timeout_s
        self.heartbeat_s = heartbeat_s
        self._sender_factory = sender
        self._send: Sender | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.head_url = head_url
        self.registrar: Registrar | None = None  # once its / answers: registers it and renews its lease
        self._never = asyncio.Event()
        self.gave_up: str | None = None  # why gymctl stopped it while starting (its / never answered)

    # -- process ------------------------------------------------------------------------------
    def fork(self, run: Callable[[int], int], close_fds: list[int]) -> None:
        """A NeMo Gym server is never a fork of gymctl: it runs on its own interpreter."""
        self.spawn()

    def spawn(self, extra_env: dict[str, str] | None = None) -> None:
        """Start `<python> <dir>/app.py` in the server's directory and a session of its own (its pid is its group)."""
        self._reset()
        self.gave_up = None
        self.registrar = None
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
    @property
    def registered(self) -> asyncio.Event:
        """Set once the head took its registration (this start's)."""
        return self.registrar.registered if self.registrar is not None else self._never

    @property
    def refused(self) -> str | None:
        """Why the head refuses it (wrong token, its address held by another): waiting will not help."""
        return self.registrar.refused if self.registrar is not None else None

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
        """Wait (bounded) for its GET / to answer, then keep it registered with gymctl's Registrar while / answers."""
        async def answering_or_gone() -> bool:
            return not self.running or await self.answers(timeout_s=1.0)

        left = max(self.start_timeout_s - (time.monotonic() - self.started_at), 0.0)
        try:
            await poll_until(answering_or_gone, left, 0.1, what=f"{self.name} answering GET {self.spec.url}/")
        except WaitTimeoutError:
            self.gave_up = (f"NotReadyError: {self.name} (pid {self.pid}) did not answer GET {self.spec.url}/ within "
                            f"{self.start_timeout_s:.0f} s (server_spinup_timeout_seconds); stopping it")
            self.tail.append(self.gave_up)
            self.sink.line(self.name, self.gave_up)
            self.signal_group(signal.SIGTERM)
            return
        if not self.running:
            return
        self.url = self.spec.url
        assert self._send is not None
        # gymctl's own registration loop: 401/409 said once and clearly, backoff while the head is away; a beat only while / answers.
        self.registrar = Registrar(self._send, self._records(), interval_s=self.heartbeat_s, head_url=self.head_url,
                                   alive=lambda: self.answers(timeout_s=5.0))
        await self.registrar.run()

    async def _stop_keeper(self, *, deregister: bool) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if deregister and self.registrar is not None and self.registrar.registered.is_set():
            await self.registrar.stop(deregister=True)  # the head may be gone already; its lease will drop it
