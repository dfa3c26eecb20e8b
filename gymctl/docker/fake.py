"""An in-memory `ComposeBackend` for tests: containers made from a compose file, told to fail, ports taken, images missing."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gymctl.compose.model import LABEL_INSTANCE
from gymctl.docker.backend import Pull
from gymctl.docker.cli import COMPOSE_HOWTO
from gymctl.docker.state import ContainerState
from gymctl.errors import DockerError, DockerUnavailableError


@dataclass
class FakeBehaviour:
    """How one service's container behaves once started."""

    exit_code: int | None = None  # exits with this code (None: keeps running)
    restarting: bool = True  # an exited container restarts (restart: unless-stopped), as the rendered stacks say
    unhealthy: bool = False
    health_output: str = "connection refused"
    logs: list[str] = field(default_factory=lambda: ["serving"])
    starting_reads: int = 1  # reads showing health "starting" before the final state


@dataclass
class _Container:
    state: ContainerState
    behaviour: FakeBehaviour
    reads_left: int
    died: list[int] = field(default_factory=list)

    def settle(self) -> ContainerState:
        """Advance one read: "starting" for a while, then what the behaviour says."""
        if self.reads_left > 0:
            self.reads_left -= 1
            return dataclasses.replace(self.state)
        b, s = self.behaviour, self.state
        if b.exit_code is not None:
            s.state, s.health, s.exit_code = ("restarting" if b.restarting else "exited"), None, b.exit_code
            if b.restarting and not self.died:
                s.restarts += 1
            if not self.died:
                self.died.append(b.exit_code)
        else:
            s.state, s.health = "running", ("unhealthy" if b.unhealthy else "healthy")
        return dataclasses.replace(s)


class FakeBackend:
    """Containers kept in memory per project; `calls` records each compose/engine action, `envs` each `compose_up`'s env."""

    def __init__(self, *, compose: bool = True, nvidia: bool = False) -> None:
        self.compose = compose
        self.nvidia = nvidia
        self.projects: dict[str, dict[str, _Container]] = {}
        self.networks: dict[str, list[str]] = {}
        self.strays: dict[str, list[str]] = {}  # containers with the gymctl label that compose does not own
        self.behaviours: dict[str, FakeBehaviour] = {}
        self.taken: set[int] = set()
        self.missing: set[str] = set()
        self.up_stderr: str | None = None
        self.head_ready = True
        self.calls: list[tuple[str, str]] = []
        self.envs: list[dict[str, str]] = []
        self._ids = itertools.count(1)

    # -- telling it what to do ---------------------------------------------------------------------------
    def behave(self, service: str, **how: object) -> FakeBehaviour:
        """Set how `service`'s container behaves (FakeBehaviour's fields) from its next start on."""
        b = self.behaviours.setdefault(service, FakeBehaviour())
        for k, v in how.items():
            setattr(b, k, v)
        return b

    def make_unhealthy(self, service: str, output: str = "connection refused", logs: list[str] | None = None) -> None:
        self.behave(service, unhealthy=True, health_output=output, **({"logs": logs} if logs is not None else {}))

    def make_exit(self, service: str, code: int, logs: list[str] | None = None, *, restarting: bool = True) -> None:
        self.behave(service, exit_code=code, restarting=restarting, **({"logs": logs} if logs is not None else {}))

    def take_port(self, port: int) -> None:
        self.taken.add(port)

    def remove_image(self, tag: str) -> None:
        self.missing.add(tag)

    def fail_up(self, stderr: str) -> None:
        """The next `compose_up` fails with compose's `stderr` (after creating the containers, as compose does)."""
        self.up_stderr = stderr

    def add_stray(self, project: str, name: str) -> None:
        self.strays.setdefault(project, []).append(name)

    # -- Docker Compose --------------------------------------------------------------------------------
    def compose_version(self) -> str:
        if not self.compose:
            raise DockerUnavailableError(f"Docker Compose v2 is not available (`docker compose version` failed); {COMPOSE_HOWTO}")
        return "2.99.0"

    def compose_up(self, project: str, file: Path | None, *, env: Mapping[str, str] | None = None, detach: bool = True,
                   remove_orphans: bool = False, pull: Pull | None = None, wait: bool = False) -> None:
        self.compose_version()
        self.calls.append(("compose_up", project))
        self.envs.append(dict(env or {}))
        if file is None:
            raise DockerError("docker compose up failed: no configuration file provided: not found", stderr="no configuration file provided: not found")
        doc = yaml.safe_load(file.read_text())
        have = self.projects.setdefault(project, {})
        self.networks[project] = [f"{project}_{n}" for n in doc.get("networks") or {"default": None}]
        for service, spec in (doc.get("services") or {}).items():
            if service in have:
                continue
            ports = []
            for p in spec.get("ports") or []:
                ip, host, cport = str(p).rsplit(":", 2)
                ports.append(f"{ip}:{host}->{cport}/tcp")
            state = ContainerState(
                name=f"{project}-{service}-1", service=service, instance=(spec.get("labels") or {}).get(LABEL_INSTANCE, service),
                state="running", health="starting", exit_code=0, restarts=0, ports=ports, image=spec.get("image", ""),
                id=f"fake{next(self._ids):012x}",
            )
            b = self.behaviours.get(service, FakeBehaviour())
            have[service] = _Container(state, b, b.starting_reads)
        if self.up_stderr is not None:
            stderr, self.up_stderr = self.up_stderr, None
            raise DockerError(f"docker compose up failed: {stderr}", argv=["docker", "compose", "up"], returncode=1, stderr=stderr)

    def compose_restart(self, project: str, file: Path | None, services: list[str], *, timeout: int = 10) -> None:
        self.compose_version()
        self.calls.append(("compose_restart", project))
        have = self.projects.get(project, {})
        for service in services:
            if service not in have:
                raise DockerError(f"docker compose restart failed: no such service: {service}", stderr=f"no such service: {service}")
            c = have[service]
            c.behaviour = self.behaviours.get(service, FakeBehaviour())
            c.state.state, c.state.health, c.reads_left, c.died = "running", "starting", c.behaviour.starting_reads, []

    def compose_logs(self, project: str, file: Path | None, services: list[str], *, follow: bool = False,
                     tail: int | None = None) -> Iterator[str]:
        self.compose_version()
        self.calls.append(("compose_logs", project))
        for service, c in sorted(self.projects.get(project, {}).items()):
            if services and service not in services:
                continue
            lines = c.behaviour.logs[-tail:] if tail else c.behaviour.logs
            for line in lines:
                yield f"{c.state.name}  | {line}\n"

    def compose_down(self, project: str, *, volumes: bool = False, timeout: int = 10) -> None:
        self.calls.append(("compose_down", project))
        self.projects.pop(project, None)
        self.networks.pop(project, None)

    # -- the engine ------------------------------------------------------------------------------------
    def containers(self, project: str) -> list[ContainerState]:
        out = [c.settle() for c in self.projects.get(project, {}).values()]
        return sorted(out, key=lambda s: (s.service != "head", s.service))

    def _by_id(self, container_id: str) -> _Container | None:
        return next((c for p in self.projects.values() for c in p.values() if c.state.id == container_id), None)

    def container_logs(self, container_id: str, *, tail: int = 20) -> str:
        c = self._by_id(container_id)
        return "".join(f"{line}\n" for line in c.behaviour.logs[-tail:]) if c else ""

    def health_log(self, container_id: str) -> str:
        c = self._by_id(container_id)
        return f"healthcheck exit 1: {c.behaviour.health_output}" if c else ""

    def last_exit_code(self, container_id: str, *, since: float) -> int | None:
        c = self._by_id(container_id)
        return c.died[-1] if c and c.died else None

    def labelled(self, project: str) -> dict[str, list[str]]:
        names = [c.state.name for c in self.projects.get(project, {}).values()]
        return {"containers": names + self.strays.get(project, []), "networks": list(self.networks.get(project, [])), "volumes": []}

    def remove_labelled(self, project: str | None = None) -> dict[str, int]:
        self.calls.append(("remove_labelled", project or ""))
        names = list(self.projects) if project is None else [project]
        counts = {"containers": 0, "networks": 0, "volumes": 0}
        for p in set(names) | (set(self.strays) if project is None else set()):
            counts["containers"] += len(self.projects.pop(p, {})) + len(self.strays.pop(p, []))
            counts["networks"] += len(self.networks.pop(p, []))
        return counts

    def missing_images(self, images: list[str]) -> list[str]:
        return [t for t in dict.fromkeys(images) if t in self.missing]

    def nvidia_runtime(self) -> bool:
        return self.nvidia

    def port_free(self, host: str, port: int) -> bool:
        return port not in self.taken

    def http_ok(self, url: str, *, timeout: float = 2.0) -> bool:
        """A published port answers when the container publishing it is ready (the head: unless told otherwise)."""
        port = urlsplit(url).port
        for project in self.projects.values():
            for c in project.values():
                if any(p.split("->")[0].endswith(f":{port}") for p in c.state.ports) and c.state.ready:
                    return self.head_ready
        return False
