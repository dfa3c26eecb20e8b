"""`gymctl restart INSTANCE`: restart one server's container alone; it comes back healthy and re-registers."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from gymctl.cli.logs_cmd import service_of
from gymctl.cli.options import ConfigOpt, ContextOpt, IgnoredTopologyOpt, JsonOpt, OverridesArg, ProjectOpt, SetOpt, print_json, split_instance
from gymctl.cli.render_cmd import project_of, stack_file


def restart(
    instance: Annotated[str, typer.Argument(help="Instance to restart (or `head`).")],
    overrides: OverridesArg = None,
    project: ProjectOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for it to be healthy again.")] = 60.0,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: IgnoredTopologyOpt = None,
    as_json: JsonOpt = False,
    context: ContextOpt = None,
) -> None:
    """Restart the container serving INSTANCE (the others keep serving) and wait until it is healthy again.

    Takes `gymctl up`'s command line: --config / --set / +overrides are read only to map an alias instance
    to its agent's container; --topology is accepted and ignored.
    """
    from gymctl.docker.stack import ComposeStack
    from gymctl.errors import UsageError

    found, overrides = split_instance(instance, overrides)
    if found is None:
        raise UsageError("which instance? e.g. gymctl restart policy_model (gymctl ps lists them)")
    name = project_of(project)
    stack = ComposeStack(name, stack_file(name))
    service = service_of(found, stack.require_up(), config, sets, overrides)
    t0 = time.monotonic()
    state = stack.restart(service, timeout_s=timeout)
    seconds = time.monotonic() - t0
    print(f"{service}: restarted, {state.status} in {seconds:.1f} s (it re-registers with the head within a heartbeat)", file=sys.stderr)
    if as_json:
        print_json({"project": name, "instance": found, "service": service, "status": state.status, "seconds": round(seconds, 2)})


def register(app: typer.Typer) -> None:
    app.command("restart")(restart)
