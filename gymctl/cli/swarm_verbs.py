"""--topology swarm for up / down / ps / logs / render: a stack on the swarm the Docker context points at (gymctl.docker.swarm)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gymctl.compose.swarm import RenderedSwarm, SwarmSettings
    from gymctl.config.model import GymConfig
    from gymctl.docker.swarm import Swarm
    from gymctl.docker.swarm_tasks import TaskRow


def stack_dir(project: str) -> Path:
    from gymctl.cli.render_cmd import stack_file

    return stack_file(project).parent


def _stderr_console() -> Any:
    from rich.console import Console

    from gymctl.cli.console import err

    return err if err.is_terminal else Console(stderr=True, width=200)


def task_table(rows: list[TaskRow], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("node", "service", "task", "state", "address", "error"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: (r.node, r.service != "head", r.service, r.slot)):
        color = "green" if r.running else ("red" if r.state in ("failed", "rejected") else "yellow")
        table.add_row(r.node, r.service, str(r.slot), f"[{color}]{r.state}[/]", r.address, r.error)
    return table


class TaskProgress:
    """A live table of the stack's tasks per node on a terminal; one line per change otherwise."""

    def __init__(self) -> None:
        self.console = _stderr_console()
        self.t0 = time.monotonic()
        self.last: dict[str, str] = {}
        self.live = None
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def __call__(self, rows: list[TaskRow], phase: str) -> None:
        if self.live is not None:
            self.live.update(task_table(rows, f"{phase} ({time.monotonic() - self.t0:.1f} s)"))
            return
        for r in rows:
            text = f"{r.state} on {r.node}" + (f" ({r.error})" if r.error else "")
            if self.last.get(r.task_id) != text:
                self.last[r.task_id] = text
                print(f"  {time.monotonic() - self.t0:5.1f} s  {r.service}.{r.slot}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def registry_and_endpoint(registry: str | None) -> tuple[str | None, str | None]:
    """The registry the nodes pull from (--registry, else the lab's node-facing name when a lab is up) and where this
    machine pushes to reach it (the lab's: its loopback port here; any other: its own address). One look for the lab."""
    from gymctl.docker.contexts import origin_client
    from gymctl.docker.lab import LAB_REGISTRY, lab_registry_address

    if registry is not None and registry != LAB_REGISTRY:
        return registry, registry
    lab = lab_registry_address(origin_client())  # the lab runs on this machine's engine, whatever --context says
    return (registry or (LAB_REGISTRY if lab else None)), (lab or registry)


def secret_values(cfg: GymConfig, literal: dict[str, str]) -> dict[str, str]:
    """The variables the containers read that are set here (literal config secrets, then this environment): one swarm secret each."""
    from gymctl.compose.swarm import swarm_secret_vars

    out = {}
    for var in swarm_secret_vars(cfg):
        value = literal.get(var, os.environ.get(var))
        if value:
            out[var] = value
    return out


def render_swarm_of(cfg: GymConfig, settings: SwarmSettings, *, quiet: bool = False) -> RenderedSwarm:
    from gymctl.compose.swarm import render_swarm

    rendered = render_swarm(cfg, settings)
    for w in [] if quiet else rendered.warnings:
        print(f"Warning: {w}", file=sys.stderr)
    return rendered


def render_to(cfg: GymConfig, output: str, project: str, *, prefix: str, tag: str, registry: str | None, as_json: bool) -> None:
    """`gymctl render --topology swarm -o DIR`: DIR/stack.yml and DIR/configs/<service>.yaml."""
    from gymctl.cli.options import print_json
    from gymctl.compose.swarm import SwarmSettings
    from gymctl.docker.swarm import write_stack
    from gymctl.errors import UsageError

    if output == "-":
        raise UsageError("--topology swarm writes stack.yml and the service configs it names: give --output DIR")
    settings = SwarmSettings(project=project, image_prefix=prefix, image_tag=tag, registry=registry,
                             secrets={v: f"{project}_{v.lower()}" for v in secret_values(cfg, {})})
    rendered = render_swarm_of(cfg, settings)
    path = write_stack(Path(output), rendered)
    print(f"wrote {path} and {path.parent / 'configs'}/ ({len(rendered.stack.services)} services, a config each; "
          f"docker stack deploy -c {path} --resolve-image never {project})", file=sys.stderr)
    if rendered.stack.secrets:
        print(f"external secrets it names (create them first: printf %s \"$VAR\" | docker secret create NAME -): "
              f"{', '.join(rendered.stack.secrets.values())}", file=sys.stderr)
    if as_json:
        print_json({"path": str(path), "project": project, "topology": "swarm", "services": [s.name for s in rendered.stack.services],
                    "secrets": sorted(rendered.stack.secrets.values())})


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def deploy(cfg: GymConfig, project: str, *, registry: str | None, push: bool, prefix: str, tag: str, no_auth: bool = False,
           say: Callable[[str], None] = _say) -> tuple[Swarm, RenderedSwarm, str]:
    """Check the swarm and the placements, push what the registry lacks, create the secrets, `docker stack deploy`.

    The stack's token (GYMCTL_AUTH_TOKEN, else one generated for it, unless `no_auth`) becomes a swarm secret, and
    this process sends it from then on; the stack's record lets `gymctl status` / `collect` / `scale` find both.
    Returns the swarm, the stack as deployed and the head's URL (its manager's address, its published port)."""
    from gymctl.cli.stack_access import TOKEN_ENV, remember, stack_token
    from gymctl.compose.swarm import SwarmSettings
    from gymctl.docker.registry_push import push_stack_images
    from gymctl.docker.swarm import check_placement, check_stack_name, create_secrets, inspect_swarm, stack_deploy, write_stack

    swarm = inspect_swarm()
    check_stack_name(swarm.client, project)
    registry, endpoint = registry_and_endpoint(registry)
    settings = SwarmSettings(project=project, image_prefix=prefix, image_tag=tag, registry=registry, head_node=swarm.manager.hostname,
                             node_addresses={n.hostname: n.address for n in swarm.nodes if n.address}, healthcheck=not swarm.is_lab)
    if swarm.is_lab:
        say("the lab's nested engines cannot exec into containers: no container healthchecks; readiness from the head's registrations")
    draft = render_swarm_of(cfg, settings)
    check_placement(draft, swarm)
    if registry is not None and push:
        settings.digests = push_stack_images([s.image for s in draft.stack.services], registry, endpoint=endpoint, progress=say)
        say(f"{len(settings.digests)} image(s) in {registry}, referenced by digest")
    token, token_file = stack_token(project, no_auth=no_auth)
    values = secret_values(cfg, {**draft.secret_env, **({TOKEN_ENV: token} if token else {})})
    settings.secrets = create_secrets(swarm.client, project, values)
    rendered = render_swarm_of(cfg, settings, quiet=True)
    path = write_stack(stack_dir(project), rendered)
    head_url = f"http://{swarm.manager.address}:{rendered.stack.head_port}"
    if token:
        os.environ[TOKEN_ENV] = token  # the readiness wait reads the head's registrations with it
    remember(project, "swarm", head_url, token_file, None)
    stack_deploy(project, path)
    return swarm, rendered, head_url


def up(cfg: GymConfig, project: str, *, registry: str | None, push: bool, wait: bool, timeout: float, prefix: str, tag: str,
       as_json: bool, no_auth: bool = False) -> None:
    """`gymctl up --topology swarm`: deploy, then wait for every task and registration with a live table of tasks per node."""
    from gymctl.cli.options import print_json
    from gymctl.docker.swarm_tasks import service_rows, wait_ready

    t0, started = time.monotonic(), time.time()
    swarm, rendered, head_url = deploy(cfg, project, registry=registry, push=push, prefix=prefix, tag=tag, no_auth=no_auth)
    deployed = time.monotonic() - t0
    rows = service_rows(swarm, project)
    if wait:
        progress = TaskProgress()
        try:
            rows = wait_ready(swarm, project, head_url, timeout_s=timeout, progress=progress, since=started)
        finally:
            progress.close()
    seconds = time.monotonic() - t0
    state = "ready" if wait else "deployed"
    tasks = sum(r.replicas for r in rows)
    print(f"stack {project!r} (swarm, {len(rows)} services, {tasks} tasks on {len(swarm.nodes)} nodes) {state} in {seconds:.1f} s "
          f"(deploy {deployed:.1f} s); head {head_url}  (gymctl status --head {head_url}; gymctl ps -t swarm -p {project}; "
          f"gymctl down -t swarm -p {project})", file=sys.stderr)
    if as_json:
        print_json({"project": project, "topology": "swarm", "state": state, "head_url": head_url, "file": str(stack_dir(project) / "stack.yml"),
                    "services": {r.instance: {"replicas": r.replicas, "running": r.running, "registered": r.registered} for r in rows},
                    "images": [s.image for s in rendered.stack.services], "seconds": round(seconds, 2), "deploy_seconds": round(deployed, 2)})


def down(project: str, *, as_json: bool) -> None:
    from gymctl.cli.options import print_json
    from gymctl.docker.stack_state import forget
    from gymctl.docker.swarm import inspect_swarm, stack_rm

    counts = stack_rm(inspect_swarm().client, project)
    forget(project)  # the stack's record and token
    if not any(counts.values()):
        print(f"stack {project!r} is not deployed on this swarm; nothing to remove", file=sys.stderr)
    else:
        print(f"stack {project!r} down: {counts['services']} service(s), {counts['networks']} network(s), {counts['configs']} config(s), "
              f"{counts['secrets']} secret(s) removed", file=sys.stderr)
    if as_json:
        print_json({"project": project, "topology": "swarm", **counts})


def ps(project: str, *, as_json: bool) -> int:
    """The stack's tasks per node; the exit code: 0 when every service runs all its replicas (or nothing is deployed)."""
    from gymctl.cli.options import print_json
    from gymctl.cli.stack_access import use_stack
    from gymctl.docker.swarm import inspect_swarm
    from gymctl.docker.swarm_tasks import head_url_of, service_rows, stack_view, task_rows

    use_stack(None, project)  # the stack's token: the registrations column reads the head with it
    swarm = inspect_swarm()
    view = stack_view(swarm, project)
    rows = task_rows(swarm, project, view=view)
    head_url = head_url_of(swarm, project)
    services = service_rows(swarm, project, head_url, view=view)
    if as_json:
        print_json({"head_url": head_url, "services": services, "tasks": rows})
    if not services:
        print(f"stack {project!r} is not deployed on this swarm", file=sys.stderr)
        return 0
    if not as_json:
        from rich.console import Console

        con = Console() if sys.stdout.isatty() else Console(width=200)
        con.print(task_table(rows, f"stack {project} (swarm; head {head_url or 'not running'})"))
        for s in services:
            reg = "" if s.registered is None else f", {s.registered} registered"
            con.print(f"{s.service}: {s.running}/{s.replicas} running{reg}")
    return 0 if all(s.running >= s.replicas for s in services) else 1


def logs(project: str, instance: str | None, *, follow: bool, tail: int | None) -> None:
    from gymctl.compose.model import service_name
    from gymctl.docker.swarm import inspect_swarm, stack_services
    from gymctl.docker.swarm_tasks import service_logs
    from gymctl.errors import UsageError, did_you_mean

    names = sorted(s.name[len(project) + 1:] for s in stack_services(inspect_swarm().client, project))
    if not names:
        raise UsageError(f"stack {project!r} is not deployed on this swarm; `gymctl up --topology swarm` first")
    services = names
    if instance is not None:
        wanted = service_name(instance)
        if wanted not in names:
            raise UsageError(f"stack {project!r} has no instance {instance!r}{did_you_mean(wanted, names)} (services: {', '.join(names)})")
        services = [wanted]
    try:
        for line in service_logs(project, services, follow=follow, tail=tail):
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
