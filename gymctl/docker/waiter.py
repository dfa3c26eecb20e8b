"""Watching a stack start: refuse early (images, GPUs, ports), fail fast on a crashing container, wait for healthy and the head."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from gymctl.compose.render import RenderedStack
from gymctl.docker.backend import ComposeBackend
from gymctl.docker.state import ContainerState
from gymctl.errors import (
    DockerError,
    DockerUnavailableError,
    GymctlError,
    NotReadyError,
    PortInUseError,
    StartupError,
)
from gymctl.polling import poll_until_sync

Progress = Callable[[list[ContainerState], str], None]
HEAD_SERVICES = ("head", "gymctl")  # the separated head, the all-in-one container


def no_progress(_states: list[ContainerState], _phase: str) -> None:
    """The default progress callback: show nothing."""


def from_registry(image: str) -> bool:
    """`10.0.0.1:5000/gymctl/x:latest`, `registry.example.com/gymctl/x`: Docker's rule for a registry host in a reference."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


class StackWaiter:
    """Turns what the engine shows while a stack starts into readiness or one clear error (log tail, exit code, fix)."""

    def __init__(self, backend: ComposeBackend, project: str, *, since: float, poll_s: float = 0.25) -> None:
        self.backend = backend
        self.project = project
        self.since = since  # deaths after this are this run's (exit codes of restarted containers)
        self.poll_s = poll_s

    def states(self, services: list[str] | None = None) -> list[ContainerState]:
        return [s for s in self.backend.containers(self.project) if services is None or s.service in services]

    def preflight(self, rendered: RenderedStack) -> None:
        """Refuse before anything starts, with the fix: missing images, GPUs without the NVIDIA runtime, host ports taken."""
        services = rendered.stack.services
        # An image named by a registry (REGISTRY/gymctl/x) is pulled by compose on the engine that runs it.
        missing = self.backend.missing_images([s.image for s in services if not from_registry(s.image)])
        if missing:
            raise DockerError(f"image(s) not built: {', '.join(missing)}; run `gymctl build` (or `gymctl up --build`)")
        gpu = [f"{s.instance} (gpus: {s.gpus})" for s in services if s.gpus]
        if gpu and not self.backend.nvidia_runtime():
            raise DockerError(
                f"{', '.join(gpu)} reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime "
                "(docker info shows no 'nvidia' runtime); install nvidia-container-toolkit and restart dockerd, or set gpus: 0"
            )
        ours = {p for c in self.states() for p in c.ports}
        for s in services:
            for p in s.ports:
                if any(o.endswith(f":{p.host_port}->{p.container_port}/tcp") for o in ours):
                    continue  # held by this stack's own running container
                if not self.backend.port_free(p.host_ip, p.host_port):
                    raise PortInUseError(p.host_ip, p.host_port, f"{s.instance} (published port)")

    def watch_start(self, start: Callable[[], None], progress: Progress = no_progress) -> None:
        """Run `start` (compose up) in a thread; a container that fails meanwhile is reported at once, with its logs."""
        failure: list[DockerError] = []

        def run() -> None:
            try:
                start()
            except DockerError as e:  # reported here, with the failing container's logs
                failure.append(e)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        while worker.is_alive():
            states = self.states()
            progress(states, "starting")
            bad = next((s for s in states if s.failed), None)
            if bad:  # compose would wait for a dependency that keeps crashing: report it now
                raise self.container_error(bad)
            worker.join(self.poll_s)
        if failure:
            raise self.diagnose(failure[0])

    def wait_healthy(self, deadline: float, progress: Progress = no_progress, services: list[str] | None = None) -> list[ContainerState]:
        """Until every container (of `services`) is healthy; a failed one, or the deadline (monotonic), raises."""
        last: list[ContainerState] = []

        def healthy() -> list[ContainerState] | None:
            last[:] = states = self.states(services)
            progress(states, "waiting for healthy")
            bad = next((s for s in states if s.failed), None)
            if bad:
                raise self.container_error(bad)
            return states if states and all(s.ready for s in states) else None

        def too_slow() -> NotReadyError:
            slow = next((s for s in last if not s.ready), None)
            tail = self.backend.container_logs(slow.id) if slow else ""
            what = slow.service if slow else "containers"
            return NotReadyError(f"stack {self.project!r}: {what} not healthy in time ({slow.status if slow else 'none'})",
                                 service=slow.service if slow else None, status=slow.status if slow else None, log_tail=tail)

        return poll_until_sync(healthy, deadline - time.monotonic(), self.poll_s, what="healthy containers", on_timeout=too_slow)

    def wait_head_ready(self, rendered: RenderedStack, deadline: float, progress: Progress = no_progress) -> None:
        """Until the head's /health answers 200 (every instance registered)."""
        head = next((p for s in rendered.stack.services for p in s.ports if s.name in HEAD_SERVICES), None)
        if rendered.stack.head_url:  # as clients outside reach it (https:// through the --tls proxy)
            url = f"{rendered.stack.head_url}/health"
        elif head is not None:
            url = f"http://{head.host_ip}:{head.host_port}/health"
        else:
            return

        def ready() -> bool:
            if self.backend.http_ok(url):
                return True
            progress(self.states(), "waiting for registration")
            return False

        poll_until_sync(ready, deadline - time.monotonic(), self.poll_s, what="the head's readiness", on_timeout=lambda: NotReadyError(
            f"head at {url} not ready in time: not every instance registered (gymctl status --head {url[:-7]})", service="head"))

    def container_error(self, s: ContainerState) -> StartupError:
        """A failed container as a StartupError: why (unhealthy: the healthcheck's output; exited: its code) and its log tail."""
        tail = self.backend.container_logs(s.id)
        if s.health == "unhealthy" and s.state == "running":
            return StartupError(f"{s.service}: container is unhealthy\n{self.backend.health_log(s.id)}", instance=s.instance, log_tail=tail)
        code: int | None = s.exit_code
        if s.state not in ("exited", "dead") or s.restarts:
            died = self.backend.last_exit_code(s.id, since=self.since - 1)  # a restarted container shows 0 in its state
            code = s.exit_code if died is None else died
        return StartupError(
            f"{s.service}: container exited with code {code} while starting (state {s.state}, {s.restarts} restart(s)); "
            f"see `gymctl logs {s.instance} -p {self.project}`, then `gymctl down -p {self.project}`",
            instance=s.instance, exit_code=code, log_tail=tail,
        )

    def diagnose(self, err: DockerError) -> GymctlError:
        """A failed `compose up` as the error a user can act on: a port taken, a failed container, or compose's own words."""
        if isinstance(err, DockerUnavailableError):
            return err
        text = err.stderr.lower()
        if "port is already allocated" in text or "address already in use" in text:
            return PortInUseError("127.0.0.1", _port_in(err.stderr), f"stack {self.project!r}")
        bad = next((s for s in self.states() if s.failed), None)
        return self.container_error(bad) if bad else err


def _port_in(stderr: str) -> int:
    m = re.search(r":(\d{2,5})(?:\D|$)", stderr)
    return int(m.group(1)) if m else 0
