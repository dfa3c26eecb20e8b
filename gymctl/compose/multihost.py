"""Multi-host compose: one stack per host from `gymctl.nodes` and `gymctl.instances.NAME.node` placements (pure)."""

from __future__ import annotations

import re

from gymctl.compose.model import (
    MULTI_HOST,
    RenderSettings,
    Service,
    Stack,
    _gpu_warnings,
    check_service_names,
    container_config,
    fixed_ports,
    head_service,
    nemo_gym_environment,
    project_name,
    served_instances,
    server_service,
    service_name,
)
from gymctl.compose.render import RenderedStack, render_stack
from gymctl.compose.secrets import referenced_env
from gymctl.config.model import GYMCTL_KEY, GymConfig
from gymctl.config.nemo_gym import nemo_gym_instances
from gymctl.config.nodes import NODES_KEY, NodeSpec, check_placements, head_node
from gymctl.errors import ConfigError, UsageError, did_you_mean

REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?$")


def placements(cfg: GymConfig) -> dict[str, str]:
    """The host of every served instance: its `gymctl.instances.NAME.node`; an instance without one runs on the head's host."""
    if not cfg.nodes:
        raise ConfigError("--topology multi-host needs the hosts: gymctl: {nodes: {HOST: {address: ADDRESS}}} "
                          "and gymctl.instances.NAME.node: HOST for each instance", key_path=NODES_KEY)
    origin = cfg.origins.get(GYMCTL_KEY, "config")
    check_placements(cfg.nodes, {n: d.node for n, d in cfg.deployment.items()}, origin)
    head = head_node(cfg.nodes, cfg.head_host).name
    return {name: cfg.deployment_of(name).node or head for name in served_instances(cfg)}


def check_node(cfg: GymConfig, node: str) -> None:
    """`--node HOST` names a host of the nodes map (a UsageError with the closest name otherwise)."""
    if node not in cfg.nodes:
        known = ", ".join(cfg.nodes) or "none: the config has no gymctl.nodes map"
        raise UsageError(f"--node {node!r} is not a host of gymctl.nodes{did_you_mean(node, list(cfg.nodes))} (hosts: {known})")


def _image_prefix(settings: RenderSettings, registry: str | None) -> str:
    if registry is None:
        return settings.image_prefix
    if not REGISTRY.match(registry):
        raise UsageError(f"--registry {registry!r}: give HOST:PORT of a registry every host can pull from (e.g. 10.0.0.1:5000)")
    return f"{registry}/{settings.image_prefix}"


def _check_advertised(stacks: dict[str, Stack], nodes: dict[str, NodeSpec]) -> None:
    """No two instances advertise the same address and port (two hosts given one address, say)."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for host, stack in stacks.items():
        for svc in stack.services:
            where = (nodes[host].address, svc.environment["GYMCTL_PORT"])
            if where in seen and seen[where][1] != svc.instance:
                other, inst = seen[where]
                raise ConfigError(f"hosts {other!r} and {host!r} both advertise {where[0]}:{where[1]} (for {inst} and {svc.instance}); "
                                  "give each host its own address", source="config", key_path=f"{NODES_KEY}.{host}.address")
            seen[where] = (host, svc.instance)


def build_host_stacks(cfg: GymConfig, settings: RenderSettings | None = None, *, registry: str | None = None,
                      host_network: bool = False) -> dict[str, Stack]:
    """One stack per host that runs something: the head on the head's host, each instance on its node.

    Every server listens on its fixed port (its configured one, else the next free one after the head's on its host),
    is published on its host's address (other hosts and the head reach it there) and advertises that address.
    `host_network` (a lab of hosts that share one engine, e.g. loopback addresses): containers use the host's network,
    bind the node's address, and nothing is published. No service waits for the head's container health: every
    server registers when the head answers (as those on other hosts must), and engines that cannot run healthchecks
    (the lab's nested ones) would otherwise never start them.
    """
    settings = settings or RenderSettings()
    where = placements(cfg)
    head = head_node(cfg.nodes, cfg.head_host)
    head_url = f"http://{head.address}:{cfg.head_port}"
    config_yaml, secret_values = container_config(cfg, "separated", head_host=head.address)
    pass_env = referenced_env(config_yaml)
    prefix = _image_prefix(settings, registry)
    warnings = _gpu_warnings(cfg, settings)
    if registry is None:
        warnings.append(f"images are named {prefix}/<impl>:{settings.image_tag} with no registry: every host needs them "
                        "(docker save | docker load on each), or render with --registry HOST:PORT and push them there")
    stacks: dict[str, Stack] = {}
    for node in cfg.nodes.values():
        names = [n for n, h in where.items() if h == node.name]
        if node.name != head.name and not names:
            warnings.append(f"host {node.name!r} runs nothing (no instance has node: {node.name}); no file for it")
            continue
        s = settings.model_copy(update={"publish_host": node.address, "image_prefix": prefix})
        bind = node.address if host_network else "0.0.0.0"
        services: list[Service] = []
        if node.name == head.name:
            services.append(head_service(cfg, s, pass_env, bind=bind, publish=not host_network))
        for name, port in fixed_ports(cfg, names).items():
            services.append(server_service(cfg, s, name, pass_env, head_url=head_url, advertise=node.address, port=port,
                                           published=None if host_network else port, bind=bind, depends_on_head=False))
        check_service_names(services)
        stacks[node.name] = Stack(
            project=project_name(f"{settings.project}-{node.name}"), topology=MULTI_HOST, services=services,
            labels={"io.gymctl.project": settings.project}, config_yaml=config_yaml, warnings=[], host_network=host_network,
            node=node.name, secret_env=secret_values, head_url=head_url,
        )
    _check_advertised(stacks, cfg.nodes)
    _nemo_gym_peers(cfg, stacks, where, host_network)
    if stacks:
        next(iter(stacks.values())).warnings.extend(warnings)
    return stacks


def _nemo_gym_peers(cfg: GymConfig, stacks: dict[str, Stack], where: dict[str, str], host_network: bool) -> None:
    """A NeMo Gym server learns its peers' routable addresses (GYMCTL_NEMO_GYM_PEERS): a peer on its host by service name, one on
    another host at that host's address and published port; the gymctl servers they call trust the other hosts' addresses too."""
    ports = {s.instance: int(s.environment["GYMCTL_PORT"]) for st in stacks.values() for s in st.services
             if s.instance in where}  # each host numbers its own
    nemo_hosts = {where[n] for n in nemo_gym_instances(cfg) if n in where}
    for host, stack in stacks.items():
        local = {s.instance for s in stack.services}
        peers = {n: f"{service_name(n) if n in local and not host_network else cfg.nodes[where[n]].address}:{port}" for n, port in ports.items()}
        others = [_host_cidr(cfg.nodes[h].address) for h in sorted(nemo_hosts - {host})]
        nemo_gym_environment(cfg, stack.services, peers, [c for c in others if c])


def _host_cidr(address: str) -> str | None:
    """A host's address as a one-address network (None for a DNS name: its callers need the token)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"{ip}/{ip.max_prefixlen}"


def render_hosts(cfg: GymConfig, settings: RenderSettings | None = None, *, registry: str | None = None,
                 host_network: bool = False) -> dict[str, RenderedStack]:
    """Config -> {host: its compose file} (pure: no Docker, nothing written); warnings ride on the first host's."""
    stacks = build_host_stacks(cfg, settings, registry=registry, host_network=host_network)
    return {h: RenderedStack(st, render_stack(st), list(st.warnings), dict(st.secret_env)) for h, st in stacks.items()}
