"""The parsed config: server instances, the head, gymctl's deployment block; validation with clear errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gymctl.config.loader import LoadedTree, load_tree
from gymctl.config.nodes import NodeSpec, parse_nodes
from gymctl.config.paths import resolve_existing
from gymctl.errors import ConfigError, did_you_mean
from gymctl.hosts import is_local_only

ServerType = Literal["responses_api_models", "resources_servers", "responses_api_agents", "environment_servers"]
SERVER_TYPES: tuple[str, ...] = ("responses_api_models", "resources_servers", "responses_api_agents", "environment_servers")
ALIAS_IMPLS = ("legacy_agent",)  # environment servers that only relay to one agent: served by the agent itself

DEFAULT_HEAD_HOST = "127.0.0.1"
DEFAULT_HEAD_PORT = 11000
GYMCTL_KEY = "gymctl"

# Top-level keys that are settings, not servers: gymctl's, plus NeMo Gym's (accepted; unused ones ignored).
RESERVED_KEYS = frozenset(
    {
        GYMCTL_KEY, "head_server", "config_paths", "policy_base_url", "policy_api_key", "policy_model_name",
        "ray_head_node_address", "entrypoint", "default_host", "disallowed_ports", "head_server_deps",
        "python_version", "pip_install_verbose", "use_absolute_ip", "uv_pip_set_python", "skip_venv_if_present",
        "hf_token", "port_range_low", "port_range_high", "dry_run", "uvicorn_timeout_worker_healthcheck",
        "server_spinup_timeout_seconds", "model_endpoint_readiness_timeout_seconds", "allow_openai_version_skew",
        "uv_cache_dir", "uv_lock_timeout_seconds", "uv_venv_dir", "results_dir", "cache_dir", "nemo_gym_log_dir",
        "verbose", "json", "query", "observability_enabled", "model_call_capture_dir", "token_id_capture",
        "component_name", "skip_verification", "skip_verification_reward", "telemetry", "allow_unsupported_pairing",
        "environment_server_name", "environment_server_routes", "environment_routing_mode",
        "error_on_agent_without_environment_server", "agent_name", "input_jsonl_fpath", "output_jsonl_fpath",
        "num_repeats", "limit", "num_samples_in_parallel", "responses_create_params",
    }
)
# Keys whose values are secrets wherever they appear (head replies, logs, rendered compose files).
SECRET_KEY = re.compile(
    r"(api_key|apikey|token|secret|password|passwd|credential|authorization|cookie|(^|_)auth$|(^|_)key$|headers$)",
    re.IGNORECASE,
)
REDACTED = "<redacted>"


@dataclass
class InstanceDeployment:
    """gymctl's per-instance deployment settings (the `gymctl.instances.<name>` block)."""

    gpus: int = 0
    node: str | None = None
    publish: bool | None = None
    replicas: int = 1
    workers: int = 1  # processes serving one port (SO_REUSEPORT), separated topology; NeMo Gym's num_workers (gymctl.config.workers)
    image: str | None = None
    runtime: str | None = None  # gymctl | nemo_gym (default: detected from the code; gymctl.config.nemo_gym)
    ray_resources: dict[str, float] | None = None  # --topology ray: custom resources its actor asks for (checked in gymctl.ray.topology)


@dataclass
class InstanceSpec:
    """One server instance of the config."""

    name: str
    server_type: str
    impl: str
    entrypoint: str
    dir_path: Path | None  # the impl dir; None for an alias
    host: str | None
    port: int | None
    origin: str  # file:line where it was defined
    alias_of: str | None = None  # environment_servers/legacy_agent: the agent it stands for

    @property
    def key_path(self) -> str:
        return f"{self.name}.{self.server_type}.{self.impl}"


@dataclass
class GymConfig:
    """A validated config. `tree` keeps interpolations (secrets stay `${oc.env:...}`) until `resolve()`."""

    tree: DictConfig
    instances: dict[str, InstanceSpec]
    head_host: str = DEFAULT_HEAD_HOST
    head_port: int = DEFAULT_HEAD_PORT
    deployment: dict[str, InstanceDeployment] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    nodes: dict[str, NodeSpec] = field(default_factory=dict)  # gymctl.nodes: the hosts of a multi-host deploy
    # Instances this config refers to that another host provides (name -> server type): found through the
    # head at call time, waited for by the head's readiness. Only with a head off loopback.
    remote: dict[str, str] = field(default_factory=dict)

    @property
    def head_url(self) -> str:
        return f"http://{self.head_host}:{self.head_port}"

    def block(self, name: str, *, resolve: bool = True) -> dict[str, Any]:
        """The impl block of one instance (entrypoint, host, port and its own keys)."""
        spec = self.instances[name]
        node = self.tree[name][spec.server_type][spec.impl]
        return _to_container(node, resolve, f"{spec.origin}", spec.key_path)

    def resolve(self, required: list[str] | None = None) -> dict[str, Any]:
        """The tree with its interpolations resolved (ConfigError names a missing variable).

        With `required` (the instances this process serves) only those must resolve; every other
        top-level key is resolved where it can be and kept as written where it cannot: another
        server's secret is in that server's environment, not this one's.
        """
        if required is None:
            return _to_container(self.tree, True, None, None)
        raw = OmegaConf.to_container(self.tree, resolve=False)
        assert isinstance(raw, dict)
        out: dict[Any, Any] = {}  # top-level keys kept as written (YAML allows a non-string one)
        for key, value in raw.items():
            if key in required:
                spec = self.instances[key]
                out[key] = _to_container(self.tree[key], True, spec.origin, key)
                continue
            try:
                node = self.tree[key]
                out[key] = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
            except OmegaConfBaseException:
                out[key] = value
        return out

    def deployment_of(self, name: str) -> InstanceDeployment:
        return self.deployment.get(name, InstanceDeployment())

    def agents(self) -> list[str]:
        return [n for n, s in self.instances.items() if s.server_type in ("responses_api_agents", "environment_servers")]


def _to_container(node: Any, resolve: bool, source: str | None, key_path: str | None) -> dict[str, Any]:
    try:
        out: object = OmegaConf.to_container(node, resolve=resolve)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        m = re.search(r"Environment variable '([^']+)' not found", msg)
        if m:
            raise ConfigError(
                f"environment variable {m.group(1)} is not set; export it, put it in env.yaml, "
                f"or give a default: ${{oc.env:{m.group(1)},default}}",
                source=source, key_path=_full_key(key_path, e),
            ) from None
        raise ConfigError(f"cannot resolve interpolation: {msg}", source=source, key_path=_full_key(key_path, e)) from None
    assert isinstance(out, dict)  # only mappings come here: the tree and instance blocks (checked by _parse_instance)
    return out


def _full_key(prefix: str | None, e: OmegaConfBaseException) -> str | None:
    key = getattr(e, "full_key", None)
    if prefix and key:
        return f"{prefix}.{key}"
    return key or prefix


def redact(value: Any) -> Any:
    """A copy with every secret-looking key's value replaced (what the head serves and logs show)."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "", {}, []) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


_hint = did_you_mean


def _port(value: Any, where: str, key_path: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        else:
            raise ConfigError(f"{value!r} is not a port number (1-65535, or 0/absent for any free port)", source=where, key_path=key_path)
    if not 0 <= value <= 65535:
        raise ConfigError(f"{value} is not a port (1-65535, or 0/absent for any free port)", source=where, key_path=key_path)
    return value or None


def _parse_instance(name: str, value: Any, origin: str, cwd: Path | None) -> InstanceSpec:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{value!r} is neither a server instance (a mapping with one server type) nor a known setting"
            f"{_hint(name, sorted(RESERVED_KEYS))}",
            source=origin, key_path=name,
        )
    types = [k for k in value if k in SERVER_TYPES]
    if len(types) > 1:
        raise ConfigError(f"has two server types ({', '.join(types)}); an instance has exactly one", source=origin, key_path=name)
    if not types:
        others = [str(k) for k in value]
        for k in others:
            if difflib.get_close_matches(k, SERVER_TYPES, n=1, cutoff=0.6):
                raise ConfigError(f"unknown server type {k!r}{_hint(k, SERVER_TYPES)} (known: {', '.join(SERVER_TYPES)})", source=origin, key_path=f"{name}.{k}")
        raise ConfigError(
            f"has no server type; expected one of {', '.join(SERVER_TYPES)} under it (found: {', '.join(others) or 'nothing'})",
            source=origin, key_path=name,
        )
    server_type = types[0]
    extra = [k for k in value if k != server_type]
    if extra:
        raise ConfigError(f"unexpected key(s) {', '.join(map(str, extra))} beside {server_type!r}", source=origin, key_path=name)
    impls = value[server_type]
    if not isinstance(impls, dict) or len(impls) != 1:
        raise ConfigError("must hold exactly one implementation block, e.g. simple_agent: {entrypoint: app.py}", source=origin, key_path=f"{name}.{server_type}")
    impl, block = next(iter(impls.items()))
    key_path = f"{name}.{server_type}.{impl}"
    if not isinstance(block, dict):
        raise ConfigError("must be a mapping with at least `entrypoint: app.py`", source=origin, key_path=key_path)
    entrypoint = str(block.get("entrypoint") or "app.py")
    host = block.get("host")
    port = _port(block.get("port"), origin, f"{key_path}.port")

    if server_type == "environment_servers":
        if impl not in ALIAS_IMPLS:
            raise ConfigError(
                f"environment server {impl!r} is not supported by gymctl; only {', '.join(ALIAS_IMPLS)} "
                "(served as an alias of its agent)", source=origin, key_path=key_path,
            )
        ref = block.get("agent_server")
        if not (isinstance(ref, dict) and ref.get("name")):
            raise ConfigError("needs agent_server: {type: responses_api_agents, name: AGENT}", source=origin, key_path=f"{key_path}.agent_server")
        return InstanceSpec(name, server_type, str(impl), entrypoint, None, host, port, origin, alias_of=str(ref["name"]))

    rel = f"{server_type}/{impl}"
    found, tried = resolve_existing(rel, cwd)
    if found is None or not (found / entrypoint).is_file():
        looked = ", ".join(str(t / entrypoint) for t in dict.fromkeys(tried))
        raise ConfigError(f"entrypoint {entrypoint!r} of {rel} not found; looked in: {looked}", source=origin, key_path=f"{key_path}.entrypoint")
    return InstanceSpec(name, server_type, str(impl), entrypoint, found, str(host) if host else None, port, origin)


def _references(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        if set(value) >= {"type", "name"} and value.get("type") in SERVER_TYPES and len(value) <= 3:
            yield path, value
        for k, v in value.items():
            yield from _references(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _references(v, f"{path}[{i}]")


def _parse_deployment(raw: Any, origin: str) -> dict[str, InstanceDeployment]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping (instances: {...})", source=origin, key_path=GYMCTL_KEY)
    insts = raw.get("instances") or {}
    if not isinstance(insts, dict):
        raise ConfigError("must map instance names to settings", source=origin, key_path=f"{GYMCTL_KEY}.instances")
    out = {}
    fields = set(InstanceDeployment.__dataclass_fields__)
    for name, settings in insts.items():
        kp = f"{GYMCTL_KEY}.instances.{name}"
        settings = settings or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{settings!r} is not a mapping; write e.g. {{gpus: 1, publish: true}}", source=origin, key_path=kp)
        unknown = [k for k in settings if k not in fields]
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{_hint(unknown[0], sorted(fields))} (known: {', '.join(sorted(fields))})",
                              source=origin, key_path=kp)
        dep = InstanceDeployment(**settings)
        for attr in ("gpus", "replicas", "workers"):
            v = getattr(dep, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if attr == "gpus" else 1):
                raise ConfigError(f"{v!r} is not a valid count", source=origin, key_path=f"{kp}.{attr}")
        if dep.publish is not None and not isinstance(dep.publish, bool):
            raise ConfigError(f"{dep.publish!r} is not true or false", source=origin, key_path=f"{kp}.publish")
        for attr in ("node", "image", "runtime"):
            v = getattr(dep, attr)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"{v!r} is not a name", source=origin, key_path=f"{kp}.{attr}")
        out[str(name)] = dep
    return out


def parse_config(loaded: LoadedTree, *, cwd: Path | None = None) -> GymConfig:
    """Validate a merged tree into a GymConfig (structure only; interpolations resolve later)."""
    raw = OmegaConf.to_container(loaded.tree, resolve=False)
    assert isinstance(raw, dict)
    origins = loaded.origins
    instances: dict[str, InstanceSpec] = {}
    for key, value in raw.items():
        key = str(key)
        if key in RESERVED_KEYS or key.startswith("_"):
            continue
        if not isinstance(value, dict):
            continue  # a scalar setting (NeMo Gym passes many; unused ones are ignored)
        instances[key] = _parse_instance(key, value, origins.get(key, "config"), cwd)
    if not instances:
        files = ", ".join(str(f) for f in loaded.files) or "the config"
        raise ConfigError(f"no server instances in {files}; a config maps instance names to server blocks (see examples/)")

    head = raw.get("head_server") or {}
    if not isinstance(head, dict):
        raise ConfigError("must be a mapping {host, port}", source=origins.get("head_server"), key_path="head_server")
    head_port = _port(head.get("port"), origins.get("head_server", "config"), "head_server.port") or DEFAULT_HEAD_PORT
    head_host = str(head.get("host") or DEFAULT_HEAD_HOST)

    names = list(instances)
    remote: dict[str, str] = {}
    for name, spec in instances.items():
        for path, ref in _references(raw[name], name):
            target = str(ref["name"])
            if target not in instances:
                hint = _hint(target, names)
                if hint or is_local_only(head_host):
                    where = "" if hint else " (with the head on loopback every instance must be in this config; a head on another address lets another host provide it)"
                    raise ConfigError(f"refers to {ref['type']}/{target}, which is not in the config{hint}{where}", source=spec.origin, key_path=path)
                remote.setdefault(target, str(ref["type"]))  # another host provides it: the registry resolves it at call time
                continue
            if instances[target].server_type != ref["type"] and not (ref["type"] == "responses_api_agents" and instances[target].server_type == "environment_servers"):
                raise ConfigError(f"{target!r} is a {instances[target].server_type} instance, not {ref['type']}", source=spec.origin, key_path=path)
        if spec.alias_of and instances[spec.alias_of].server_type != "responses_api_agents":
            raise ConfigError(f"agent_server {spec.alias_of!r} is not an agent", source=spec.origin, key_path=f"{spec.key_path}.agent_server")

    seen: dict[int, str] = {head_port: "head_server"}
    for name, spec in instances.items():
        if spec.port is None:
            continue
        if spec.port in seen:
            raise ConfigError(f"port {spec.port} is also used by {seen[spec.port]}; give each instance its own port (or omit it for a free one)",
                              source=spec.origin, key_path=f"{spec.key_path}.port")
        seen[spec.port] = name

    return GymConfig(
        tree=loaded.tree, instances=instances, head_host=head_host, head_port=head_port,
        deployment=_parse_deployment(raw.get(GYMCTL_KEY), origins.get(GYMCTL_KEY, "config")),
        nodes=parse_nodes(raw.get(GYMCTL_KEY), origins.get(GYMCTL_KEY, "config")),
        origins=origins, files=loaded.files, remote=remote,
    )


def load_config(config_paths: list[str] | None = None, args: list[str] | None = None, *, cwd: Path | None = None, env_yaml: Path | bool | None = True) -> GymConfig:
    """Load, merge and validate a config from files and NeMo-Gym-style overrides."""
    loaded = load_tree(config_paths, args, cwd=cwd, env_yaml=env_yaml)
    cfg = parse_config(loaded, cwd=cwd)
    for name in cfg.deployment:
        if name not in cfg.instances:
            raise ConfigError(f"names no instance of the config{_hint(name, list(cfg.instances))}", source=cfg.origins.get(GYMCTL_KEY),
                              key_path=f"{GYMCTL_KEY}.instances.{name}")
    from gymctl.config.workers import check_workers  # here: it reads the servers' code (which is NeMo Gym's, which keeps sessions where)

    check_workers(cfg)
    return cfg


def to_yaml(tree: DictConfig | dict[str, Any]) -> str:
    """Serialize an (unresolved) tree to YAML, keeping `${...}` references as text."""
    if isinstance(tree, DictConfig):
        return OmegaConf.to_yaml(tree)
    return OmegaConf.to_yaml(OmegaConf.create(tree))
