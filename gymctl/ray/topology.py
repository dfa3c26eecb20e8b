"""--topology ray: the head in this process, each instance (and replica) a named Ray actor placed by its resources, registering like any server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from gymctl.config.model import GymConfig
from gymctl.errors import ConfigError, StartupError
from gymctl.ray.cluster import RayCluster, check_placeable, connect
from gymctl.ray.instance import InstanceActor
from gymctl.server.settings import ServerSettings

ACTOR_PREFIX = "gymctl"
MODEL_TYPE = "responses_api_models"
READY_TIMEOUT_S = 60.0
# (config paths, override args, working directory): what each actor loads the same config from.
RayConfigArgs = tuple[list[str], list[str], str]


def actor_name(instance: str, replica: int) -> str:
    """`gymctl.<instance>`, `gymctl.<instance>.<n>` for replicas 2.. (what `ray list actors` shows)."""
    return f"{ACTOR_PREFIX}.{instance}" if replica == 1 else f"{ACTOR_PREFIX}.{instance}.{replica}"


def ray_resources_of(cfg: GymConfig, name: str) -> dict[str, float]:
    """What the instance asks Ray for: GPUs (`gpus`) and custom resources (`gymctl.instances.NAME.ray_resources`)."""
    dep = cfg.deployment_of(name)
    raw = dep.ray_resources or {}
    key_path = f"gymctl.instances.{name}.ray_resources"
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for k, v in raw.items()):
        raise ConfigError(f"{raw!r} is not a mapping of resource names to amounts, e.g. {{model_node: 1}}", source=cfg.origins.get("gymctl"), key_path=key_path)
    out = {str(k): float(v) for k, v in raw.items()}
    if dep.gpus:
        out["GPU"] = float(dep.gpus)
    return out


@dataclass
class PlacedActor:
    instance: str
    name: str  # the Ray actor name
    handle: Any
    url: str = ""
    node_ip: str = ""
    pid: int | None = None


@dataclass
class RayDeployment:
    """The head (in this process), the instance actors, and the cluster they run on."""

    head: Any  # gymctl.runtime.inprocess.RunningDeployment (the head only)
    cluster: RayCluster
    actors: list[PlacedActor] = field(default_factory=list)

    @property
    def head_url(self) -> str:
        return str(self.head.head_url)

    def local_agents(self) -> dict[str, object]:
        return {}  # every instance runs in another process

    def dead(self) -> list[str]:
        return []  # Ray restarts dead actors (max_restarts); the head's registrations say who is back

    async def stop(self) -> None:
        """Each actor drains and deregisters, then is killed; the head stops; a cluster gymctl started is stopped and its files removed."""
        from gymctl.runtime.inprocess import stop

        try:
            await asyncio.gather(*(_stop_actor(a) for a in self.actors), return_exceptions=True)
            await stop(self.head)
        finally:
            self.cluster.stop()


async def _stop_actor(actor: PlacedActor) -> None:
    with contextlib.suppress(Exception):  # dead or stuck: killed below either way
        await asyncio.wait_for(actor.handle.stop.remote(), 20)
    ray.kill(actor.handle, no_restart=True)


async def start_ray(cfg: GymConfig, config_args: RayConfigArgs, settings: ServerSettings, *, max_restarts: int = -1) -> RayDeployment:
    """Connect to (or start) the cluster, start the head here, place one actor per instance replica, wait for the head's readiness."""
    from gymctl.runtime.inprocess import start, stop

    raw_address = cfg.tree.get("ray_head_node_address")
    address = str(raw_address) if raw_address else None
    cluster = connect(address)  # start-up: a second or so of blocking, and ray.init wants the main thread
    head = None
    placed: list[PlacedActor] = []
    try:
        node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        cfg.head_host = node_ip  # actors on other nodes register here
        head = await start(cfg, names=[], with_head=True, settings=settings.model_copy(update={"bind_host": node_ip}))
        placed = _place(cfg, config_args, head.head_url, settings, max_restarts)
        deployment = RayDeployment(head, cluster, placed)
        await _wait_ready(deployment)
    except BaseException:
        await asyncio.gather(*(_stop_actor(a) for a in placed), return_exceptions=True)
        if head is not None:
            await stop(head)
        cluster.stop()
        raise
    return deployment


def _place(cfg: GymConfig, config_args: RayConfigArgs, head_url: str, settings: ServerSettings, max_restarts: int) -> list[PlacedActor]:
    """One actor per replica of each served instance: model servers by their resources, the rest near the head (CPU nodes)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    plans = []
    for name, spec in cfg.instances.items():
        if spec.alias_of:
            continue
        resources = ray_resources_of(cfg, name)
        check_placeable(f"gymctl.instances.{name}", resources)  # before any actor exists: nothing to undo
        plans.append((name, resources))
    cpu_node = _cpu_node({k for _, r in plans for k in r})
    out = []
    for name, resources in plans:
        aliases = [n for n, s in cfg.instances.items() if s.alias_of == name]
        for replica in range(1, cfg.deployment_of(name).replicas + 1):
            options: dict[str, Any] = {"name": actor_name(name, replica), "max_restarts": max_restarts, "num_cpus": 0}
            custom = dict(resources)
            gpus = custom.pop("GPU", 0.0)
            if gpus:
                options["num_gpus"] = gpus
            if custom:
                options["resources"] = custom
            if not (gpus or custom):
                # Resources servers and agents on a CPU node, so the accelerators stay for the model servers. Hard: a soft
                # affinity spills over to any node while the target's workers are starting (seen here with replicas).
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=cpu_node, soft=False)
            handle = InstanceActor.options(**options).remote(config_args, name, aliases, head_url, settings.auth_token, settings.log_level)
            out.append(PlacedActor(name, options["name"], handle))
    return out


def _cpu_node(asked: set[str]) -> str:
    """The node for instances that ask for nothing: this process's node unless it offers what model servers ask for
    (GPUs, custom resources), else the first live node that offers none of it, else this one."""
    here = str(ray.get_runtime_context().get_node_id())
    nodes: list[dict[str, Any]] = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    plain = [str(n["NodeID"]) for n in nodes if not (set(n.get("Resources") or {}) & (asked | {"GPU"}))]
    return here if here in plain or not plain else plain[0]


async def _wait_ready(dep: RayDeployment, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Every actor serving (its URL and node known), then the head's readiness (every instance registered)."""
    started = time.monotonic()
    for actor in dep.actors:
        left = max(timeout_s - (time.monotonic() - started), 1.0)
        try:
            info = await asyncio.wait_for(actor.handle.info.remote(), left)
        except TimeoutError:
            raise StartupError(f"Ray actor {actor.name} not serving after {timeout_s:.0f} s (pending placement? ray status)", instance=actor.instance) from None
        except ray.exceptions.RayActorError as e:
            cause = str(e).strip().splitlines()
            raise StartupError(f"Ray actor {actor.name} failed to start: {cause[-1] if cause else e}", instance=actor.instance) from None
        actor.url, actor.node_ip, actor.pid = info["url"], info["node_ip"], info["pid"]
    registry = dep.head.registry
    assert registry is not None
    from gymctl.polling import poll_until

    await poll_until(lambda: not registry.missing(), max(timeout_s - (time.monotonic() - started), 1.0), 0.05,
                     what=f"every instance registered with the head at {dep.head_url}", detail=lambda: f"missing: {', '.join(registry.missing())}")
