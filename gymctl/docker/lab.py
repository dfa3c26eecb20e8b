"""The local multi-node lab: N Docker-in-Docker nodes and a registry on a private network, their contexts; create, inspect, delete."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gymctl.docker import lab_nodes as ln
from gymctl.docker.cli import engine_client
from gymctl.docker.contexts import context_names, create_context, remove_contexts
from gymctl.docker.lab_image import NODE_SPEC, REGISTRY_SPEC, ensure_lab_image
from gymctl.errors import GymctlError, UsageError

CLUSTER = ln.PREFIX
LAB_REGISTRY = f"{ln.REGISTRY_NAME}:{ln.REGISTRY_PORT}"  # the registry as the nodes name it (`--registry` of a deploy on the lab)
Progress = Callable[[str, str], None]  # (what, state)


@dataclass
class LabNode:
    name: str
    address: str
    context: str
    status: str
    gpus: int = 0


@dataclass
class Lab:
    """What `cluster create` made, or `cluster ls` found."""

    nodes: list[LabNode] = field(default_factory=list)
    registry: str | None = None  # the machine's URL, 127.0.0.1:PORT
    registry_lab_name: str = LAB_REGISTRY
    network: str | None = None
    swarm: bool = False
    contexts: list[str] = field(default_factory=list)
    seconds: float = 0.0


class LabExistsError(GymctlError):
    """A lab is already up (one per machine)."""


def lab_context_names(names: list[str]) -> list[str]:
    return [n for n in names if n == CLUSTER or n.startswith(f"{CLUSTER}-node")]


def _validate(nodes: int, gpu_nodes: int, gpus_per_node: int, swarm: bool) -> None:
    if nodes < 1:
        raise UsageError(f"--nodes {nodes}: a lab needs at least one node")
    if (gpu_nodes or gpus_per_node) and not swarm:
        raise UsageError("--gpu-nodes/--gpus-per-node describe swarm generic resources: add --swarm")
    if gpu_nodes > nodes:
        raise UsageError(f"--gpu-nodes {gpu_nodes} is more than --nodes {nodes}")
    if gpu_nodes and gpus_per_node < 1:
        raise UsageError("--gpu-nodes needs --gpus-per-node of at least 1")


def create_lab(nodes: int = 2, *, gpu_nodes: int = 0, gpus_per_node: int = 0, swarm: bool = False, privileged: bool = False,
               registry_port: int = ln.REGISTRY_PORT, dockerd_args: list[str] | None = None, timeout_s: float = 90.0,
               progress: Progress = lambda _w, _s: None) -> Lab:
    """Start the lab; on any failure everything created so far is removed before the error propagates."""
    _validate(nodes, gpu_nodes, gpus_per_node, swarm)
    t0 = time.monotonic()
    client = engine_client()
    flt = {"label": ln.LABEL_CLUSTER}
    there = ([c.name for c in client.containers.list(all=True, filters=flt)] + [n.name for n in client.networks.list(filters=flt)]
             + [v.name for v in client.volumes.list(filters=flt)])  # a node volume left over would bring back its old engine
    if there:
        raise LabExistsError(f"a lab is already up ({', '.join(there)}); `gymctl cluster ls` shows it, `gymctl cluster delete` removes it")
    for spec in (NODE_SPEC, REGISTRY_SPEC):
        progress(spec.tag, "preparing image")
        r = ensure_lab_image(spec)
        progress(spec.tag, f"built in {r.seconds:.0f} s" if r.built else "image cached")
    try:
        return _start(client, nodes, gpu_nodes, gpus_per_node, swarm, privileged, registry_port, dockerd_args or [], timeout_s, progress, t0)
    except BaseException:
        progress("lab", "failed: removing what was created")
        delete_lab()
        raise


def _start(client: Any, nodes: int, gpu_nodes: int, gpus_per_node: int, swarm: bool, privileged: bool, registry_port: int,
           dockerd_args: list[str], timeout_s: float, progress: Progress, t0: float) -> Lab:
    client.networks.create(ln.NETWORK, driver="bridge", labels=ln.labels(CLUSTER, "network"))
    progress(ln.NETWORK, "network created")
    progress(ln.REGISTRY_NAME, "starting")
    registry = ln.run_registry(client, REGISTRY_SPEC.tag, CLUSTER, registry_port)
    specs = [ln.NodeSpec(i, gpus_per_node if i <= gpu_nodes else 0, dockerd_args) for i in range(1, nodes + 1)]
    containers = []
    for spec in specs:
        progress(spec.name, "starting")
        containers.append(ln.run_node(client, spec, NODE_SPEC.tag, CLUSTER, privileged=privileged))
    ln.wait_registry(registry, registry_port, timeout_s)
    progress(ln.REGISTRY_NAME, f"ready at 127.0.0.1:{registry_port}")
    engines, addresses = [], []
    for spec, c in zip(specs, containers, strict=True):
        engines.append(ln.wait_engine(c, timeout_s))
        addresses.append(ln.lab_address(c))
        progress(spec.name, f"engine ready at tcp://{addresses[-1]}:{ln.ENGINE_PORT}")
    if swarm:
        progress("swarm", "forming")
        ln.form_swarm(engines, addresses, gpu_nodes)
        progress("swarm", f"{nodes} node(s), manager {specs[0].name}")
    create_context(CLUSTER, f"tcp://{addresses[0]}:{ln.ENGINE_PORT}", f"gymctl lab: {specs[0].name}" + (" (swarm manager)" if swarm else ""))
    for spec, addr in zip(specs, addresses, strict=True):
        create_context(spec.name, f"tcp://{addr}:{ln.ENGINE_PORT}", f"gymctl lab node {spec.index}")
    progress("contexts", f"{CLUSTER}, {', '.join(s.name for s in specs)}")
    lab = inspect_lab()
    lab.seconds = time.monotonic() - t0
    return lab


def _published_address(registry: Any) -> str:
    """The registry container's port on this machine, HOST_IP:PORT (what `docker push` here uses)."""
    ports = (registry.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    binding = (ports.get(f"{ln.REGISTRY_PORT}/tcp") or [{}])[0]
    return f"{binding.get('HostIp') or '127.0.0.1'}:{binding.get('HostPort', ln.REGISTRY_PORT)}"


def lab_registry_address(client: Any) -> str | None:
    """This machine's address of the lab's registry (127.0.0.1:PORT), asked of `client`, the engine the lab runs on
    (contexts.origin_client(), also after --context pointed the rest of a command at a node); None when no lab is up."""
    for c in client.containers.list(filters={"label": f"{ln.LABEL_ROLE}=registry"}):
        return _published_address(c)
    return None


def inspect_lab(client: Any | None = None) -> Lab:
    """The lab as the engine (`client`; default: the current one) and the contexts show it (an empty Lab when there is none)."""
    client = client or engine_client()
    lab = Lab()
    found = client.containers.list(all=True, filters={"label": ln.LABEL_CLUSTER})
    nets = client.networks.list(filters={"label": ln.LABEL_CLUSTER})
    lab.network = nets[0].name if nets else None
    for c in sorted(found, key=lambda c: int(c.labels.get(f"{ln.LABEL_CLUSTER}.index", "0"))):
        if c.labels.get(ln.LABEL_ROLE) == "registry":
            lab.registry = _published_address(c)
            continue
        nets_of = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        addr = (nets_of.get(ln.NETWORK) or {}).get("IPAddress", "")
        cmd = c.attrs.get("Config", {}).get("Cmd") or []
        gpus = sum(1 for a in cmd if str(a).startswith("NVIDIA-GPU="))
        lab.nodes.append(LabNode(c.name, addr, c.name, c.status, gpus))
    lab.contexts = lab_context_names(context_names())
    if lab.nodes and lab.nodes[0].status == "running":
        try:
            from gymctl.docker.contexts import sdk_client

            lab.swarm = sdk_client(CLUSTER).info()["Swarm"].get("LocalNodeState") == "active"
        except GymctlError:
            pass
    return lab


def delete_lab() -> dict[str, int]:
    """Remove every trace: containers (with their volumes), networks and volumes labelled io.gymctl.cluster, the lab's
    contexts, and this machine's image tags for the lab's registry."""
    client = engine_client()
    flt = {"label": ln.LABEL_CLUSTER}
    counts = {"containers": 0, "networks": 0, "volumes": 0, "contexts": 0, "image tags": 0}
    registry = lab_registry_address(client)
    if registry:  # `gymctl push` tagged this machine's images for the registry that goes now: the tags go too (not the images)
        counts["image tags"] = _untag(client, registry)
    for c in client.containers.list(all=True, filters=flt):
        c.remove(force=True, v=True)
        counts["containers"] += 1
    for n in client.networks.list(filters=flt):
        n.remove()
        counts["networks"] += 1
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)
        counts["volumes"] += 1
    counts["contexts"] = len(remove_contexts(lab_context_names(context_names())))
    return counts


def _untag(client: Any, registry: str) -> int:
    """Remove every tag REGISTRY/...; an image keeps its other tags (gymctl/<impl>:latest), so none is deleted with them."""
    from docker.errors import APIError

    removed = 0
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(registry + "/"):
                try:
                    client.images.remove(tag, noprune=True)
                    removed += 1
                except APIError:  # in use by a container: the tag stays
                    pass
    return removed
