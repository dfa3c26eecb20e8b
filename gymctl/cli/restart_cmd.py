"""`gymctl restart INSTANCE`: restart one server's container alone; it comes back healthy and re-registers."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from gymctl.cli.logs_cmd import service_of
from gymctl.cli.render_cmd import ProjectOpt, project_of, stack_file


def restart(
    instance: Annotated[str, typer.Argument(help="Instance to restart (or `head`).")],
    project: ProjectOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for it to be healthy again.")] = 60.0,
    config: Annotated[list[str] | None, typer.Option("--config", "-c", help="The config (maps alias instances to their agent).")] = None,
) -> None:
    """Restart the container serving INSTANCE (the others keep serving) and wait until it is healthy again."""
    from gymctl.docker.stack import ComposeStack

    name = project_of(project)
    stack = ComposeStack(name, stack_file(name))
    service = service_of(instance, stack._require_up(), config)
    t0 = time.monotonic()
    state = stack.restart(service, timeout_s=timeout)
    print(f"{service}: restarted, {state.status} in {time.monotonic() - t0:.1f} s (it re-registers with the head within a heartbeat)", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("restart")(restart)
