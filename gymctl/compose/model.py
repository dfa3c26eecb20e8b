"""The compose model of a stack: services, ports, healthchecks, labels — built from a config and a topology (pure)."""

from __future__ import annotations

import re
from typing import Literal

from omegaconf import OmegaConf
from pydantic import BaseModel, Field

from gymctl.compose.images import all_in_one_image, head_image, image_for
from gymctl.compose.log_shipping import LoggingSpec, logging_spec
from gymctl.compose.monitoring import PROMETHEUS_SERVICE, MonitoringSpec, monitoring_public, monitoring_spec
from gymctl.compose.secrets import externalize_secrets, referenced_env
from gymctl.config.model import GymConfig, to_yaml
from gymctl.config.nemo_gym import called_by_nemo_gym, nemo_gym_instances, nemo_gym_settings
from gymctl.errors import ConfigError, UsageError

Topology = Literal["all-in-one", "separated", "multi-host"]
TOPOLOGIES: tuple[str, ...] = ("all-in-one", "separated", "multi-host", "swarm")  # swarm: a stack file, gymctl.compose.swarm
PEERS_ENV = "GYMCTL_NEMO_GYM_PEERS"  # gymctl.runtime.nemo_gym.PEERS_ENV
TRUSTED_NETWORKS_ENV = "GYMCTL_AUTH_TRUSTED_NETWORKS"  # gymctl.server.trusted_networks
PRIVATE_NETWORK = "private"
MULTI_HOST: Literal["multi-host"] = "multi-host"  # one file per host: gymctl.compose.multihost
LABEL_PROJECT = "io.gymctl.project"
LABEL_INSTANCE = "io.gymctl.instance"
CONTAINER_PORT = 8000  # every server container listens here; the head on its config port
CONFIG_MOUNT = "/etc/gymctl/config.yaml"
HEAD_SERVICE = "head"
ALL_IN_ONE_SERVICE = "gymctl"
PUBLISHED_TYPES = ("responses_api_agents",)  # published by default; others only with `publish: true`


class RenderSettings(BaseModel):
    """How to render: the stack's name, where images come from, where ports are published."""

    project: str = "gymctl"
    image_prefix: str = "gymctl"
    image_tag: str = "latest"
    publish_host: str = "127.0.0.1"
    nvidia_runtime: bool | None = None  # None: unknown (no warning); False: warn about gpus
    monitoring: bool = False  # add the Prometheus service (gymctl.compose.monitoring)
    monitoring_port: int = 9090  # where Prometheus is published on publish_host
    tls: bool = False  # --tls: an nginx proxy answers HTTPS on every published port (gymctl.compose.tls)


class Port(BaseModel):
    host_ip: str
    host_port: int
    container_port: int


class HealthCheck(BaseModel):
    path: str
    port: int
    host: str = "127.0.0.1"  # where the probe inside the container connects (the bind address)
    interval_s: int = 1
    timeout_s: int = 2
    retries: int = 5
    start_period_s: int = 60


class Service(BaseModel):
    name: str
    instance: str
    image: str
    command: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(default_factory=list)  # names only: values come from whoever runs `up`
    ports: list[Port] = Field(default_factory=list)
    healthcheck: HealthCheck
    depends_on_head: bool = False
    gpus: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    read_only: bool = True  # a read-only root (writes go to the /tmp tmpfs); off only for a server that must write elsewhere


class Stack(BaseModel):
    """Everything a template needs; `secret_env` holds values and is never rendered."""

    project: str
    topology: Topology
    network: str = "gymctl"
    services: list[Service]
    labels: dict[str, str]
    config_mount: str = CONFIG_MOUNT
    config_yaml: str  # the merged config, handed to every container as GYMCTL_CONFIG_YAML (a YAML anchor in the file)
    warnings: list[str] = Field(default_factory=list)
    host_network: bool = False  # multi-host lab: containers share the host's network (no NAT, no published ports)
    node: str | None = None  # multi-host: the host this file is for
    secret_env: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    monitoring: MonitoringSpec | None = None  # --monitoring: the Prometheus service
    logging: LoggingSpec | None = None  # gymctl.logging: every container's Docker logging driver
    head_url: str | None = None  # the head as clients outside the stack reach it (https:// under --tls)


def service_name(instance: str) -> str:
    """A compose service (and DNS) name for an instance."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", instance.lower()).strip("-_.")
    if not name:
        raise ConfigError(f"instance name {instance!r} gives no usable compose service name", key_path=instance)
    return name


def project_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    if not name or not name[0].isalnum():
        raise UsageError(f"project name {text!r}: use lowercase letters, digits, '-' and '_' (starting with a letter or digit)")
    return name


def served_instances(cfg: GymConfig) -> list[str]:
    """Instances with a process of their own (an alias rides on its agent's)."""
    return [n for n, s in cfg.instances.items() if not s.alias_of]


def is_published(cfg: GymConfig, name: str) -> bool:
    dep = cfg.deployment_of(name)
    if dep.publish is not None:
        return bool(dep.publish)
    return cfg.instances[name].server_type in PUBLISHED_TYPES


def fixed_ports(cfg: GymConfig, names: list[str] | None = None) -> dict[str, int]:
    """A fixed port per served instance (of `names`, default all): its configured port, else the next free number after the head's."""
    taken = {cfg.head_port, *(s.port for s in cfg.instances.values() if s.port)}
    ports: dict[str, int] = {}
    nxt = cfg.head_port
    for name in served_instances(cfg) if names is None else names:
        port = cfg.instances[name].port
        if not port:
            nxt += 1
            while nxt in taken:
                nxt += 1
            if nxt > 65535:
                raise ConfigError("no port numbers left above head_server.port; set instance ports explicitly", key_path=name)
            port = nxt
            taken.add(port)
        ports[name] = port
    return ports


def _gpu_warnings(cfg: GymConfig, settings: RenderSettings) -> list[str]:
    wanting = [f"{n} (gpus: {d.gpus})" for n, d in cfg.deployment.items() if d.gpus]
    if wanting and settings.nvidia_runtime is False:
        return [(f"{', '.join(wanting)} reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime; "
                 "`gymctl up` will refuse to start (install nvidia-container-toolkit, or set gpus: 0)")]
    return []


def _labels(settings: RenderSettings, instance: str) -> dict[str, str]:
    return {LABEL_PROJECT: settings.project, LABEL_INSTANCE: instance}


BASE_ENV = {"GYMCTL_CONFIG_FILE": CONFIG_MOUNT}  # the image's default too; said here so the file reads alone


def head_service(cfg: GymConfig, settings: RenderSettings, pass_env: list[str], bind: str = "0.0.0.0", publish: bool = True) -> Service:
    """The head (registry) container: listens on the config's head port, published on `settings.publish_host`."""
    return Service(
        name=HEAD_SERVICE, instance=HEAD_SERVICE, image=head_image(settings.image_prefix, settings.image_tag),
        environment={**BASE_ENV, "GYMCTL_INSTANCE": "head", "GYMCTL_BIND_HOST": bind, "GYMCTL_PORT": str(cfg.head_port)},
        pass_env=[v for v in pass_env if v == "GYMCTL_AUTH_TOKEN"],
        ports=[Port(host_ip=settings.publish_host, host_port=cfg.head_port, container_port=cfg.head_port)] if publish else [],
        healthcheck=HealthCheck(path="/livez", port=cfg.head_port, host=_probe(bind)), labels=_labels(settings, HEAD_SERVICE),
    )


def _probe(bind: str) -> str:
    return "127.0.0.1" if bind == "0.0.0.0" else bind


def server_service(cfg: GymConfig, settings: RenderSettings, name: str, pass_env: list[str], *, head_url: str, advertise: str,
                   port: int, published: int | None, bind: str = "0.0.0.0", depends_on_head: bool = True) -> Service:
    """One instance's container: listens on `port`, advertises `advertise`, published (when given) on publish_host:published."""
    env = {**BASE_ENV, "GYMCTL_INSTANCE": name, "GYMCTL_HEAD_URL": head_url, "GYMCTL_ADVERTISE_HOST": advertise,
           "GYMCTL_BIND_HOST": bind, "GYMCTL_PORT": str(port)}
    ports = []
    if published is not None:
        ports = [Port(host_ip=settings.publish_host, host_port=published, container_port=port)]
        env["GYMCTL_HOST_URL"] = f"http://{settings.publish_host}:{published}"
    return Service(
        name=service_name(name), instance=name, image=image_for(cfg, name, settings.image_prefix, settings.image_tag),
        environment=env, pass_env=pass_env, ports=ports, depends_on_head=depends_on_head,
        healthcheck=HealthCheck(path="/health", port=port, host=_probe(bind)), gpus=cfg.deployment_of(name).gpus,
        labels=_labels(settings, name),
    )


def _separated(cfg: GymConfig, settings: RenderSettings, pass_env: list[str]) -> list[Service]:
    head_url = f"http://{HEAD_SERVICE}:{cfg.head_port}"
    services = [head_service(cfg, settings, pass_env)]
    ports = fixed_ports(cfg)
    for name in served_instances(cfg):
        services.append(server_service(cfg, settings, name, pass_env, head_url=head_url, advertise=service_name(name), port=CONTAINER_PORT,
                                       published=ports[name] if is_published(cfg, name) else None))
    nemo_gym_environment(cfg, services, {n: f"{service_name(n)}:{CONTAINER_PORT}" for n in served_instances(cfg)})
    return services


def nemo_gym_environment(cfg: GymConfig, services: list[Service], where: dict[str, str], trusted: list[str] | None = None) -> None:
    """NeMo Gym servers learn where each peer listens (`where`: {instance: host:port}) at start, from GYMCTL_NEMO_GYM_PEERS;
    gymctl's servers they call accept calls from the stack's private network without the token (they cannot send one),
    and from the `trusted` networks (CIDRs: the other hosts' addresses of a multi-host deployment)."""
    nemo = nemo_gym_instances(cfg)
    if not nemo:
        return
    called = called_by_nemo_gym(cfg)
    peers = ",".join(f"{n}={a}" for n, a in where.items())
    start_s = int(nemo_gym_settings(cfg).start_timeout_s)
    for s in services:
        if s.instance in nemo:
            s.environment[PEERS_ENV] = peers
            # NeMo Gym's import (~2,900 modules) may outlast 60 s on loaded cores: its start timeout (gymctl.nemo_gym.start_timeout_s)
            s.healthcheck.start_period_s = max(s.healthcheck.start_period_s, start_s)
        elif s.instance in called:
            s.environment[TRUSTED_NETWORKS_ENV] = ",".join([PRIVATE_NETWORK, *(trusted or [])])


def _all_in_one(cfg: GymConfig, settings: RenderSettings, pass_env: list[str]) -> list[Service]:
    ports = fixed_ports(cfg)
    published = [Port(host_ip=settings.publish_host, host_port=cfg.head_port, container_port=cfg.head_port)]
    published += [Port(host_ip=settings.publish_host, host_port=p, container_port=p) for n, p in ports.items() if is_published(cfg, n)]
    return [Service(
        name=ALL_IN_ONE_SERVICE, instance="all-in-one", image=all_in_one_image(settings.image_prefix, settings.image_tag),
        command=["gymctl", "run"],  # the config: GYMCTL_CONFIG_YAML (gymctl.config.delivered)
        # One process: peers are in-process; 127.0.0.1:<port> is the same inside and, published, outside.
        environment={"GYMCTL_BIND_HOST": "0.0.0.0", "GYMCTL_ADVERTISE_HOST": "127.0.0.1", "GYMCTL_PORT": "0"},  # 0: config ports
        pass_env=pass_env, ports=published,
        healthcheck=HealthCheck(path="/health", port=cfg.head_port),  # readiness: every instance registered
        gpus=sum(d.gpus for d in cfg.deployment.values()), labels=_labels(settings, "all-in-one"),
    )]


def container_config(cfg: GymConfig, topology: str, head_host: str = "127.0.0.1") -> tuple[str, dict[str, str]]:
    """The merged config the containers read: secrets as references; all-in-one with fixed ports."""
    tree, secret_values = externalize_secrets(cfg.tree)
    if topology == "all-in-one":
        for name, port in fixed_ports(cfg).items():
            spec = cfg.instances[name]
            OmegaConf.update(tree, f"{name}.{spec.server_type}.{spec.impl}.port", port, force_add=True)
            OmegaConf.update(tree, f"{name}.{spec.server_type}.{spec.impl}.host", "127.0.0.1", force_add=True)
    else:
        # A container advertises what its environment says (its service name, its node's address): a config `host`
        # written for processes on hosts (a coordinator's own address) would be the wrong one in there.
        for name, spec in cfg.instances.items():
            block = tree.get(name, {}).get(spec.server_type, {}).get(spec.impl) if spec.host is not None else None
            if block is not None and "host" in block:
                del block["host"]
    OmegaConf.update(tree, "head_server", {"host": head_host, "port": cfg.head_port}, force_add=True)
    return to_yaml(tree), secret_values


def check_service_names(services: list[Service]) -> None:
    names = [s.name for s in services]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"instances map to the same compose service name {', '.join(sorted(dup))}; rename one")


def build_stack(cfg: GymConfig, topology: str, settings: RenderSettings | None = None) -> Stack:
    """The compose model of one topology of a config."""
    settings = settings or RenderSettings()
    if topology not in TOPOLOGIES:
        raise UsageError(f"--topology {topology!r} is not known; choose one of: {', '.join(TOPOLOGIES)}")
    if topology == MULTI_HOST:
        raise UsageError("--topology multi-host writes one compose file per host: give --output DIR")
    if topology == "swarm":
        raise UsageError("--topology swarm writes a stack file (gymctl.compose.swarm.render_swarm): give --output DIR")
    config_yaml, secret_values = container_config(cfg, topology)
    pass_env = referenced_env(config_yaml)
    services = _separated(cfg, settings, pass_env) if topology == "separated" else _all_in_one(cfg, settings, pass_env)
    head_url = next((f"http://{p.host_ip}:{p.host_port}" for s in services if s.name in (HEAD_SERVICE, ALL_IN_ONE_SERVICE)
                     for p in s.ports if p.container_port == cfg.head_port), None)
    if settings.tls:
        services.append(_tls_proxy(topology, settings, services))
        head_url = head_url and "https://" + head_url[len("http://"):]
    check_service_names(services)
    public = monitoring_public(cfg.tree)
    if not public:  # every server then asks for the token on /metrics (and the head on /prometheus_targets, /ui)
        for s in services:
            s.environment["GYMCTL_MONITORING_PUBLIC"] = "0"
    monitoring = _monitoring(cfg, topology, settings, services, token=not public) if settings.monitoring else None
    return Stack(
        project=settings.project, topology=topology, services=services,  # type: ignore[arg-type]
        labels={LABEL_PROJECT: settings.project}, config_yaml=config_yaml,
        warnings=_gpu_warnings(cfg, settings), secret_env=secret_values, monitoring=monitoring,
        logging=logging_spec(cfg.tree), head_url=head_url,
    )


def _tls_proxy(topology: str, settings: RenderSettings, services: list[Service]) -> Service:
    from gymctl.compose.tls import put_behind_proxy  # it builds on this module's Service

    if topology != "separated":
        raise UsageError("--tls puts an HTTPS proxy in front of a separated stack (each server's published URL is its own); "
                         "use --topology separated")
    if settings.monitoring:
        raise UsageError("--tls with --monitoring: Prometheus' port would stay plain HTTP; leave one out")
    return put_behind_proxy(services, project=settings.project, image=f"{settings.image_prefix}/nginx:{settings.image_tag}")


def _monitoring(cfg: GymConfig, topology: str, settings: RenderSettings, services: list[Service], *, token: bool) -> MonitoringSpec:
    """Prometheus beside the stack: on its network (separated), or in the all-in-one container's (whose 127.0.0.1 the head advertises)."""
    published = Port(host_ip=settings.publish_host, host_port=settings.monitoring_port, container_port=settings.monitoring_port)
    if topology == "all-in-one":
        services[0].ports.append(published)  # a container sharing another's network publishes through it
        head_target, share = f"127.0.0.1:{cfg.head_port}", ALL_IN_ONE_SERVICE
    else:
        head_target, share = f"{HEAD_SERVICE}:{cfg.head_port}", None
    image = f"{settings.image_prefix}/prometheus:{settings.image_tag}"
    return monitoring_spec(image=image, host_ip=settings.publish_host, host_port=settings.monitoring_port, head_target=head_target,
                           share_network_of=share, token=token, labels=_labels(settings, PROMETHEUS_SERVICE))
