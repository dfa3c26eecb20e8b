"""A compose stack: up (with waiting and diagnosis), down, ps, restart, logs — over a `ComposeBackend`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from gymctl.compose.render import RenderedStack
from gymctl.docker.backend import ComposeBackend, Pull, default_backend
from gymctl.docker.state import ContainerState
from gymctl.docker.waiter import Progress, StackWaiter, from_registry, no_progress
from gymctl.errors import GymctlError, UsageError

__all__ = ["ComposeStack", "Progress", "StackNotUpError"]


class StackNotUpError(GymctlError):
    """The project has no containers (nothing to restart or show)."""


class ComposeStack:
    """One compose project: `file` is its rendered compose file (None: act by project name and labels only).

    Nothing is asked of Docker until a verb runs; only the verbs that run Docker Compose (up, restart, logs) need
    the Compose v2 plugin, `down` and `ps` need the engine alone.
    """

    def __init__(self, project: str, file: Path | None = None, *, backend: ComposeBackend | None = None, poll_s: float = 0.25,
                 context: str | None = None) -> None:
        self.project = project
        self.file = file if file and file.is_file() else None
        if backend is None and context is not None:  # a named Docker context's engine (`--context NAME`)
            from gymctl.docker.docker_backend import DockerBackend

            backend = DockerBackend(context)
        self.backend = backend if backend is not None else default_backend()
        self.poll_s = poll_s
        self.since = time.time()  # deaths after this are this run's (exit codes of restarted containers)

    def _waiter(self) -> StackWaiter:
        return StackWaiter(self.backend, self.project, since=self.since, poll_s=self.poll_s)

    def ps(self) -> list[ContainerState]:
        """The project's containers, head first ([] when it is not up)."""
        return self.backend.containers(self.project)

    def require_up(self) -> list[ContainerState]:
        """The project's containers; StackNotUpError when it has none."""
        states = self.ps()
        if not states:
            raise StackNotUpError(f"stack {self.project!r} is not up (no containers of that compose project); start it with `gymctl up`")
        return states

    def _require_service(self, service: str, states: list[ContainerState]) -> None:
        known = {s.service for s in states}
        if service not in known:
            raise UsageError(f"stack {self.project!r} has no service {service!r} (services: {', '.join(sorted(known))})")

    # -- up --------------------------------------------------------------------------------------------
    def preflight(self, rendered: RenderedStack) -> None:
        """Refuse early, with the fix: missing images, GPUs without the NVIDIA runtime, host ports taken."""
        self._waiter().preflight(rendered)

    def up(self, rendered: RenderedStack, *, wait: bool = True, timeout_s: float = 120.0, progress: Progress = no_progress) -> list[ContainerState]:
        """`compose up -d`; with `wait`, until every container is healthy and the head is ready."""
        self.backend.compose_version()
        self.preflight(rendered)
        self.since = time.time()
        waiter = self._waiter()
        deadline = time.monotonic() + timeout_s
        # Images named by a registry (multi-host) are pulled by the engine that runs them; local ones never are.
        pull: Pull = "missing" if any(from_registry(s.image) for s in rendered.stack.services) else "never"
        waiter.watch_start(lambda: self.backend.compose_up(self.project, self.file, env=rendered.secret_env, detach=True,
                                                           remove_orphans=True, pull=pull), progress)
        if not wait:
            return self.ps()
        states = waiter.wait_healthy(deadline, progress)
        waiter.wait_head_ready(rendered, deadline, progress)
        return states

    def wait_healthy(self, deadline: float, progress: Progress = no_progress, services: list[str] | None = None) -> list[ContainerState]:
        """Until every container (of `services`) is healthy; a failed one, or the deadline (monotonic), raises."""
        return self._waiter().wait_healthy(deadline, progress, services)

    # -- the rest --------------------------------------------------------------------------------------
    def down(self, *, volumes: bool = False) -> dict[str, list[str]]:
        """Stop and remove the stack's containers and network (and volumes); returns what had the label before."""
        before = self.backend.labelled(self.project)
        if not self.ps() and not any(before.values()):
            raise StackNotUpError(f"stack {self.project!r} is not up; nothing to stop")
        self.backend.compose_down(self.project, volumes=volumes, timeout=10)
        return before

    def restart(self, service: str, *, timeout_s: float = 60.0, progress: Progress = no_progress) -> ContainerState:
        """Restart one service's container (the others keep serving) and wait until it is healthy again."""
        self._require_service(service, self.require_up())
        self.backend.compose_restart(self.project, self.file, [service], timeout=10)
        time.sleep(min(0.3, self.poll_s * 2))  # let the engine show the restart before reading health
        return self.wait_healthy(time.monotonic() + timeout_s, progress, services=[service])[0]

    def logs(self, service: str | None = None, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The logs of every container, or of one service's."""
        states = self.require_up()
        if service is not None:
            self._require_service(service, states)
        yield from self.backend.compose_logs(self.project, self.file, [service] if service else [], follow=follow, tail=tail)
