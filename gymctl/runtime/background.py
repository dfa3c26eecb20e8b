"""The separated runtime inside a caller's running event loop (gymctl.api, a Ray actor): started, awaited ready, stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import IO

from gymctl.config.model import GymConfig
from gymctl.errors import NotReadyError
from gymctl.runtime.children import OutputSink
from gymctl.runtime.separated import ConfigArgs, build_children, check_port_free, check_restart, child_labels, start_children
from gymctl.runtime.supervisor import READY_TIMEOUT_S, Supervisor


class BackgroundSeparated:
    """The head and one process per instance, supervised by a task on the running loop (no signal handlers taken)."""

    def __init__(self, supervisor: Supervisor, task: asyncio.Task[int]) -> None:
        self.supervisor = supervisor
        self.task = task

    @property
    def head_url(self) -> str:
        return self.supervisor.cfg.head_url

    def local_agents(self) -> dict[str, object]:
        return {}  # every instance runs in another process

    def dead(self) -> list[str]:
        """Children that are not running (a supervisor with restart=on-failure brings them back)."""
        return [c.name for c in self.supervisor.children if not c.running]

    async def stop(self) -> None:
        """SIGTERM every child (instances first, so they deregister), SIGKILL after the grace period; wait for it all."""
        self.supervisor.stop_event.set()
        with contextlib.suppress(Exception):  # a start-up failure was raised to the caller already
            await self.task


async def start_separated(
    cfg: GymConfig, config_args: ConfigArgs, *, token: str | None, restart: str = "on-failure",
    log_dir: str | None = None, log_level: str = "warning", stream: IO[str] | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
) -> BackgroundSeparated:
    """Spawn the children (exec: a loop is running, so no fork) and return once the head is ready.

    A child that dies while starting raises its StartupError (with its last lines) after the others are stopped.
    """
    policy = check_restart(restart)
    check_port_free(cfg.head_host, cfg.head_port, "head_server.port")
    sink = OutputSink(stream=stream, width=max(len(label) for label, _, _ in [("gymctl", "", {}), *child_labels(cfg)]))
    children = build_children(cfg, config_args, log_dir=log_dir, log_level=log_level, sink=sink)
    start_children(children, cfg, fork=False, log_level=log_level)
    sup = Supervisor(cfg, children, restart=policy, sink=sink, token=token)
    task = asyncio.create_task(sup.run(handle_signals=False))
    running = BackgroundSeparated(sup, task)
    try:
        deadline = asyncio.get_running_loop().time() + ready_timeout_s + 5
        while not sup.ready:
            if task.done():
                task.result()  # raises the start-up failure
                raise NotReadyError(f"the separated deployment at {cfg.head_url} stopped before it was ready", service="head")
            if asyncio.get_running_loop().time() > deadline:
                raise NotReadyError(f"head {cfg.head_url} not ready after {ready_timeout_s:.0f} s", service="head")
            await asyncio.sleep(0.05)
    except BaseException:
        await running.stop()
        raise
    return running
