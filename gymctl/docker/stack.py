"""A compose stack on the engine: up (with waiting and diagnosis), down, restart, logs — python-on-whales for compose."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from python_on_whales.exceptions import DockerException

from gymctl.compose.render import RenderedStack
from gymctl.docker.cli import nvidia_runtime, require_docker
from gymctl.docker.images import missing_images
from gymctl.docker.state import (
    ContainerState,
    container_states,
    health_log,
    labelled,
    last_exit_code,
    log_tail,
)
from gymctl.errors import (
    DockerError,
    GymctlError,
    NotReadyError,
    PortInUseError,
    StartupError,
    UsageError,
)

Progress = Callable[[list[ContainerState], str], None]


class StackNotUpError(GymctlError):
    """The project has no containers (nothing to restart or show)."""


@contextmanager
def _env(extra: dict[str, str]) -> Iterator[None]:
    """Secret values reach compose through its environment only (never a file); restored afterwards."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _whales_error(e: Exception, what: str) -> DockerError:
    stderr = (getattr(e, "stderr", None) or str(e)).strip()
    argv = list(getattr(e, "docker_command", []) or [])
    return DockerError(f"{what} failed: {stderr}", argv=argv, returncode=getattr(e, "return_code", None), stderr=stderr)


@functools.cache
def _empty_dir() -> str:
    path = tempfile.mkdtemp(prefix="gymctl-compose-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class ComposeStack:
    """One compose project: `file` is its rendered compose file (None: act by project name and labels only)."""

    def __init__(self, project: str, file: Path | None = None) -> None:
        self.project = project
        self.file = file if file and file.is_file() else None
        self.client = require_docker()
        self.since = time.time()  # deaths after this are this run's (exit codes of restarted containers)

    def _compose(self) -> Any:
        from python_on_whales import DockerClient

        if self.file:
            return DockerClient(compose_files=[self.file], compose_project_name=self.project).compose
        # An empty project directory, made once per process: never pick up a docker-compose.yml from the cwd.
        return DockerClient(compose_project_name=self.project, compose_project_directory=_empty_dir()).compose

    def ps(self) -> list[ContainerState]:
        return container_states(self.client, self.project)

    def _require_up(self) -> list[ContainerState]:
        states = self.ps()
        if not states:
            raise StackNotUpError(f"stack {self.project!r} is not up (no containers of that compose project); start it with `gymctl up`")
        return states

    # -- up --------------------------------------------------------------------------------------------
    def preflight(self, rendered: RenderedStack) -> None:
        """Refuse early, with the fix: missing images, GPUs without the NVIDIA runtime, host ports taken."""
        images = [s.image for s in rendered.stack.services]
        missing = missing_images(images)
        if missing:
            raise DockerError(f"image(s) not built: {', '.join(missing)}; run `gymctl build` (or `gymctl up --build`)")
        gpu = [f"{s.instance} (gpus: {s.gpus})" for s in rendered.stack.services if s.gpus]
        if gpu and not nvidia_runtime(self.client):
            raise DockerError(
                f"{', '.join(gpu)} reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime "
                "(docker info shows no 'nvidia' runtime); install nvidia-container-toolkit and restart dockerd, or set gpus: 0"
            )
        ours = {p for c in self.ps() for p in c.ports}
        for s in rendered.stack.services:
            for p in s.ports:
                if any(o.endswith(f":{p.host_port}->{p.container_port}/tcp") for o in ours):
                    continue  # held by this stack's own running container
                _check_free(p.host_ip, p.host_port, f"{s.instance} (published port)")

    def up(self, rendered: RenderedStack, *, wait: bool = True, timeout_s: float = 120.0, progress: Progress = lambda _s, _m: None) -> list[ContainerState]:
        """`compose up -d`; with `wait`, until every container is healthy and the head is ready."""
        self.preflight(rendered)
        self.since = time.time()
        failure: list[Exception] = []

        def run() -> None:
            try:
                with _env(rendered.secret_env):
                    self._compose().up(detach=True, remove_orphans=True, pull="never", quiet=True)
            except DockerException as e:  # reported by the waiting thread, with the failing container's logs
                failure.append(e)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout_s
        while worker.is_alive():
            states = self.ps()
            progress(states, "starting")
            bad = next((s for s in states if s.failed), None)
            if bad:  # compose would wait for a dependency that keeps crashing: report it now
                self._raise_container(bad)
            worker.join(0.25)
        if failure:
            self._raise_failed(failure[0])
        if not wait:
            return self.ps()
        states = self.wait_healthy(deadline, progress)
        self._wait_head_ready(rendered, deadline, progress)
        return states

    def wait_healthy(self, deadline: float, progress: Progress, services: list[str] | None = None) -> list[ContainerState]:
        while True:
            states = [s for s in self.ps() if services is None or s.service in services]
            progress(states, "waiting for healthy")
            bad = next((s for s in states if s.failed), None)
            if bad:
                self._raise_container(bad)
            if states and all(s.ready for s in states):
                return states
            if time.monotonic() > deadline:
                slow = next((s for s in states if not s.ready), None)
                tail = log_tail(self.client, slow.id) if slow else ""
                raise NotReadyError(f"stack {self.project!r}: {slow.service if slow else 'containers'} not healthy in time ({slow.status if slow else 'none'})",
                                    service=slow.service if slow else None, status=slow.status if slow else None, log_tail=tail)
            time.sleep(0.25)

    def _wait_head_ready(self, rendered: RenderedStack, deadline: float, progress: Progress) -> None:
        head = next((p for s in rendered.stack.services for p in s.ports if s.name in ("head", "gymctl")), None)
        if head is None:
            return
        url = f"http://{head.host_ip}:{head.host_port}/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise NotReadyError(f"head at {url} not ready in time: not every instance registered (gymctl status --head {url[:-7]})", service="head")
            progress(self.ps(), "waiting for registration")
            time.sleep(0.2)

    def _raise_container(self, s: ContainerState) -> None:
        tail = log_tail(self.client, s.id)
        if s.health == "unhealthy" and s.state == "running":
            raise StartupError(f"{s.service}: container is unhealthy\n{health_log(self.client, s.id)}", instance=s.instance, log_tail=tail)
        code = s.exit_code
        if s.state not in ("exited", "dead") or s.restarts:
            code = last_exit_code(self.client, s.id, self.since - 1)
            code = s.exit_code if code is None else code
        raise StartupError(
            f"{s.service}: container exited with code {code} while starting (state {s.state}, {s.restarts} restart(s)); "
            f"see `gymctl logs {s.instance} -p {self.project}`, then `gymctl down -p {self.project}`",
            instance=s.instance, exit_code=code, log_tail=tail,
        )

    def _raise_failed(self, e: Exception) -> None:
        err = _whales_error(e, "docker compose up")
        text = err.stderr.lower()
        if "port is already allocated" in text or "address already in use" in text:
            raise PortInUseError("127.0.0.1", _port_in(err.stderr), f"stack {self.project!r}") from None
        bad = next((s for s in self.ps() if s.failed), None)
        if bad:
            self._raise_container(bad)
        raise err

    # -- the rest --------------------------------------------------------------------------------------
    def down(self, *, volumes: bool = False) -> dict[str, list[str]]:
        """Stop and remove the stack's containers and network (and volumes); returns what had the label before."""
        before = labelled(self.client, self.project)
        if not self.ps() and not any(before.values()):
            raise StackNotUpError(f"stack {self.project!r} is not up; nothing to stop")
        try:
            self._compose().down(remove_orphans=True, volumes=volumes, timeout=10, quiet=True)
        except DockerException as e:
            raise _whales_error(e, "docker compose down") from None
        return before

    def restart(self, service: str, *, timeout_s: float = 60.0, progress: Progress = lambda _s, _m: None) -> ContainerState:
        states = self._require_up()
        known = {s.service for s in states}
        if service not in known:
            raise UsageError(f"stack {self.project!r} has no service {service!r} (services: {', '.join(sorted(known))})")
        try:
            self._compose().restart(services=[service], timeout=10)
        except DockerException as e:
            raise _whales_error(e, f"docker compose restart {service}") from None
        time.sleep(0.3)
        return self.wait_healthy(time.monotonic() + timeout_s, progress, services=[service])[0]

    def logs(self, service: str | None = None, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        states = self._require_up()
        if service is not None and service not in {s.service for s in states}:
            raise UsageError(f"stack {self.project!r} has no service {service!r} (services: {', '.join(sorted({s.service for s in states}))})")
        try:
            for _source, chunk in self._compose().logs(services=[service] if service else [], follow=follow, stream=True,
                                                       tail=str(tail) if tail is not None else None):
                yield chunk.decode(errors="replace")
        except DockerException as e:
            raise _whales_error(e, "docker compose logs") from None


def _check_free(host: str, port: int, owner: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are not "taken"
        try:
            s.bind((host, port))
        except OSError:
            raise PortInUseError(host, port, owner) from None


def _port_in(stderr: str) -> int:
    import re

    m = re.search(r":(\d{2,5})(?:\D|$)", stderr)
    return int(m.group(1)) if m else 0
