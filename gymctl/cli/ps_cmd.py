"""`gymctl ps`: the stack's containers, their state, health and published ports."""

from __future__ import annotations

import sys

import typer

from gymctl.cli.options import (
    ContextOpt,
    IgnoredConfigOpt,
    IgnoredOverridesArg,
    IgnoredSetOpt,
    IgnoredTopologyOpt,
    JsonOpt,
    ProjectOpt,
    print_json,
)
from gymctl.cli.render_cmd import project_of, stack_file


def ps(
    overrides: IgnoredOverridesArg = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    config: IgnoredConfigOpt = None,
    sets: IgnoredSetOpt = None,
    topology: IgnoredTopologyOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show the stack's containers: exit 0 when every one is healthy or the stack is not up, 1 when one is not healthy.

    Takes `gymctl up`'s command line unchanged: only --project matters; --config, --set, +overrides and --topology are accepted and ignored.
    """
    from gymctl.docker.stack import ComposeStack

    name = project_of(project)
    if topology == "swarm":
        from gymctl.cli.swarm_verbs import ps as ps_swarm

        sys.exit(ps_swarm(name, as_json=as_json))
    states = ComposeStack(name, stack_file(name)).ps()
    if as_json:
        print_json(states)
    if not states:
        print(f"stack {name!r} is not up (no containers)", file=sys.stderr)
    elif not as_json:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"stack {name}", title_justify="left")
        for col in ("service", "instance", "image", "status", "restarts", "ports"):
            table.add_column(col)
        for s in states:
            color = "green" if s.ready else "red"
            table.add_row(s.service, s.instance, s.image, f"[{color}]{s.status}[/]", str(s.restarts), ", ".join(s.ports))
        (Console() if sys.stdout.isatty() else Console(width=200)).print(table)
    sys.exit(0 if all(s.ready for s in states) else 1)


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
