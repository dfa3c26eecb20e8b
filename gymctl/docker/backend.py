"""The seam between a compose stack and Docker: the `ComposeBackend` protocol and the process-wide default backend."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

from gymctl.docker.state import ContainerState

Pull = Literal["always", "missing", "never"]


class ComposeBackend(Protocol):
    """What `ComposeStack` needs from Docker. Keyword arguments are Docker's flag names.

    The `compose_*` calls that run Docker Compose need the Compose v2 plugin (`compose_version` checks it);
    `compose_down` and every engine read work with the engine alone. Failures raise `DockerError`
    (`DockerUnavailableError` when no engine or no Compose answers).
    """

    # -- Docker Compose --------------------------------------------------------------------------------
    def compose_version(self) -> str:
        """The Compose v2 version; DockerUnavailableError saying how to get it when absent."""
        ...

    def compose_up(self, project: str, file: Path | None, *, env: Mapping[str, str] | None = None, detach: bool = True,
                   remove_orphans: bool = False, pull: Pull | None = None, wait: bool = False) -> None:
        """`docker compose up`; `env` is added to the compose process's environment only (secret values)."""
        ...

    def compose_restart(self, project: str, file: Path | None, services: list[str], *, timeout: int = 10) -> None:
        """`docker compose restart SERVICE...`."""
        ...

    def compose_logs(self, project: str, file: Path | None, services: list[str], *, follow: bool = False,
                     tail: int | None = None) -> Iterator[str]:
        """`docker compose logs` as text chunks (every service when `services` is empty)."""
        ...

    def compose_down(self, project: str, *, volumes: bool = False, timeout: int = 10) -> None:
        """What `docker compose down --remove-orphans` does, by the project's label (no compose file or plugin needed)."""
        ...

    # -- the engine ------------------------------------------------------------------------------------
    def containers(self, project: str) -> list[ContainerState]:
        """Every container of the compose project (running or not), head first."""
        ...

    def container_logs(self, container_id: str, *, tail: int = 20) -> str:
        """The last lines a container wrote (stdout and stderr); "" when it is gone."""
        ...

    def health_log(self, container_id: str) -> str:
        """The container's last healthcheck outputs (why it is unhealthy)."""
        ...

    def last_exit_code(self, container_id: str, *, since: float) -> int | None:
        """The exit code of the container's latest `die` event since `since` (epoch seconds)."""
        ...

    def labelled(self, project: str) -> dict[str, list[str]]:
        """Names of the containers, networks and volumes carrying the project's gymctl label."""
        ...

    def remove_labelled(self, project: str | None = None) -> dict[str, int]:
        """Force-remove what carries io.gymctl.project (=project, or any); counts per kind."""
        ...

    def missing_images(self, images: list[str]) -> list[str]:
        """The tags among `images` the engine does not have."""
        ...

    def nvidia_runtime(self) -> bool:
        """Whether the engine has the NVIDIA runtime (what `gpus:` reservations need)."""
        ...

    def port_free(self, host: str, port: int) -> bool:
        """Whether a published port can be bound on the Docker host."""
        ...

    def http_ok(self, url: str, *, timeout: float = 2.0) -> bool:
        """Whether GET `url` (a published port of a container) answers 200."""
        ...


_default: ComposeBackend | None = None


def default_backend() -> ComposeBackend:
    """The backend stacks use when given none: the real Docker one, unless `use_backend` swapped it."""
    global _default
    if _default is None:
        from gymctl.docker.docker_backend import DockerBackend

        _default = DockerBackend()
    return _default


@contextmanager
def use_backend(backend: ComposeBackend) -> Iterator[ComposeBackend]:
    """Make `backend` the default within the block (tests: the fake backend behind the CLI verbs)."""
    global _default
    saved = _default
    _default = backend
    try:
        yield backend
    finally:
        _default = saved
