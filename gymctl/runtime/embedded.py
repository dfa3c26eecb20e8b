"""Deployments embedded in a command's own process: `gymctl run` all-in-one, and `gymctl collect` with no head running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gymctl.config.model import GymConfig
from gymctl.head.registry import Registry
from gymctl.rollouts.collector import Collector, CollectSpec
from gymctl.rollouts.stats import RolloutStats, Summary
from gymctl.runtime.addresses import is_own_address
from gymctl.runtime.inprocess import RunningDeployment, start, stop, wait_ready
from gymctl.runtime.signals import capture_signals
from gymctl.server.settings import ServerSettings

# GYMCTL_PORT / GYMCTL_HEAD_URL / GYMCTL_HOST_URL describe ONE server (containers, `gymctl serve`); a shell
# that exported them must not make every instance of an embedded deployment bind one port.
_ONE_SERVER_ONLY = {"head_url": None, "port": None, "host_url": None}


async def serve_all(
    cfg: GymConfig, log_level: str, *, settings: ServerSettings | None = None,
    on_ready: Callable[[RunningDeployment, float], None] | None = None, on_stopping: Callable[[], None] | None = None,
    on_joining: Callable[[str, float], None] | None = None, on_joined: Callable[[str, str, list[str]], None] | None = None,
) -> None:
    """The head and every instance of `cfg` in this process until SIGINT/SIGTERM (a second one exits at once).

    When `head_server` is not an address of this host, no head starts here: the instances register with the
    head on that host, waiting for it up to GYMCTL_HEAD_WAIT_S (`on_joining(head_url, seconds)` first). On the
    head's host, `on_joined(name, event, urls)` tells when an instance expected from another host registers
    ("joined") or loses its last healthy registration ("left").
    """
    from gymctl.config.workers import refuse_in_one_process
    from gymctl.runtime.loop import tune_gc
    from gymctl.server.logformat import configure_logging

    refuse_in_one_process(cfg)
    t0 = time.monotonic()
    settings = (settings or ServerSettings.from_env()).model_copy(update={**_ONE_SERVER_ONLY, "log_level": log_level})
    configure_logging("", log_level, settings.log_format)  # --log-format json: one JSON object per line
    head_here = is_own_address(cfg.head_host)  # else: a worker; its instances join the head on another host
    dep = await start(cfg, settings=settings, with_head=head_here)
    tune_gc()
    stopping = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    try:
        with capture_signals(lambda sig: stopping.set()):
            if not head_here and on_joining:
                on_joining(dep.head_url, settings.head_wait_s)
            await _until_registered(dep, settings.head_wait_s if not head_here else 30.0, stopping)
            if stopping.is_set():
                return
            if on_ready:
                on_ready(dep, time.monotonic() - t0)
            if dep.registry is not None and cfg.remote and on_joined:
                watcher = asyncio.create_task(watch_remote(dep.registry, cfg.remote, on_joined, stopping))
            await stopping.wait()
            if on_stopping:
                on_stopping()
    finally:
        if watcher is not None:
            watcher.cancel()
        await stop(dep)


async def _until_registered(dep: RunningDeployment, timeout_s: float, stopping: asyncio.Event) -> None:
    """wait_ready, given up early (without an error) when a signal asks to stop meanwhile."""
    waiting = asyncio.ensure_future(wait_ready(dep, timeout_s))
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([waiting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
    if waiting.done():
        waiting.result()  # raises what wait_ready raised
    else:
        waiting.cancel()


async def watch_remote(registry: Registry, remote: dict[str, str], on_joined: Callable[[str, str, list[str]], None],
                       stopping: asyncio.Event, interval_s: float = 0.5) -> None:
    """Tell when instances expected from other hosts register with the head here, and when they leave."""
    known: dict[str, list[str]] = {}
    while not stopping.is_set():
        healthy: dict[str, list[str]] = {}
        for item in registry.instances():
            if item["process_name"] in remote and item["status"] == "healthy":
                healthy.setdefault(item["process_name"], []).append(item["url"])
        for name in remote:
            before, now = known.get(name, []), healthy.get(name, [])
            if now != before:
                on_joined(name, "joined" if len(now) >= len(before) else "left", now)
        known = healthy
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)


async def head_alive(session: aiohttp.ClientSession, head_url: str, timeout_s: float = 2.0) -> bool:
    """Does a head answer at `head_url` (its /server_instances, any status)?"""
    try:
        async with session.get(head_url.rstrip("/") + "/server_instances", timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            await r.read()
            return True
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


async def start_embedded(cfg: GymConfig, settings: ServerSettings | None = None) -> RunningDeployment:
    """Start the whole deployment of `cfg` here; the head binds port 0 and `dep.head_url` names the port it got."""
    from gymctl.config.workers import refuse_in_one_process

    refuse_in_one_process(cfg, "a collection with no head running (the deployment started in the collecting process)")
    cfg.head_port = 0
    dep = await start(cfg, settings=(settings or ServerSettings.from_env()).model_copy(update=_ONE_SERVER_ONLY))
    try:
        await wait_ready(dep)
    except BaseException:
        await stop(dep)
        raise
    return dep


@dataclass
class Collected:
    summary: Summary
    in_process: bool  # the deployment was started in this process for the collection


async def collect(
    spec: CollectSpec, head_url: str, cfg: GymConfig | None, *, start_if_absent: bool, head_wait_s: float = 10.0,
    settings: ServerSettings | None = None,
    on_progress: Callable[[RolloutStats], None] | None = None, on_input_error: Callable[[str], None] | None = None,
    on_started: Callable[[RunningDeployment, float], None] | None = None, on_stopping: Callable[[], None] | None = None,
    display: contextlib.AbstractContextManager[Any] | None = None,
) -> Collected:
    """Collect `spec` through the agent registered at `head_url`; with `start_if_absent` and no head answering,
    first start `cfg`'s deployment in this process (stopped after).

    SIGINT/SIGTERM stop starting rollouts (rows written are kept; `on_stopping` tells the user), a second
    one exits at once. `display` (a progress bar) is entered around the collection itself.
    """
    from gymctl.rollouts.agents import resolve_agent
    from gymctl.server.auth import auth_headers
    from gymctl.server.client import new_session

    settings = settings or ServerSettings.from_env()
    token = settings.auth_token or None
    if spec.processes is None:
        spec.processes = settings.collect_processes  # GYMCTL_COLLECT_PROCESSES, else as many as the concurrency needs
    session = new_session()
    dep = None
    try:
        if start_if_absent and cfg is not None and not await head_alive(session, head_url):
            from gymctl.server.capacity import client_connections_fit

            client_connections_fit(spec.concurrency, embedded=True)  # collector and servers share this process's open files
            t0 = time.monotonic()
            dep = await start_embedded(cfg, settings)
            head_url = dep.head_url
            if on_started:
                on_started(dep, time.monotonic() - t0)
        agent_url = await resolve_agent(head_url, spec.agent, session=session, token=token, head_wait_s=head_wait_s)
        collector = Collector(spec, agent_url, session=session, headers=auth_headers(token), on_progress=on_progress, on_input_error=on_input_error)

        def on_stop(sig: int) -> None:
            if on_stopping:
                on_stopping()
            collector.stop()

        with capture_signals(on_stop), display or contextlib.nullcontext():  # forced: every written row is complete
            summary = await collector.run()
        return Collected(summary, dep is not None)
    finally:
        await session.close()
        if dep is not None:
            await stop(dep)
