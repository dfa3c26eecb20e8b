"""`gymctl up --topology T [--build] [--wait]`: render, check, start the stack; show progress; diagnose a failed start."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.build_cmd import BaseImageOpt, base_image_of, build_for
from gymctl.cli.options import ConfigOpt, ContextOpt, JsonOpt, OverridesArg, ProjectOpt, SetOpt, TopologyOpt, load_from_cli, print_json
from gymctl.cli.render_cmd import (
    HostNetworkOpt,
    MonitoringOpt,
    MonitoringPortOpt,
    NodeOpt,
    PrefixOpt,
    PublishHostOpt,
    RegistryOpt,
    TagOpt,
    no_multi_host_monitoring,
    project_of,
    render_config,
    render_hosts_of,
    stack_file,
    warn,
    write_file,
)
from gymctl.cli.stack_access import TOKEN_ENV
from gymctl.errors import UsageError

if TYPE_CHECKING:
    from gymctl.compose.render import RenderedStack
    from gymctl.config.model import GymConfig
    from gymctl.docker.state import ContainerState


class _Progress:
    """A live table of the stack's containers on a terminal; one line per change otherwise."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = None
        self.last: dict[str, str] = {}
        self.t0 = time.monotonic()
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=8, transient=True)
            self.live.start()

    def __call__(self, states: list[ContainerState], phase: str) -> None:
        if self.live is not None:
            from rich.table import Table

            table = Table(title=f"{phase} ({time.monotonic() - self.t0:.1f} s)", title_justify="left")
            for col in ("service", "status", "ports"):
                table.add_column(col)
            for s in states:
                color = "green" if s.ready else ("red" if s.failed else "yellow")
                table.add_row(s.service, f"[{color}]{s.status}[/]", ", ".join(s.ports))
            self.live.update(table)
            return
        for s in states:
            if self.last.get(s.service) != s.status:
                self.last[s.service] = s.status
                print(f"  {time.monotonic() - self.t0:5.1f} s  {s.service}: {s.status}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def up(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: TopologyOpt = "separated",
    project: ProjectOpt = None,
    build: Annotated[bool, typer.Option("--build", help="Build (or refresh) the images first.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return once every container is healthy and the head is ready.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="--wait: seconds before giving up.")] = 120.0,
    publish_host: PublishHostOpt = "127.0.0.1",
    base_image: BaseImageOpt = None,
    image_prefix: PrefixOpt = "gymctl",
    tag: TagOpt = "latest",
    node: NodeOpt = None,
    registry: RegistryOpt = None,
    host_network: HostNetworkOpt = False,
    monitoring: MonitoringOpt = False,
    monitoring_port: MonitoringPortOpt = 9090,
    as_json: JsonOpt = False,
    context: ContextOpt = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="multi-host with --registry: push this machine's images there first.")] = True,
    no_auth: Annotated[bool, typer.Option("--no-auth", help=(
        "Run the stack without a token (the seed's trusted-network mode). Default: GYMCTL_AUTH_TOKEN, else a token generated "
        "for the stack and kept in .gymctl/stacks/PROJECT/auth_token (gymctl status / collect find it)."))] = False,
    tls: Annotated[bool, typer.Option("--tls", help=(
        "separated: an nginx proxy answers HTTPS only on every published port (the head's included); without --tls-cert a "
        "local CA signs a certificate (.gymctl/stacks/PROJECT/tls/ca.pem; gymctl's clients trust it). NeMo Gym's own tools "
        "(ng_status, ng_collect_rollouts) build http:// URLs and cannot talk to it."))] = False,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="--tls: your certificate (PEM, chain after it).", show_default=False)] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="--tls: its private key (PEM, no passphrase).", show_default=False)] = None,
) -> None:
    """Start a config's servers in containers (Docker Compose), in one topology.

    \b
    Examples:
      gymctl up --topology separated --wait -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
                -c responses_api_models/scripted_model/configs/scripted_model.yaml
      gymctl up --topology all-in-one --build ...
      gymctl up --topology multi-host --node worker1 -c examples/multi-host/worker-config.yaml   (one host's part, on the current context)
      gymctl up --topology swarm --context gymctl-lab -c ...   (a stack on that swarm; images pushed to --registry, else the lab's)
      gymctl up --topology separated --tls -c ...   (HTTPS on the published ports; a token generated unless GYMCTL_AUTH_TOKEN)
    """
    from gymctl.docker.stack import ComposeStack

    cfg = load_from_cli(config, sets, overrides)
    name = project_of(project)
    if topology == "swarm":  # a stack on the context's swarm: gymctl.cli.swarm_verbs
        from gymctl.cli.swarm_verbs import up as up_swarm

        no_multi_host_monitoring(monitoring)
        up_swarm(cfg, name, registry=registry, push=push, wait=wait, timeout=timeout, prefix=image_prefix, tag=tag, as_json=as_json,
                 no_auth=no_auth)
        return
    if topology == "multi-host":
        no_multi_host_monitoring(monitoring)
        _up_host(cfg, name, node, wait=wait, timeout=timeout, prefix=image_prefix, tag=tag, registry=registry, host_network=host_network,
                 as_json=as_json, push=push, no_auth=no_auth)
        return
    if node is not None:
        raise UsageError("--node picks one host's part of --topology multi-host")
    if (tls_cert or tls_key) and not tls:
        raise UsageError("--tls-cert and --tls-key go with --tls")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls: give both --tls-cert and --tls-key, or neither (a local CA then signs a certificate)")
    from gymctl.cli.stack_access import remember, stack_token

    token, token_file = stack_token(name, no_auth=no_auth)
    rendered = render_config(cfg, topology, name, publish_host=publish_host, prefix=image_prefix, tag=tag, monitoring=monitoring,
                             monitoring_port=monitoring_port, tls=tls)
    warn(rendered)
    from gymctl.cli.check_cmd import warn_checklist

    warn_checklist(cfg, rendered.stack, monitoring=monitoring, token_set=bool(token), tls=tls)  # `gymctl check`'s problems, as warnings
    rendered.secret_env[TOKEN_ENV] = token  # to compose's environment only: the containers read it by name
    ca_file = _tls_secrets(rendered, name, publish_host, tls_cert, tls_key) if tls else None
    path = stack_file(name)
    write_file(path, rendered.compose_yaml)
    head_url = rendered.stack.head_url or f"http://{publish_host}:{cfg.head_port}"
    remember(name, topology, head_url, token_file, ca_file)  # before up: `gymctl status` finds a stack still starting
    stack = ComposeStack(name, path)
    if build:
        build_for(cfg, topology, base_image=base_image_of(base_image), prefix=image_prefix, tag=tag)
    if tls:
        _ensure_proxy_image(rendered)
    if rendered.stack.logging is not None:  # a driver the engine lacks: said now, not by a container that cannot start
        from gymctl.docker.log_drivers import check_log_driver

        check_log_driver(rendered.stack.logging.driver)
    if rendered.stack.monitoring is not None:
        from gymctl.cli.monitoring_up import prepare_monitoring

        prepare_monitoring(rendered.stack.monitoring, stack.ps(), stack.backend.port_free)
    t0 = time.monotonic()
    progress = _Progress()
    try:
        stack.up(rendered, wait=wait, timeout_s=timeout, progress=progress)
    finally:
        progress.close()
    state = "ready" if wait else "started"
    seconds = time.monotonic() - t0
    auth = f"token in {token_file}" if token_file else "no auth"
    print(f"stack {name!r} ({topology}, {len(rendered.stack.services)} containers) {state} in {seconds:.1f} s; "
          f"head {head_url} ({auth}{'; CA ' + str(ca_file) if ca_file else ''})  (gymctl status -p {name}; gymctl down -p {name})",
          file=sys.stderr)
    m = rendered.stack.monitoring
    if m is not None:
        print(f"prometheus http://{m.host_ip}:{m.host_port}  (targets: /targets, alerts: /alerts)", file=sys.stderr)
    if as_json:
        print_json({"project": name, "topology": topology, "state": state, "head_url": head_url, "file": str(path),
                    "services": [s.name for s in rendered.stack.services], "seconds": round(seconds, 2)})


def _tls_secrets(rendered: RenderedStack, project: str, publish_host: str, cert: Path | None, key: Path | None) -> Path | None:
    """The proxy's certificate and key, into compose's environment (never the file); the CA gymctl's clients trust, or None."""
    import os

    from gymctl.cli.stack_access import CA_ENV
    from gymctl.compose.tls import CERT_ENV, KEY_ENV
    from gymctl.docker.stack_state import TLS_DIR, stack_dir
    from gymctl.docker.tls_certs import check_given, local_certificate

    if cert is not None and key is not None:
        files = check_given(cert, key)
    else:
        wide = publish_host in ("0.0.0.0", "::", "")
        import socket

        hosts = ["127.0.0.1", "localhost", socket.gethostname()] if wide else [publish_host, "127.0.0.1", "localhost"]
        files = local_certificate(stack_dir(project) / TLS_DIR, hosts, project)
    rendered.secret_env[CERT_ENV], rendered.secret_env[KEY_ENV] = files.pem()
    if files.ca is not None:
        os.environ[CA_ENV] = str(files.ca)  # this process waits on the head through the proxy
    return files.ca


def _ensure_proxy_image(rendered: RenderedStack) -> None:
    from gymctl.compose.tls import PROXY_SERVICE
    from gymctl.docker.nginx_image import build_nginx_image, nginx_image_exists

    image = next(s.image for s in rendered.stack.services if s.name == PROXY_SERVICE)
    if not nginx_image_exists(image):
        print(f"building {image} from Debian's nginx package (offline, once) ...", file=sys.stderr, flush=True)
        result = build_nginx_image(image)
        print(f"{image}: {result.size_bytes / 1e6:.0f} MB, built in {result.seconds:.0f} s", file=sys.stderr, flush=True)


def _up_host(cfg: GymConfig, project: str, node: str | None, *, wait: bool, timeout: float, prefix: str, tag: str, registry: str | None,
             host_network: bool, as_json: bool, push: bool = True, no_auth: bool = False) -> None:
    """One host's part of a multi-host deploy: its compose file, up on the current Docker context; waits for its containers only.

    Every host's part gets the project's one token (GYMCTL_AUTH_TOKEN, else generated at the first part's `up` and kept
    here for the next; a host started with plain `docker compose up` needs it exported: its file says where)."""
    from gymctl.cli.stack_access import remember, stack_token
    from gymctl.docker.stack import ComposeStack
    from gymctl.errors import UsageError

    if node is None:
        raise UsageError("--topology multi-host starts one host's part: give --node HOST (a host of gymctl.nodes)")
    rendered = render_hosts_of(cfg, project, prefix=prefix, tag=tag, registry=registry, host_network=host_network, node=node)[node]
    name = rendered.stack.project
    token, token_file = stack_token(project, no_auth=no_auth)
    if token:
        rendered.secret_env[TOKEN_ENV] = token  # to compose's environment only: the containers read it by name
    head_url = rendered.stack.head_url or ""  # the coordinator's address and head port (gymctl.compose.multihost)
    remember(project, "multi-host", head_url, token_file, None)  # gymctl status / collect find the head and the token
    path = stack_file(name)
    write_file(path, rendered.compose_yaml)
    stack = ComposeStack(name, path)
    t0 = time.monotonic()
    if registry is not None and push:  # the host pulls from the registry: put this machine's images there first
        from gymctl.docker.registry_push import push_stack_images

        pushed = push_stack_images([s.image for s in rendered.stack.services], registry,
                                   progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        print(f"{len(pushed)} image(s) pushed for host {node!r} (layers the registry had were skipped)", file=sys.stderr, flush=True)
    progress = _Progress()
    try:
        stack.up(rendered, wait=False, progress=progress)
        if wait:  # the head's readiness needs every host's part: `gymctl status` shows who is missing
            stack.wait_healthy(time.monotonic() + timeout, progress)
    finally:
        progress.close()
    state = "healthy" if wait else "started"
    seconds = time.monotonic() - t0
    auth = f"token in {token_file}: export GYMCTL_AUTH_TOKEN from it for a host started with docker compose" if token_file else "no auth"
    print(f"host {node!r} of {project!r} ({len(rendered.stack.services)} containers, compose project {name}) {state} in {seconds:.1f} s; "
          f"head {head_url} ({auth}); gymctl down -p {name}", file=sys.stderr)
    if as_json:
        print_json({"project": name, "node": node, "topology": "multi-host", "state": state, "file": str(path),
                    "services": [s.name for s in rendered.stack.services], "seconds": round(seconds, 2)})


def register(app: typer.Typer) -> None:
    app.command("up")(up)
