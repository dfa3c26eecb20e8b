"""The swarm stack of a config for `docker stack deploy`: services, placement, GPUs, config and secrets (pure: config in, text out).

Swarm is not Compose (DESIGN.md "Swarm"): no `depends_on`, `build`, top-level `name:`, inline config content or
`devices` reservations; no virtual IPs here (`endpoint_mode: dnsrr`, each task registers its own address with the
head) and no routing mesh (`mode: host` publishing). A task learns its own address and its node's from a small
shell prologue in its command (the node's address from the map gymctl passes, else the node's name resolved).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from gymctl.compose.images import head_image, image_for
from gymctl.compose.model import (
    BASE_ENV,
    CONTAINER_PORT,
    HEAD_SERVICE,
    LABEL_INSTANCE,
    LABEL_PROJECT,
    check_service_names,
    container_config,
    fixed_ports,
    is_published,
    project_name,
    served_instances,
    service_name,
)
from gymctl.compose.render import environment
from gymctl.compose.secrets import referenced_env
from gymctl.compose.swarm_configs import head_config, service_config
from gymctl.config.model import GymConfig
from gymctl.errors import ConfigError, UsageError

SWARM = "swarm"
GPU_KIND = "NVIDIA-GPU"
GPU_LABEL = "gymctl.gpu"  # node label of GPU nodes (the lab sets it; `docker node update --label-add gymctl.gpu=true NODE`)
CONFIG_DIR = "configs"  # beside stack.yml: each service's swarm config source, configs/<service>.yaml
CONFIG_NAME_MAX = 64  # Swarm's limit on a config's name
SECRETS_DIR = "/run/secrets"
REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?$")
LABEL_SELECTOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)=([A-Za-z0-9_.-]+)$")  # node: KEY=VALUE -> node.labels.KEY == VALUE
HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SwarmSettings(BaseModel):
    """How to render a stack: its name, where images come from (registry, digests), what gymctl learnt of the swarm."""

    project: str = "gymctl"
    image_prefix: str = "gymctl"
    image_tag: str = "latest"
    registry: str | None = None  # HOST:PORT every node pulls from (prefixes image names)
    digests: dict[str, str] = Field(default_factory=dict)  # image (as named in the stack) -> sha256:... (the pushed bytes)
    head_node: str | None = None  # hostname of the manager that runs the head (None: any manager)
    node_addresses: dict[str, str] = Field(default_factory=dict)  # node hostname -> address clients reach it at
    secrets: dict[str, str] = Field(default_factory=dict)  # env variable -> swarm secret name (values never here)
    # False where the engines cannot exec into a container (the lab's nested ones: "error executing setns process"):
    # no container healthcheck (the image's is disabled too); readiness and liveness come from the head's registrations.
    healthcheck: bool = True


class SwarmPort(BaseModel):
    published: int
    target: int


class SwarmService(BaseModel):
    name: str
    instance: str
    image: str
    script: str  # the task's command: `sh -c SCRIPT` (advertised address, host URL, secrets, then gymctl serve)
    environment: dict[str, str]
    ports: list[SwarmPort] = Field(default_factory=list)
    replicas: int = 1
    constraints: list[str] = Field(default_factory=list)
    max_replicas_per_node: int | None = None
    gpus: int = 0
    update_order: str = "start-first"
    health_path: str = "/health"
    health_port: int = CONTAINER_PORT
    secrets: list[str] = Field(default_factory=list)  # keys of SwarmStack.secrets
    config: str = ""  # key of its SwarmConfig in SwarmStack.configs
    labels: dict[str, str]


class SwarmConfig(BaseModel):
    """One service's swarm config: its key in the stack file, its versioned name, its source file and text."""

    key: str
    name: str  # <project>_<service>_<hash> (swarm configs are immutable: new content, new name)
    file: str  # relative to stack.yml
    text: str


class SwarmStack(BaseModel):
    project: str
    network: str = "gymctl"
    services: list[SwarmService]
    labels: dict[str, str]
    configs: list[SwarmConfig]  # one per service: a change rolls only the services whose config changed
    secrets: dict[str, str]  # key in the file -> external swarm secret name
    head_port: int
    warnings: list[str] = Field(default_factory=list)
    healthcheck: bool = True


@dataclass
class RenderedSwarm:
    """stack.yml, the config files it names, and what is not in them: warnings, secret values for the swarm secrets."""

    stack: SwarmStack
    stack_yaml: str
    warnings: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def config_files(self) -> dict[str, str]:
        """{path relative to stack.yml: text} of every service's config."""
        return {c.file: c.text for c in self.stack.configs}


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def secret_key(var: str) -> str:
    """The name a secret has inside the stack file and under /run/secrets/."""
    return var.lower()


def secret_name(project: str, var: str, value: str) -> str:
    """A versioned swarm secret name (swarm secrets are immutable: a new value is a new secret)."""
    return f"{project}_{secret_key(var)}_{short_hash(project + '/' + value)}"


def config_of(project: str, service: str, text: str) -> SwarmConfig:
    """The versioned swarm config of one service (its name within Swarm's 64 characters, unique by service and content)."""
    digest = short_hash(service + "\0" + text)
    base = f"{project}_{service}"[:CONFIG_NAME_MAX - len(digest) - 1].rstrip("_.-")
    return SwarmConfig(key=f"config_{service}", name=f"{base}_{digest}", file=f"{CONFIG_DIR}/{service}.yaml", text=text)


def image_prefix(settings: SwarmSettings) -> str:
    if settings.registry is None:
        return settings.image_prefix
    if not REGISTRY.match(settings.registry):
        raise UsageError(f"--registry {settings.registry!r}: give HOST:PORT of a registry every node can pull from (e.g. 10.0.0.1:5000)")
    return f"{settings.registry}/{settings.image_prefix}"


def pinned(image: str, digests: dict[str, str]) -> str:
    """`REG/gymctl/x:latest` -> `REG/gymctl/x:latest@sha256:...` when its pushed digest is known (every node runs the same bytes)."""
    digest = digests.get(image)
    return f"{image}@{digest}" if digest else image


def constraints_of(cfg: GymConfig, name: str) -> list[str]:
    """Placement: `gymctl.instances.NAME.node` (a node's hostname, or KEY=VALUE for a node label), GPU nodes for `gpus`."""
    dep = cfg.deployment_of(name)
    out: list[str] = []
    node = dep.node
    if node is not None:
        label = LABEL_SELECTOR.match(node)
        if label:
            out.append(f"node.labels.{label.group(1)} == {label.group(2)}")
        elif HOSTNAME.match(node):
            out.append(f"node.hostname == {node}")
        else:
            raise ConfigError(f"{node!r} is neither a node's hostname nor a node label KEY=VALUE (e.g. node: zone=a)",
                              key_path=f"gymctl.instances.{name}.node")
    if dep.gpus:
        out.append(f"node.labels.{GPU_LABEL} == true")
    return out


def _prologue(*, published: int | None, secrets: list[str]) -> list[str]:
    """Shell lines run before `gymctl serve`: what a task cannot be told in advance (its address, its node's)."""
    lines = ['export GYMCTL_ADVERTISE_HOST="$(hostname -i | cut -d" " -f1)"']  # the task's own address on the stack network
    if published is not None:
        lines += [
            'addr=""',
            'for pair in $GYMCTL_NODE_ADDRESSES; do [ "${pair%%=*}" = "$GYMCTL_NODE" ] && addr="${pair#*=}"; done',
            '[ -n "$addr" ] || addr="$(getent hosts "$GYMCTL_NODE" | cut -d" " -f1)"',
            f'export GYMCTL_HOST_URL="http://${{addr:-$GYMCTL_NODE}}:{published}"',
        ]
    for var in secrets:
        lines.append(f'export {var}="$(cat {SECRETS_DIR}/{secret_key(var)})"')
    lines.append('exec gymctl serve "$GYMCTL_INSTANCE"')
    return lines


def _labels(project: str, instance: str) -> dict[str, str]:
    return {LABEL_PROJECT: project, LABEL_INSTANCE: instance}


def _node_map(settings: SwarmSettings) -> str:
    return " ".join(f"{host}={addr}" for host, addr in sorted(settings.node_addresses.items()))


# A task leaving (scale-down, rolling update, drained node) keeps serving this long after it deregisters: its
# callers re-read the listing every second (ServerClient.watch_s) and may pick it until then. Within stop_grace_period.
DRAIN_S = "2"


def build_swarm_stack(cfg: GymConfig, settings: SwarmSettings | None = None) -> tuple[SwarmStack, dict[str, str]]:
    """The stack model of a config and the literal secret values it moved out of the config ({variable: value})."""
    settings = settings or SwarmSettings()
    project = project_name(settings.project)
    config_yaml, secret_values = container_config(cfg, "separated", head_host=HEAD_SERVICE)
    configs = [config_of(project, HEAD_SERVICE, head_config(cfg, config_yaml))]
    configs += [config_of(project, service_name(n), service_config(cfg, config_yaml, n)) for n in served_instances(cfg)]
    by_service = {c.key[len("config_"):]: c for c in configs}

    def secrets_of(service: str) -> list[str]:  # the variables its own config reads that are set at deploy
        return [v for v in referenced_env(by_service[service].text) if v in settings.secrets]

    prefix = image_prefix(settings)
    head_url = f"http://{HEAD_SERVICE}:{cfg.head_port}"
    head_secrets = [v for v in secrets_of(HEAD_SERVICE) if v == "GYMCTL_AUTH_TOKEN"]  # the head resolves no other secret
    head_constraints = ["node.role == manager"] + ([f"node.hostname == {settings.head_node}"] if settings.head_node else [])
    head_env = {**BASE_ENV, "GYMCTL_INSTANCE": HEAD_SERVICE, "GYMCTL_BIND_HOST": "0.0.0.0", "GYMCTL_PORT": str(cfg.head_port)}
    services = [SwarmService(
        name=HEAD_SERVICE, instance=HEAD_SERVICE, image=pinned(head_image(prefix, settings.image_tag), settings.digests),
        script="\n".join(_prologue(published=None, secrets=head_secrets)[1:]), environment=head_env,
        ports=[SwarmPort(published=cfg.head_port, target=cfg.head_port)], constraints=head_constraints,
        update_order="stop-first",  # one head: its published port is held on its node until it stops
        health_path="/livez", health_port=cfg.head_port, secrets=head_secrets, config=by_service[HEAD_SERVICE].key,
        labels=_labels(project, HEAD_SERVICE),
    )]
    ports = fixed_ports(cfg)
    nodes = _node_map(settings)
    for name in served_instances(cfg):
        dep = cfg.deployment_of(name)
        published = ports[name] if is_published(cfg, name) else None
        env = {**BASE_ENV, "GYMCTL_INSTANCE": name, "GYMCTL_HEAD_URL": head_url, "GYMCTL_BIND_HOST": "0.0.0.0",
               "GYMCTL_PORT": str(CONTAINER_PORT), "GYMCTL_DRAIN_S": DRAIN_S}
        if published is not None:
            env["GYMCTL_NODE"] = "{{.Node.Hostname}}"  # a swarm template: the task's node
            if nodes:
                env["GYMCTL_NODE_ADDRESSES"] = nodes
        # A task reserving GPUs, or holding a host port, has nowhere to start beside its old self: stop first.
        stop_first = bool(dep.gpus) or published is not None
        present = secrets_of(service_name(name))
        services.append(SwarmService(
            name=service_name(name), instance=name, image=pinned(image_for(cfg, name, prefix, settings.image_tag), settings.digests),
            script="\n".join(_prologue(published=published, secrets=present)), environment=env,
            ports=[SwarmPort(published=published, target=CONTAINER_PORT)] if published is not None else [],
            replicas=dep.replicas, constraints=constraints_of(cfg, name),
            max_replicas_per_node=1 if published is not None and dep.replicas > 1 else None,
            gpus=dep.gpus, update_order="stop-first" if stop_first else "start-first", secrets=present,
            config=by_service[service_name(name)].key, labels=_labels(project, name),
        ))
    check_service_names(services)  # type: ignore[arg-type]  # the same name rule as compose services
    warnings = []
    if settings.registry is None:
        warnings.append(f"images are named {prefix}/<impl>:{settings.image_tag} with no registry: every node needs them loaded, "
                        "or give --registry HOST:PORT (gymctl up pushes them there)")
    stack = SwarmStack(
        project=project, services=services, labels={LABEL_PROJECT: project}, configs=configs,
        secrets=dict(sorted({secret_key(v): settings.secrets[v] for s in services for v in s.secrets}.items())), head_port=cfg.head_port, warnings=warnings,
        healthcheck=settings.healthcheck,
    )
    return stack, secret_values


def swarm_secret_vars(cfg: GymConfig) -> list[str]:
    """Every variable the containers read (`${oc.env:VAR}`, the auth token): each one set at deploy becomes a swarm secret."""
    config_yaml, _ = container_config(cfg, "separated", head_host=HEAD_SERVICE)
    return referenced_env(config_yaml)


def render_swarm(cfg: GymConfig, settings: SwarmSettings | None = None) -> RenderedSwarm:
    """Config -> stack.yml text and its services' config files (pure: no Docker, nothing written)."""
    stack, secret_values = build_swarm_stack(cfg, settings)
    text = environment().get_template("swarm.yml.j2").render(stack=stack)
    return RenderedSwarm(stack, text, list(stack.warnings), secret_values)
