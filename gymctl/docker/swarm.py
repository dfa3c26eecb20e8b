"""A swarm and gymctl's stacks on it: the manager check, its nodes, placement checks before deploy, secrets, deploy and rm."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymctl.compose.model import LABEL_PROJECT
from gymctl.compose.swarm import GPU_KIND, RenderedSwarm, SwarmService, secret_name
from gymctl.docker.cli import engine_client, run
from gymctl.errors import DockerError, GymctlError, UsageError, did_you_mean
from gymctl.polling import poll_until_sync

STACK_LABEL = "com.docker.stack.namespace"
STACK_FILE = "stack.yml"


class NotASwarmManagerError(DockerError):
    """The engine is not a manager of an active swarm."""


class SwarmPlacementError(GymctlError):
    """No node of the swarm can run a service as asked (a constraint or resource nothing offers)."""

    def __init__(self, message: str, *, service: str = "") -> None:
        super().__init__(message)
        self.service = service


class StackClashError(UsageError):
    """A stack of that name runs on the swarm and is not gymctl's."""


@dataclass
class SwarmNode:
    hostname: str
    address: str
    role: str  # manager | worker
    state: str  # ready | down | ...
    availability: str  # active | pause | drain
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, int] = field(default_factory=dict)  # generic resource kind -> count
    node_id: str = ""

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


@dataclass
class Swarm:
    """The swarm as its manager shows it: the manager this command talks to, and every node."""

    manager: SwarmNode
    nodes: list[SwarmNode]
    client: Any = field(repr=False, default=None)

    @property
    def is_lab(self) -> bool:
        """The local lab (`gymctl cluster create --swarm`): nested engines, which cannot exec into a container (no healthchecks)."""
        from gymctl.docker.lab_nodes import PREFIX

        return all(n.hostname.startswith(f"{PREFIX}-node") for n in self.nodes)


def manager_client(client: Any | None = None) -> Any:
    """A client for the current engine if it is a swarm manager; NotASwarmManagerError saying how to make one otherwise."""
    client = client or engine_client()
    info = client.info()
    sw = info.get("Swarm") or {}
    where = client.api.base_url
    if sw.get("LocalNodeState") != "active":
        raise NotASwarmManagerError(
            f"the engine at {where} is not part of a swarm (swarm: {sw.get('LocalNodeState') or 'inactive'}); "
            "`docker swarm init` on it (or `gymctl cluster create --swarm` for a local lab), or point --context at a swarm manager")
    if not sw.get("ControlAvailable"):
        raise NotASwarmManagerError(
            f"the engine at {where} is a swarm worker, not a manager: stacks are deployed through a manager; "
            "--context a manager (`docker node ls` on one lists them; the lab's: --context gymctl-lab)")
    return client


def _node(attrs: dict[str, Any]) -> SwarmNode:
    spec, status, desc = attrs.get("Spec") or {}, attrs.get("Status") or {}, attrs.get("Description") or {}
    address = str(status.get("Addr") or "")
    if address in ("", "0.0.0.0") and attrs.get("ManagerStatus"):  # a manager may show 0.0.0.0: its raft address has it
        address = str(attrs["ManagerStatus"].get("Addr", "")).rsplit(":", 1)[0]
    resources: dict[str, int] = {}
    for g in (desc.get("Resources") or {}).get("GenericResources") or []:
        if "NamedResourceSpec" in g:
            kind = g["NamedResourceSpec"]["Kind"]
            resources[kind] = resources.get(kind, 0) + 1
        elif "DiscreteResourceSpec" in g:
            kind = g["DiscreteResourceSpec"]["Kind"]
            resources[kind] = resources.get(kind, 0) + int(g["DiscreteResourceSpec"]["Value"])
    return SwarmNode(hostname=str(desc.get("Hostname", "")), address=address, role=str(spec.get("Role", "")),
                     state=str(status.get("State", "")), availability=str(spec.get("Availability", "")),
                     labels=dict(spec.get("Labels") or {}), resources=resources, node_id=str(attrs.get("ID", "")))


def inspect_swarm(client: Any | None = None) -> Swarm:
    """The swarm of the current engine (which must be a manager) and its nodes."""
    client = manager_client(client)
    own = client.info()["Swarm"]["NodeID"]
    nodes = [_node(n.attrs) for n in client.nodes.list()]
    manager = next(n for n in nodes if n.node_id == own)
    if not manager.address:
        manager.address = client.info()["Swarm"].get("NodeAddr", "")
    return Swarm(manager, sorted(nodes, key=lambda n: n.hostname), client)


CONSTRAINT = re.compile(r"^node\.(hostname|role|labels\.([A-Za-z0-9_.-]+))\s*(==|!=)\s*(\S+)$")


def _matches(node: SwarmNode, constraint: str) -> bool:
    m = CONSTRAINT.match(constraint)
    if not m:
        return True  # a constraint gymctl does not read: Swarm judges it
    what, label, op, value = m.groups()
    have = node.hostname if what == "hostname" else node.role if what == "role" else node.labels.get(label or "")
    return (have == value) if op == "==" else (have != value)


def _explain(svc: SwarmService, swarm: Swarm) -> str | None:
    """Why no node can hold `svc`'s tasks, or None when enough can."""
    usable = [n for n in swarm.nodes if n.usable]
    for c in svc.constraints:
        if not any(_matches(n, c) for n in usable):
            m = CONSTRAINT.match(c)
            if m and m.group(1) == "hostname":
                names = [n.hostname for n in usable]
                return (f"places {svc.instance} on node {m.group(4)!r}, which is not a ready, active node of the swarm"
                        f"{did_you_mean(m.group(4), names)} (nodes: {', '.join(names)})")
            if m and m.group(2):
                key, value = m.group(2), m.group(4)
                seen = sorted({f"{k}={v}" for n in usable for k, v in n.labels.items()})
                fix = (f"docker node update --label-add {key}={value} NODE" if key != "gymctl.gpu"
                       else "label the GPU nodes: docker node update --label-add gymctl.gpu=true NODE")
                return (f"{svc.instance} needs a node with label {key}={value} ({c!r}); no ready node has it "
                        f"(labels on the nodes: {', '.join(seen) or 'none'}); {fix}")
            return f"{svc.instance}: no ready, active node satisfies {c!r}"
    if svc.gpus:
        fit = [n for n in usable if all(_matches(n, c) for c in svc.constraints)]
        slots = sum(n.resources.get(GPU_KIND, 0) // svc.gpus for n in fit)
        if slots < svc.replicas:
            have = ", ".join(f"{n.hostname}: {n.resources.get(GPU_KIND, 0)}" for n in fit) or "no eligible node"
            return (f"{svc.instance} asks for {svc.replicas} task(s) with {svc.gpus} {GPU_KIND} each on nodes with "
                    f"{' and '.join(svc.constraints)}; those nodes offer room for {slots} ({GPU_KIND} per node: {have}); "
                    "lower gymctl.instances.NAME.gpus or .replicas, or add GPU nodes (dockerd --node-generic-resource NVIDIA-GPU=ID)")
    return None


def check_placement(rendered: RenderedSwarm, swarm: Swarm) -> None:
    """Refuse, before deploying, what Swarm would leave silently pending: constraints and GPU requests no node satisfies."""
    for svc in rendered.stack.services:
        why = _explain(svc, swarm)
        if why:
            raise SwarmPlacementError(why, service=svc.name)


def check_stack_name(client: Any, project: str) -> None:
    """A running stack of that name that gymctl did not deploy is refused (its services would be replaced)."""
    foreign = [s.name for s in client.services.list(filters={"label": f"{STACK_LABEL}={project}"})
               if (s.attrs["Spec"].get("Labels") or {}).get(LABEL_PROJECT) != project]
    if foreign:
        raise StackClashError(f"a stack named {project!r} already runs on this swarm and is not gymctl's (services: {', '.join(sorted(foreign))}); "
                              "pick another name with -p NAME, or remove it (docker stack rm " + project + ")")


def create_secrets(client: Any, project: str, values: dict[str, str]) -> dict[str, str]:
    """One swarm secret per variable (versioned by value; an existing one is reused); {variable: secret name}."""
    from docker.errors import APIError

    names = {}
    existing = {s.name for s in client.secrets.list(filters={"label": f"{LABEL_PROJECT}={project}"})}
    for var, value in values.items():
        name = secret_name(project, var, value)
        if name not in existing:
            try:
                client.secrets.create(name=name, data=value.encode(), labels={LABEL_PROJECT: project, "io.gymctl.variable": var})
            except APIError as e:
                if e.status_code != 409:  # made by a concurrent deploy: the same value, reuse it
                    raise DockerError(f"creating swarm secret {name} failed: {e.explanation}") from None
        names[var] = name
    return names


def write_stack(directory: Path, rendered: RenderedSwarm) -> Path:
    """DIR/stack.yml and DIR/configs/<service>.yaml (the swarm configs' sources; stale ones removed); the stack file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    files = rendered.config_files
    for folder in {(directory / f).parent for f in files}:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.yaml"):
            if str(old.relative_to(directory)) not in files:
                old.unlink()
    for rel, text in files.items():
        (directory / rel).write_text(text)
    path = directory / STACK_FILE
    path.write_text(rendered.stack_yaml)
    return path


def stack_deploy(project: str, path: Path) -> None:
    """`docker stack deploy` (images by the digests in the file, not resolved again here; services gone from the file pruned)."""
    run(["docker", "stack", "deploy", "--compose-file", str(path), "--resolve-image", "never", "--prune", project], timeout=300)


def stack_services(client: Any, project: str) -> list[Any]:
    return list(client.services.list(filters={"label": f"{STACK_LABEL}={project}"}))


def stack_rm(client: Any, project: str, *, timeout_s: float = 120.0) -> dict[str, int]:
    """Remove the stack (services, network, configs), then its secrets; waits until its containers and network are gone."""
    services = stack_services(client, project)
    secrets = client.secrets.list(filters={"label": f"{LABEL_PROJECT}={project}"})
    counts = {"services": len(services), "secrets": 0, "configs": 0, "networks": 0}
    counts["configs"] = len(client.configs.list(filters={"label": f"{STACK_LABEL}={project}"}))
    counts["networks"] = len(client.networks.list(filters={"label": f"{STACK_LABEL}={project}"}))
    if services or counts["configs"] or counts["networks"]:
        run(["docker", "stack", "rm", project], timeout=120)
    deadline = time.monotonic() + timeout_s
    poll_until_sync(lambda: not (stack_services(client, project) or client.networks.list(filters={"label": f"{STACK_LABEL}={project}"})),
                    timeout_s, 0.5, what=f"stack {project!r} gone",
                    on_timeout=lambda: DockerError(f"stack {project!r} still has services or its network {timeout_s:.0f} s after `docker stack rm`"))
    for secret in secrets:  # a secret is removable once no task holds it
        _remove_when_free(secret, max(deadline - time.monotonic(), 0.0), timeout_s)
        counts["secrets"] += 1
    return counts


def _remove_when_free(obj: Any, left_s: float, timeout_s: float) -> None:
    """Remove a swarm object, trying again while the swarm refuses (a task still holds it)."""
    from docker.errors import APIError, NotFound

    def removed() -> bool:
        try:
            obj.remove()
        except NotFound:
            pass
        except APIError:
            return False
        return True

    poll_until_sync(removed, left_s, 0.5, what=f"swarm secret {obj.name} removed",
                    on_timeout=lambda: DockerError(f"swarm secret {obj.name} is still in use {timeout_s:.0f} s after `docker stack rm`"))
