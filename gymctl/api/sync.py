"""SyncDeployment: the Deployment API for code without an event loop (a loop of its own runs in a background thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gymctl.api.deployment import Deployment, Topology
from gymctl.status import DeploymentStatus

T = TypeVar("T")


class SyncDeployment:
    """`SyncDeployment.start(paths, overrides)`, then `for index, result in dep.run_rollouts(rows)`, `dep.stop()`; also a context manager."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, deployment: Deployment) -> None:
        self._loop = loop
        self._thread = thread
        self.deployment = deployment

    @classmethod
    def start(cls, config_paths: Sequence[str | Path], overrides: Mapping[str, Any] | None = None, *,
              topology: Topology = "all-in-one", **options: Any) -> SyncDeployment:
        """Deployment.start (same arguments) on a loop in a daemon thread, which lives until stop()."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gymctl-deployment", daemon=True)
        thread.start()
        try:
            dep = asyncio.run_coroutine_threadsafe(Deployment.start(config_paths, overrides, topology=topology, **options), loop).result()
        except BaseException:
            _close(loop, thread)
            raise
        return cls(loop, thread, dep)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def head_url(self) -> str:
        return self.deployment.head_url

    def run_rollouts(self, rows: Iterable[Mapping[str, Any]], *, agent: str | None = None, concurrency: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row position, reply) as each rollout finishes; leaving the loop early cancels the rest."""
        stream = self.deployment.run_rollouts(list(rows), agent=agent, concurrency=concurrency)
        try:
            while True:
                try:
                    yield self._call(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._call(stream.aclose())

    def collect(self, rows: Iterable[Mapping[str, Any]], *, agent: str | None = None, concurrency: int | None = None) -> list[dict[str, Any]]:
        """Every row's reply, in input order."""
        return self._call(self.deployment.collect(list(rows), agent=agent, concurrency=concurrency))

    def health(self) -> DeploymentStatus:
        return self._call(self.deployment.health())

    def check_health(self) -> DeploymentStatus:
        return self._call(self.deployment.check_health())

    def stop(self) -> None:
        """Stop the deployment, then the background loop; nothing is left running."""
        if self._loop.is_closed():
            return
        try:
            self._call(self.deployment.stop())
        finally:
            _close(self._loop, self._thread)

    def __enter__(self) -> SyncDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _next(stream: AsyncGenerator[tuple[int, dict[str, Any]], None]) -> tuple[int, dict[str, Any]]:
    return await stream.__anext__()


def _close(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
