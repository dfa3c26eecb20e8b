"""What the engine says about a stack's containers: state, health, exit code, log tail (Docker SDK, by label)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gymctl.compose.model import LABEL_INSTANCE, LABEL_PROJECT

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass
class ContainerState:
    """One container of a stack, as `gymctl ps` shows it."""

    name: str
    service: str
    instance: str
    state: str  # created | running | restarting | exited | dead | paused
    health: str | None  # starting | healthy | unhealthy | None (no healthcheck)
    exit_code: int
    restarts: int
    ports: list[str] = field(default_factory=list)
    image: str = ""
    id: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("healthy", None)

    @property
    def failed(self) -> bool:
        return self.state in ("exited", "dead") or (self.state == "restarting") or self.restarts > 0 or self.health == "unhealthy"

    @property
    def status(self) -> str:
        if self.state == "running":
            return self.health or "running"
        if self.state in ("exited", "dead"):
            return f"{self.state} ({self.exit_code})"
        return self.state


def _ports(attrs: dict[str, Any]) -> list[str]:
    out = []
    for cport, binds in sorted(((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items()):
        for b in binds or []:
            out.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{cport}")
    return out


def container_states(client: Any, project: str) -> list[ContainerState]:
    """Every container of the compose project (running or not), ordered by service."""
    out = []
    for c in client.containers.list(all=True, filters={"label": f"{COMPOSE_PROJECT}={project}"}, ignore_removed=True):
        attrs = c.attrs
        st = attrs.get("State") or {}
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        out.append(ContainerState(
            name=c.name, service=labels.get(COMPOSE_SERVICE, ""), instance=labels.get(LABEL_INSTANCE, labels.get(COMPOSE_SERVICE, "")),
            state=st.get("Status", "unknown"), health=(st.get("Health") or {}).get("Status"), exit_code=int(st.get("ExitCode") or 0),
            restarts=int(attrs.get("RestartCount") or 0), ports=_ports(attrs), image=(attrs.get("Config") or {}).get("Image", ""), id=c.id,
        ))
    return sorted(out, key=lambda s: (s.service != "head", s.service))


def log_tail(client: Any, container_id: str, lines: int = 20) -> str:
    """The last lines a container wrote (stdout and stderr)."""
    from docker.errors import NotFound

    try:
        return str(client.containers.get(container_id).logs(tail=lines, stdout=True, stderr=True).decode(errors="replace"))
    except NotFound:
        return ""


def health_log(client: Any, container_id: str) -> str:
    """The last healthcheck outputs (why a container is unhealthy)."""
    c = client.containers.get(container_id)
    entries = ((c.attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    return "\n".join(f"healthcheck exit {e.get('ExitCode')}: {(e.get('Output') or '').strip()}" for e in entries[-3:])


def labelled(client: Any, project: str) -> dict[str, list[str]]:
    """Names of containers, networks and volumes carrying the project's gymctl label (what a leak check looks for)."""
    flt = {"label": f"{LABEL_PROJECT}={project}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=flt)],
        "networks": [n.name for n in client.networks.list(filters=flt)],
        "volumes": [v.name for v in client.volumes.list(filters=flt)],
    }


def last_exit_code(client: Any, container_id: str, since: float) -> int | None:
    """The exit code of the container's latest death since `since` (a restarted container shows 0 in its state)."""
    import time

    code = None
    events = client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "die", "container": container_id})
    for ev in events:
        code = int(((ev.get("Actor") or {}).get("Attributes") or {}).get("exitCode", code or 0))
    return code
