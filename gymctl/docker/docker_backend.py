"""The real `ComposeBackend`: Docker Compose through python-on-whales, engine reads and removals through the Docker SDK."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import socket
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from python_on_whales.exceptions import DockerException

from gymctl.compose.model import LABEL_PROJECT
from gymctl.docker import state
from gymctl.docker.backend import Pull
from gymctl.docker.cli import compose_version, nvidia_runtime
from gymctl.docker.contexts import context_host, sdk_client
from gymctl.docker.state import COMPOSE_PROJECT, COMPOSE_SERVICE, ContainerState
from gymctl.errors import DockerError

COMPOSE_DEPENDS_ON = "com.docker.compose.depends_on"


def whales_error(e: Exception, what: str) -> DockerError:
    """A python-on-whales failure as a DockerError (argv, exit code, stderr)."""
    stderr = (getattr(e, "stderr", None) or str(e)).strip()
    argv = [str(a) for a in getattr(e, "docker_command", []) or []]
    return DockerError(f"{what} failed: {stderr}", argv=argv, returncode=getattr(e, "return_code", None), stderr=stderr)


@functools.cache
def _empty_dir() -> str:
    path = tempfile.mkdtemp(prefix="gymctl-compose-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _stop_waves(containers: list[Any]) -> list[list[Any]]:
    """Containers in stop order, as compose stops them: those nothing else depends on first, then their dependencies."""
    by_service: dict[str, list[Any]] = {}
    needs: dict[str, set[str]] = {}
    for c in containers:
        labels = c.labels or {}
        svc = labels.get(COMPOSE_SERVICE, c.name)
        by_service.setdefault(svc, []).append(c)
        deps = {d.split(":")[0] for d in (labels.get(COMPOSE_DEPENDS_ON) or "").split(",") if d}
        needs.setdefault(svc, set()).update(deps)
    left = set(by_service)
    waves = []
    while left:
        needed = {d for s in left for d in needs[s]}
        wave = sorted(left - needed) or sorted(left)  # a cycle: stop the rest together
        waves.append([c for s in wave for c in by_service[s]])
        left -= set(wave)
    return waves


class DockerBackend:
    """Docker Compose (v2 plugin) for up/restart/logs; the engine alone for down and every read."""

    def __init__(self, context: str | None = None) -> None:
        self.context = context  # a Docker context's name; None: the current one (DOCKER_HOST, else the default)
        self._client: Any = None
        self._client_host: str | None = None

    def _remote(self) -> bool:
        host = context_host(self.context) if self.context else os.environ.get("DOCKER_HOST", "")
        return host.startswith(("tcp://", "ssh://", "http://", "https://"))

    def _engine(self) -> Any:
        host = self.context or os.environ.get("DOCKER_HOST")  # `--context` may repoint DOCKER_HOST within a process
        if self._client is None or self._client_host != host:
            self._client = sdk_client(self.context)
            self._client_host = host
        return self._client

    def _compose(self, project: str, file: Path | None) -> Any:
        from python_on_whales import DockerClient

        compose_version()
        if file:
            return DockerClient(context=self.context, compose_files=[file], compose_project_name=project).compose
        # An empty project directory, made once per process: never pick up a docker-compose.yml from the cwd.
        return DockerClient(context=self.context, compose_project_name=project, compose_project_directory=_empty_dir()).compose

    # -- Docker Compose --------------------------------------------------------------------------------
    def compose_version(self) -> str:
        self._engine()  # an absent engine is named before an absent plugin
        return compose_version()

    def compose_up(self, project: str, file: Path | None, *, env: Mapping[str, str] | None = None, detach: bool = True,
                   remove_orphans: bool = False, pull: Pull | None = None, wait: bool = False) -> None:
        from python_on_whales.utils import run

        cmd = self._compose(project, file).docker_compose_cmd + ["up"]  # noqa: RUF005 -- Command.__add__ keeps a Command (add_flag); unpacking makes a plain list
        cmd.add_flag("--detach", detach)
        cmd.add_flag("--remove-orphans", remove_orphans)
        cmd.add_simple_arg("--pull", pull)
        cmd.add_flag("--wait", wait)
        try:  # the secrets go to this one process's environment; os.environ is left as it is
            run(cmd, capture_stdout=True, capture_stderr=True, env=dict(env or {}))
        except DockerException as e:
            raise whales_error(e, "docker compose up") from None

    def compose_restart(self, project: str, file: Path | None, services: list[str], *, timeout: int = 10) -> None:
        try:
            self._compose(project, file).restart(services=services, timeout=timeout)
        except DockerException as e:
            raise whales_error(e, f"docker compose restart {' '.join(services)}") from None

    def compose_logs(self, project: str, file: Path | None, services: list[str], *, follow: bool = False,
                     tail: int | None = None) -> Iterator[str]:
        compose = self._compose(project, file)
        try:
            for _source, chunk in compose.logs(services=services, follow=follow, stream=True, tail=str(tail) if tail is not None else None):
                yield chunk.decode(errors="replace")
        except DockerException as e:
            raise whales_error(e, "docker compose logs") from None

    def compose_down(self, project: str, *, volumes: bool = False, timeout: int = 10) -> None:
        from docker.errors import APIError, NotFound

        client = self._engine()
        flt = {"label": f"{COMPOSE_PROJECT}={project}"}
        try:
            found = client.containers.list(all=True, filters=flt, ignore_removed=True)
            with ThreadPoolExecutor(max_workers=8) as pool:
                for wave in _stop_waves(found):
                    list(pool.map(lambda c: c.stop(timeout=timeout), [c for c in wave if c.status in ("running", "restarting", "paused")]))
            for c in found:
                with contextlib.suppress(NotFound):
                    c.remove(v=volumes, force=True)
            for n in client.networks.list(filters=flt):
                n.remove()
            if volumes:
                for v in client.volumes.list(filters=flt):
                    v.remove(force=True)
        except APIError as e:
            raise DockerError(f"removing stack {project!r} failed: {e.explanation or e}", stderr=str(e.explanation or e)) from None

    # -- the engine ------------------------------------------------------------------------------------
    def containers(self, project: str) -> list[ContainerState]:
        return state.container_states(self._engine(), project)

    def container_logs(self, container_id: str, *, tail: int = 20) -> str:
        return state.log_tail(self._engine(), container_id, tail)

    def health_log(self, container_id: str) -> str:
        return state.health_log(self._engine(), container_id)

    def last_exit_code(self, container_id: str, *, since: float) -> int | None:
        return state.last_exit_code(self._engine(), container_id, since)

    def labelled(self, project: str) -> dict[str, list[str]]:
        return state.labelled(self._engine(), project)

    def remove_labelled(self, project: str | None = None) -> dict[str, int]:
        client = self._engine()
        flt = {"label": f"{LABEL_PROJECT}={project}" if project else LABEL_PROJECT}
        counts = {"containers": 0, "networks": 0, "volumes": 0}
        for c in client.containers.list(all=True, filters=flt):
            c.remove(force=True, v=True)
            counts["containers"] += 1
        for n in client.networks.list(filters=flt):
            n.remove()
            counts["networks"] += 1
        for v in client.volumes.list(filters=flt):
            v.remove(force=True)
            counts["volumes"] += 1
        return counts

    def missing_images(self, images: list[str]) -> list[str]:
        from docker.errors import ImageNotFound

        client = self._engine()
        out = []
        for tag in dict.fromkeys(images):
            try:
                client.images.get(tag)
            except ImageNotFound:
                out.append(tag)
        return out

    def nvidia_runtime(self) -> bool:
        return nvidia_runtime(self._engine())

    def port_free(self, host: str, port: int) -> bool:
        # A local engine publishes on this machine: a bind here tells what `up` would meet. A remote one (a lab
        # node, another host) publishes there: nothing here can tell, so its own error at `up` says it.
        if self._remote():
            return True
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are not "taken"
            try:
                s.bind((host, port))
            except OSError:
                return False
        return True

    def http_ok(self, url: str, *, timeout: float = 2.0) -> bool:
        context = None
        if url.startswith("https://"):  # a --tls stack's proxy: its CA (GYMCTL_TLS_CA_FILE, set by `up`), else the system's
            import os
            import ssl

            context = ssl.create_default_context(cafile=os.environ.get("GYMCTL_TLS_CA_FILE") or None)
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
                return bool(r.status == 200)
        except OSError:
            return False
