"""`gymctl render --topology T -o DIR`: write the compose file of a config (and the options the stack verbs share)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.options import ConfigOpt, JsonOpt, OverridesArg, ProjectOpt, SetOpt, TopologyOpt, load_from_cli, print_json
from gymctl.docker.stack_state import STACKS_DIR  # under the working directory: each project's compose file and record

if TYPE_CHECKING:
    from gymctl.compose.render import RenderedStack
    from gymctl.config.model import GymConfig

DEFAULT_PROJECT = "gymctl"

PublishHostOpt = Annotated[str, typer.Option("--publish-host", help="Host address the head and agents are published on.")]
PrefixOpt = Annotated[str, typer.Option("--image-prefix", help="Image names: PREFIX/<impl>:TAG.")]
TagOpt = Annotated[str, typer.Option("--tag", help="Image tag.")]
NodeOpt = Annotated[str | None, typer.Option("--node", help="multi-host: the host (of gymctl.nodes) whose part to use.", show_default=False)]
RegistryOpt = Annotated[str | None, typer.Option("--registry", help="multi-host: HOST:PORT of a registry every host pulls from (prefixes image names).",
                                                 show_default=False)]
MonitoringOpt = Annotated[bool, typer.Option("--monitoring", help="Add Prometheus (discovers every instance through the head, loads the alert rules).")]
MonitoringPortOpt = Annotated[int, typer.Option("--monitoring-port", help="--monitoring: the port Prometheus is published on.", min=1, max=65535)]
HostNetworkOpt = Annotated[bool, typer.Option("--host-network", help="multi-host: containers share the host's network, bind the node's "
                                              "address, publish nothing (hosts that share one engine, e.g. a loopback lab).")]


def project_of(project: str | None) -> str:
    from gymctl.compose.model import project_name
    from gymctl.server.settings import ServerSettings

    return project_name(project or ServerSettings.from_env().project or DEFAULT_PROJECT)


def stack_file(project: str) -> Path:
    return Path.cwd() / STACKS_DIR / project / "docker-compose.yml"


def nvidia_runtime_or_none() -> bool | None:
    """Whether the local engine has the NVIDIA runtime; None when no engine answers (render stays offline)."""
    try:
        from gymctl.docker.cli import engine_client, nvidia_runtime

        return nvidia_runtime(engine_client())
    except Exception:  # noqa: BLE001 - best effort: render works without an engine
        return None


def render_config(cfg: GymConfig, topology: str, project: str, *, publish_host: str = "127.0.0.1", prefix: str = "gymctl", tag: str = "latest",
                  check_gpus: bool = True, monitoring: bool = False, monitoring_port: int = 9090, tls: bool = False) -> RenderedStack:
    from gymctl.compose.model import RenderSettings
    from gymctl.compose.render import render

    gpus = any(d.gpus for d in cfg.deployment.values())
    settings = RenderSettings(project=project, publish_host=publish_host, image_prefix=prefix, image_tag=tag,
                              nvidia_runtime=nvidia_runtime_or_none() if gpus and check_gpus else None, monitoring=monitoring,
                              monitoring_port=monitoring_port, tls=tls)
    return render(cfg, topology, settings)


def render_hosts_of(cfg: GymConfig, project: str, *, prefix: str = "gymctl", tag: str = "latest", registry: str | None = None,
                    host_network: bool = False, node: str | None = None) -> dict[str, RenderedStack]:
    """--topology multi-host: {host: its compose file}, only `node`'s when given (checked against gymctl.nodes)."""
    from gymctl.compose.model import RenderSettings
    from gymctl.compose.multihost import check_node, render_hosts

    gpus = any(d.gpus for d in cfg.deployment.values())
    settings = RenderSettings(project=project, image_prefix=prefix, image_tag=tag, nvidia_runtime=nvidia_runtime_or_none() if gpus and node else None)
    if node is not None:
        check_node(cfg, node)
    rendered = render_hosts(cfg, settings, registry=registry, host_network=host_network)
    for r in rendered.values():
        warn(r)
    if node is not None:
        if node not in rendered:
            from gymctl.errors import UsageError

            raise UsageError(f"host {node!r} runs nothing: no instance has gymctl.instances.NAME.node: {node} and the head runs elsewhere")
        return {node: rendered[node]}
    return rendered


def no_multi_host_monitoring(monitoring: bool) -> None:
    if monitoring:
        from gymctl.errors import UsageError

        raise UsageError("--monitoring adds Prometheus to an all-in-one or separated stack; with multi-host, point a Prometheus at the head's "
                         "/prometheus_targets (http_sd) and load monitoring/alerts.yml")


def host_file(directory: Path, host: str) -> Path:
    return directory / f"{host}.compose.yml"


def warn(rendered: RenderedStack) -> None:
    for w in rendered.warnings:
        print(f"Warning: {w}", file=sys.stderr)


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def render_cmd(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: TopologyOpt = "separated",
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write docker-compose.yml into ('-' prints it).")] = "-",
    project: ProjectOpt = None,
    publish_host: PublishHostOpt = "127.0.0.1",
    image_prefix: PrefixOpt = "gymctl",
    tag: TagOpt = "latest",
    node: NodeOpt = None,
    registry: RegistryOpt = None,
    host_network: HostNetworkOpt = False,
    monitoring: MonitoringOpt = False,
    monitoring_port: MonitoringPortOpt = 9090,
    as_json: JsonOpt = False,
) -> None:
    """Render the compose file of a config for one topology (no Docker needed; `docker compose up` runs it).

    \b
    Example:
      gymctl render -t separated -o deploy/ -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
                    -c responses_api_models/scripted_model/configs/scripted_model.yaml
    """
    from gymctl.errors import UsageError

    if as_json and output == "-":
        raise UsageError("--json reports the file written: give --output DIR (without it the compose file itself is printed)")
    cfg = load_from_cli(config, sets, overrides)
    if topology == "swarm":
        from gymctl.cli.swarm_verbs import render_to

        no_multi_host_monitoring(monitoring)
        render_to(cfg, output, project_of(project), prefix=image_prefix, tag=tag, registry=registry, as_json=as_json)
        return
    if topology == "multi-host":
        no_multi_host_monitoring(monitoring)
        _render_multi_host(cfg, output, project_of(project), prefix=image_prefix, tag=tag, registry=registry, host_network=host_network,
                           node=node, as_json=as_json)
        return
    rendered = render_config(cfg, topology, project_of(project), publish_host=publish_host, prefix=image_prefix, tag=tag, monitoring=monitoring,
                             monitoring_port=monitoring_port)
    warn(rendered)
    if output == "-":
        sys.stdout.write(rendered.compose_yaml)
        return
    path = Path(output) / "docker-compose.yml"
    write_file(path, rendered.compose_yaml)
    names = ", ".join(sorted(rendered.secret_env))
    print(f"wrote {path} ({len(rendered.stack.services)} services, topology {topology})", file=sys.stderr)
    if names:
        print(f"secrets given on the command line travel by name: export {names} before `docker compose up`", file=sys.stderr)
    if as_json:
        print_json({"path": str(path), "project": project_of(project), "topology": topology,
                    "services": [s.name for s in rendered.stack.services], "secret_env": sorted(rendered.secret_env)})


def _render_multi_host(cfg: GymConfig, output: str, project: str, *, prefix: str, tag: str, registry: str | None, host_network: bool,
                       node: str | None, as_json: bool) -> None:
    from gymctl.errors import UsageError

    if output == "-":
        raise UsageError("--topology multi-host writes one file per host: give --output DIR")
    hosts = render_hosts_of(cfg, project, prefix=prefix, tag=tag, registry=registry, host_network=host_network, node=node)
    paths = {}
    for host, rendered in hosts.items():
        paths[host] = host_file(Path(output), host)
        write_file(paths[host], rendered.compose_yaml)
        print(f"wrote {paths[host]} ({len(rendered.stack.services)} services; on {host}: docker compose -f {paths[host].name} up -d)", file=sys.stderr)
    secrets = sorted({k for r in hosts.values() for k in r.secret_env})
    if secrets:
        print(f"secrets given on the command line travel by name: export {', '.join(secrets)} before `docker compose up`", file=sys.stderr)
    if as_json:
        print_json({"project": project, "topology": "multi-host", "files": {h: str(p) for h, p in paths.items()},
                    "services": {h: [s.name for s in r.stack.services] for h, r in hosts.items()}, "secret_env": secrets})


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
