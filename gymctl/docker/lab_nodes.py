"""One lab node or the lab's registry as a container: its run arguments, its start, its wait, its swarm role."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gymctl.errors import StartupError
from gymctl.polling import poll_until_sync

LABEL_CLUSTER = "io.gymctl.cluster"
LABEL_ROLE = "io.gymctl.cluster.role"
PREFIX = "gymctl-lab"
NETWORK = f"{PREFIX}-net"
REGISTRY_NAME = f"{PREFIX}-registry"
REGISTRY_PORT = 5000
ENGINE_PORT = 2375
# Debian's default config asks for htpasswd auth; the lab's registry is a private, unauthenticated one.
REGISTRY_CONFIG = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n"
# A node's engine keeps its images and containers on a Docker volume of this machine's disk (overlay2 works on it;
# on a tmpfs, vfs copied every layer of every image and container into memory and filled up during rolling updates).
STORAGE_DRIVER = "overlay2"
# What Docker-in-Docker needs where --privileged is refused (checked on this machine kind; DESIGN.md).
CAPS = ("SYS_ADMIN", "NET_ADMIN", "NET_RAW", "MKNOD")
SECURITY_OPT = ("seccomp=unconfined", "apparmor=unconfined")


def node_name(i: int) -> str:
    return f"{PREFIX}-node{i}"


def storage_volume(node: str) -> str:
    """The Docker volume holding a node's /var/lib/docker (removed with the lab)."""
    return f"{node}-docker"


@dataclass
class NodeSpec:
    """Node i of the lab: its engine's flags and, with swarm, the fake GPUs it advertises."""

    index: int
    gpus: int = 0
    extra_dockerd_args: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return node_name(self.index)

    def dockerd_argv(self) -> list[str]:
        argv = ["dockerd", f"--storage-driver={STORAGE_DRIVER}", "--tls=false", "-H", f"tcp://0.0.0.0:{ENGINE_PORT}",
                "-H", "unix:///var/run/docker.sock", "--insecure-registry", f"{REGISTRY_NAME}:{REGISTRY_PORT}"]
        for j in range(self.gpus):
            argv += ["--node-generic-resource", f"NVIDIA-GPU=GPU-fake{j}"]
        return argv + self.extra_dockerd_args


def labels(cluster: str, role: str) -> dict[str, str]:
    return {LABEL_CLUSTER: cluster, LABEL_ROLE: role}


def run_node(client: Any, spec: NodeSpec, image: str, cluster: str, *, privileged: bool) -> Any:
    """`docker run -d` of one node on the lab network: the caps recipe, or --privileged on an ordinary host; its engine's
    storage on a fresh volume of its own."""
    isolation: dict[str, Any] = {"privileged": True} if privileged else {"cap_add": list(CAPS), "security_opt": list(SECURITY_OPT)}
    volume = client.volumes.create(storage_volume(spec.name), labels=labels(cluster, "storage"))
    return client.containers.run(
        image, spec.dockerd_argv(), name=spec.name, hostname=spec.name, network=NETWORK, detach=True,
        labels={**labels(cluster, "node"), f"{LABEL_CLUSTER}.index": str(spec.index)},
        volumes={volume.name: {"bind": "/var/lib/docker", "mode": "rw"}, "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        **isolation,
    )


def run_registry(client: Any, image: str, cluster: str, host_port: int) -> Any:
    """The registry container: the nodes reach it by its lab name, this machine on 127.0.0.1:host_port."""
    return client.containers.run(
        image, ["sh", "-c", f"printf '%s' '{REGISTRY_CONFIG}' > /etc/docker/registry/lab.yml && exec docker-registry serve /etc/docker/registry/lab.yml"],
        name=REGISTRY_NAME, hostname=REGISTRY_NAME, network=NETWORK, detach=True, labels=labels(cluster, "registry"),
        ports={f"{REGISTRY_PORT}/tcp": ("127.0.0.1", host_port)},
    )


def lab_address(container: Any) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"])


def log_tail(container: Any, lines: int = 20) -> str:
    try:
        return str(container.logs(tail=lines).decode(errors="replace"))
    except Exception:  # noqa: BLE001 -- a container already gone has no log to show
        return ""


def wait_engine(container: Any, timeout_s: float) -> Any:
    """Until the node's dockerd answers on its lab address (a Docker SDK client for it); StartupError with its log when it dies or stalls."""
    import docker
    from docker.errors import DockerException

    def ready() -> Any:
        container.reload()
        if container.status in ("exited", "dead"):
            raise StartupError(f"lab node {container.name} exited (code {container.attrs['State']['ExitCode']}) while its engine started",
                               instance=container.name, exit_code=container.attrs["State"]["ExitCode"], log_tail=log_tail(container))
        addr = lab_address(container)
        if not addr:
            return None
        try:
            client = docker.DockerClient(base_url=f"tcp://{addr}:{ENGINE_PORT}", timeout=30)
            client.ping()
            return client
        except DockerException:
            return None

    return poll_until_sync(ready, timeout_s, 0.5, what=f"lab node {container.name}'s engine",
                           on_timeout=lambda: StartupError(f"lab node {container.name}'s engine did not answer in {timeout_s:.0f} s",
                                                           instance=container.name, log_tail=log_tail(container)))


def wait_registry(container: Any, host_port: int, timeout_s: float) -> None:
    """Until GET /v2/ answers on the machine's loopback."""
    import urllib.request

    def ready() -> bool:
        container.reload()
        if container.status in ("exited", "dead"):
            raise StartupError("the lab's registry exited", instance=container.name, log_tail=log_tail(container))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/v2/", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    poll_until_sync(ready, timeout_s, 0.3, what="the lab's registry",
                    on_timeout=lambda: StartupError(f"the lab's registry did not answer on 127.0.0.1:{host_port} in {timeout_s:.0f} s",
                                                    instance=container.name, log_tail=log_tail(container)))


def form_swarm(engines: list[Any], addresses: list[str], gpu_nodes: int) -> None:
    """`swarm init` on node 1, `swarm join` on the others; the first `gpu_nodes` get the node label gymctl.gpu=true."""
    from docker.errors import APIError

    manager = engines[0]
    manager.swarm.init(advertise_addr=addresses[0], listen_addr="0.0.0.0:2377")
    manager.swarm.reload()
    token = manager.swarm.attrs["JoinTokens"]["Worker"]
    for eng, addr in zip(engines[1:], addresses[1:], strict=True):
        eng.swarm.join(remote_addrs=[f"{addresses[0]}:2377"], join_token=token, advertise_addr=addr, listen_addr="0.0.0.0:2377")
    ids = [e.info()["Swarm"]["NodeID"] for e in engines]
    deadline = time.monotonic() + 30
    for node_id in ids[:gpu_nodes]:
        while True:
            node = manager.nodes.get(node_id)
            spec = dict(node.attrs["Spec"])
            spec["Labels"] = {**(spec.get("Labels") or {}), "gymctl.gpu": "true"}
            try:
                node.update(spec)
                break
            except APIError:  # a joining node's version moves under us; retry briefly
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
