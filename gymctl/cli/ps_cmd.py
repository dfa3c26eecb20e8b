"""`gymctl ps`: the stack's containers, their state, health and published ports."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from gymctl.cli.render_cmd import ProjectOpt, project_of, stack_file


def ps(
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Show the stack's containers (exit 1 when it is not up or a container is not healthy)."""
    from rich.console import Console
    from rich.table import Table

    from gymctl.docker.stack import ComposeStack

    name = project_of(project)
    states = ComposeStack(name, stack_file(name)).ps()
    if as_json:
        print(json.dumps([asdict(s) for s in states], indent=2))
    elif not states:
        print(f"stack {name!r} is not up (no containers)", file=sys.stderr)
    else:
        table = Table(title=f"stack {name}", title_justify="left")
        for col in ("service", "instance", "image", "status", "restarts", "ports"):
            table.add_column(col)
        for s in states:
            color = "green" if s.ready else "red"
            table.add_row(s.service, s.instance, s.image, f"[{color}]{s.status}[/]", str(s.restarts), ", ".join(s.ports))
        (Console() if sys.stdout.isatty() else Console(width=200)).print(table)
    sys.exit(0 if states and all(s.ready for s in states) else 1)


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
