"""Supervises the separated runtime's children: readiness, exit reports, restarts with backoff, the stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from gymctl.config.model import GymConfig
from gymctl.errors import NotReadyError, StartupError, WaitTimeoutError
from gymctl.polling import poll_until
from gymctl.retry import RetryPolicy
from gymctl.runtime.children import Child, OutputSink
from gymctl.runtime.processes import describe_exit
from gymctl.runtime.signals import capture_signals
from gymctl.server.auth import auth_headers
from gymctl.server.serving import bind_socket

RestartPolicy = Literal["no", "on-failure"]
READY_TIMEOUT_S = 60.0
GRACE_S = 15.0  # SIGTERM -> SIGKILL (a server drains in-flight requests for up to 10 s)
# Restart delays 0.5, 1, 2, 4, 8, 8 ... s; the count resets once a child stayed up STABLE_S.
RESTART_BACKOFF = RetryPolicy(retries=0, first_s=0.5, factor=2.0, max_s=8.0)
STABLE_S = 30.0


@dataclass
class ProcessRow:
    """One line of the ready table."""

    instance: str
    server_type: str
    impl: str
    url: str
    pid: int | None
    workers: int = 1  # processes serving this instance's port (gymctl.instances.NAME.workers)
    pids: list[int] = field(default_factory=list)  # theirs, when more than one


def worker_label(name: str) -> bool:
    """Is this child one of several worker processes of one port (`NAME/w2`)?"""
    return "/w" in name


def _port_free(port: int) -> bool:
    try:
        bind_socket("127.0.0.1", port, "restart").close()
        return True
    except Exception:  # noqa: BLE001 -- whatever stops a bind means the port is not free
        return False


# on_ready(head_url, rows, seconds to ready): how the caller shows the ready table (the CLI prints it).
ReadyHook = Callable[[str, list[ProcessRow], float], None]


class Supervisor:
    """Starts the children, waits for the head's readiness, restarts crashed children, stops them all."""

    def __init__(self, cfg: GymConfig, children: list[Child], *, restart: RestartPolicy, sink: OutputSink, token: str | None,
                 started_at: float | None = None, on_ready: ReadyHook | None = None, remote_head: bool = False,
                 head_wait_s: float = READY_TIMEOUT_S) -> None:
        self.cfg = cfg
        self.on_ready = on_ready
        self.started_at = started_at if started_at is not None else time.monotonic()  # for "ready in N s"
        # A worker (the head on another host) has no head child: it is ready once its own children registered there.
        self.head: Child | None = None
        if remote_head:
            self.instances = list(children)
        else:
            self.head, *self.instances = children
        self.head_wait_s = head_wait_s
        self.children = children
        # A NeMo Gym server may take longer to answer than gymctl's (gymctl.runtime.nemo_gym_child: its own bound).
        self.ready_timeout_s = max([READY_TIMEOUT_S, *(float(getattr(c, "start_timeout_s", 0)) + 5 for c in children)])
        self.restart = restart
        self.sink = sink
        self.token = token
        self.ready = False
        self.stop_event = asyncio.Event()
        self.forced = False
        self.failure: StartupError | None = None
        self.exit_code = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- signals -----------------------------------------------------------------------------
    def _on_stop(self, sig: int) -> None:
        self.sink.note(f"{signal.Signals(sig).name}: stopping every process (again to force) ...")
        self.stop_event.set()

    def _on_force(self, sig: int) -> None:
        self.forced = True
        self.sink.note(f"{signal.Signals(sig).name} again: forcing the stop (SIGKILL to every process group)")
        for child in self.children:
            child.signal_group(signal.SIGKILL)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self, *, handle_signals: bool = True) -> int:
        """Supervise until SIGINT/SIGTERM (captured meanwhile, restored after) or a start-up failure; the exit code.

        `handle_signals=False`: a library caller (gymctl.api, a Ray actor's thread) stops it by `stop_event` instead.
        """
        with capture_signals(self._on_stop, self._on_force) if handle_signals else contextlib.nullcontext():
            for child in self.children:
                await child.attach()
            self._watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
            try:
                await self._wait_ready()
                await self.stop_event.wait()
            finally:
                await self.shutdown()
        if self.failure is not None:
            raise self.failure
        return 130 if self.forced else self.exit_code

    async def _wait_ready(self) -> None:
        if self.head is None:
            await self._wait_registered()
            return
        url = self.cfg.head_url + "/health"
        last: Any = None
        remaining = self.ready_timeout_s - (time.monotonic() - self.started_at)
        async with aiohttp.ClientSession(headers=auth_headers(self.token)) as session:

            async def head_ready() -> bool:
                nonlocal last
                if self.stop_event.is_set():
                    return True
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        last = await r.json(content_type=None)
                        return r.status == 200
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                    return False

            try:
                await poll_until(head_ready, max(remaining, 0.0), 0.05, what=f"head {self.cfg.head_url} ready")
            except WaitTimeoutError:
                waiting = (last or {}).get("waiting_for") if isinstance(last, dict) else None
                tails = "\n".join(f"{c.name}: {line}" for c in self.children if c.name in (waiting or []) for line in list(c.tail)[-5:])
                self.stop_event.set()
                raise NotReadyError(
                    f"head {self.cfg.head_url} not ready after {self.ready_timeout_s:.0f} s"
                    + (f"; still waiting for {', '.join(waiting)}" if waiting else ""),
                    service="head", status=str(last), log_tail=tails,
                ) from None
            if self.stop_event.is_set():
                return
            self.ready = True
            rows = [ProcessRow("head", "head", "registry", self.cfg.head_url, self.head.pid), *await self._rows(session)]
            if self.on_ready:
                self.on_ready(self.cfg.head_url, rows, time.monotonic() - self.started_at)

    async def _wait_registered(self) -> None:
        """The head lives on another host: wait (up to head_wait_s) until each child here holds a healthy registration there."""
        head = self.cfg.head_url
        self.sink.note(f"the head is on another host ({head}); registering there (waiting up to {self.head_wait_s:.0f} s, GYMCTL_HEAD_WAIT_S)")
        last = ""
        async with aiohttp.ClientSession(headers=auth_headers(self.token)) as session:

            async def registered() -> bool:
                nonlocal last
                if self.stop_event.is_set():
                    return True
                pids = {c.pid for c in self.instances if c.pid is not None}
                try:
                    async with session.get(head + "/server_instances", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        items = await r.json(content_type=None)
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                    last = type(e).__name__
                    return False
                healthy = [i for i in items if isinstance(i, dict) and i.get("status") == "healthy"]
                seen = {i.get("pid") for i in healthy} | self._worker_pids_registered(healthy)
                last = f"registered: {len(pids & seen)} of {len(pids)} processes"
                return pids <= seen

            try:
                await poll_until(registered, self.head_wait_s, 0.1, what=f"registration with the head at {head}")
            except WaitTimeoutError:
                self.stop_event.set()
                raise NotReadyError(f"registration with the head at {head}: not after {self.head_wait_s:.1f} s ({last}); is it up? "
                                    "Start the head's host first, or check head_server in this config", service="head") from None
            if self.stop_event.is_set():
                return
            self.ready = True
            ours = {c.pid for c in self.instances}
            rows = [ProcessRow("head", "head", "on another host", head, None),
                    *[r for r in await self._rows(session) if r.pid in ours]]
            if self.on_ready:
                self.on_ready(head, rows, time.monotonic() - self.started_at)

    def _workers_of(self, instance: str, port: Any) -> list[Child]:
        """The worker children serving `instance` on `port` (none unless it has workers)."""
        from gymctl.runtime.separated import instance_of

        return [c for c in self.instances if worker_label(c.name) and instance_of(c.name) == instance and c.port == port]

    def _worker_pids_registered(self, healthy: list[dict[str, Any]]) -> set[int | None]:
        """Every worker's pid whose port has a healthy registration: the workers of a port share one (whichever sent it last)."""
        return {c.pid for i in healthy for c in self._workers_of(i.get("process_name", ""), i.get("port"))}

    async def _rows(self, session: aiohttp.ClientSession) -> list[ProcessRow]:
        async with session.get(self.cfg.head_url + "/server_instances", timeout=aiohttp.ClientTimeout(total=5)) as r:
            items = await r.json(content_type=None)
        rows = []
        for item in items:
            impl = item.get("name", "") + (f" (alias of {item['alias_of']})" if item.get("alias_of") else "")
            workers = self._workers_of(item.get("alias_of") or item["process_name"], item.get("port"))
            rows.append(ProcessRow(item["process_name"], item.get("server_type", ""), impl, item.get("host_url") or item["url"], item.get("pid"),
                                   workers=max(1, len(workers)), pids=[c.pid for c in workers if c.pid is not None]))
        return rows

    async def _watch(self, child: Child) -> None:
        """Report each exit of `child`; restart it on failure when asked; fail the start-up if it dies first."""
        failures = 0
        while True:
            code = await child.wait()
            if self._stopping:
                return
            ran_s = time.monotonic() - child.started_at
            if not self.ready:
                where = f"; full log: {child.log_path}" if child.log_path else ""
                reason = child.last_error_line()
                self.failure = StartupError(
                    f"{child.name} exited with {describe_exit(code)} while starting"
                    + (f": {reason}" if reason else "") + f"{where}; stopped the other processes",
                    instance=child.name, exit_code=code, log_tail="\n".join(child.tail),
                )
                self.exit_code = 1
                self.stop_event.set()
                return
            self.sink.note(f"{child.name} (pid {child.pid}) exited with {describe_exit(code)}")
            if self.restart != "on-failure" or code == 0:
                if not any(c.running for c in self.children):
                    self.sink.note("no process left running")
                    self.exit_code = 1
                    self.stop_event.set()
                return
            failures = 0 if ran_s > STABLE_S else failures + 1
            delay = RESTART_BACKOFF.delay(failures)
            child.restarts += 1
            self.sink.note(f"restarting {child.name} in {delay:.1f} s (restart {child.restarts})")
            try:
                await asyncio.wait_for(self.stop_event.wait(), delay)
                return  # stopping meanwhile
            except TimeoutError:
                pass
            # Same port as before when it is still free: peers' cached routes stay right.
            port = child.port if child is not self.head else None
            await child.start({"GYMCTL_PORT": str(port)} if port and _port_free(port) else None)

    async def shutdown(self) -> None:
        """SIGTERM each process group (instances first, so they deregister), SIGKILL after the grace period."""
        self._stopping = True
        for group in (self.instances, [self.head] if self.head else []):
            live = [c for c in group if c.running]
            for c in live:
                c.signal_group(signal.SIGTERM)
            await self._wait_exit(live, GRACE_S)
        for child in self.children:  # anything left, grandchildren included
            child.signal_group(signal.SIGKILL)
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self.head is None:
            await self._deregister_workers()
        codes = ", ".join(f"{c.name} {describe_exit(c.returncode)}" for c in self.children if c.pid is not None)
        self.sink.note(f"stopped; exit codes: {codes}")
        for child in self.children:
            child.close()

    async def _deregister_workers(self) -> None:
        """The head is on another host: a port's workers left its one registration in place (gymctl.runtime.serve); drop it now
        that they have all stopped (the head's lease would otherwise show it unhealthy for a while)."""
        from gymctl.runtime.separated import instance_of

        groups = {(instance_of(c.name), c.url) for c in self.instances if worker_label(c.name) and c.url}
        if not groups:
            return
        with contextlib.suppress(Exception):  # the head may be gone: its lease drops them
            async with aiohttp.ClientSession(headers=auth_headers(self.token)) as session:
                for name, url in groups:
                    async with session.post(self.cfg.head_url + "/deregister", json={"process_name": name, "url": url},
                                            timeout=aiohttp.ClientTimeout(total=2)) as r:
                        await r.read()

    async def _wait_exit(self, children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(c.running for c in children) and time.monotonic() < deadline:
            if self.forced:
                break
            await asyncio.sleep(0.05)
        for c in children:
            if c.running:
                self.sink.note(f"{c.name} (pid {c.pid}) still running after {timeout:.0f} s: SIGKILL")
                c.signal_group(signal.SIGKILL)
        while any(c.running for c in children):  # noqa: ASYNC110 -- SIGKILLed: each child's watcher clears .running within ms
            await asyncio.sleep(0.02)
