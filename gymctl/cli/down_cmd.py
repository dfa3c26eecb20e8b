"""`gymctl down [--volumes]`: stop and remove a stack; nothing with its label is left."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gymctl.cli.render_cmd import ProjectOpt, project_of, stack_file


def down(
    project: ProjectOpt = None,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Remove the stack's volumes too.")] = False,
    config: Annotated[list[str] | None, typer.Option("--config", "-c", hidden=True, help="Accepted for symmetry with up; the stack is found by project name.")] = None,
) -> None:
    """Stop and remove the stack's containers and network (by compose project name and gymctl's labels)."""
    from gymctl.docker.cleanup import remove_labelled
    from gymctl.docker.stack import ComposeStack, StackNotUpError

    name = project_of(project)
    stack = ComposeStack(name, stack_file(name))
    try:
        before = stack.down(volumes=volumes)
    except StackNotUpError as e:
        print(f"{e}", file=sys.stderr)
        return
    left = remove_labelled(name)  # anything compose did not own (e.g. a container started by hand with the label)
    n = len(before["containers"])
    extra = f"; also removed {left['containers']} stray container(s)" if left["containers"] else ""
    print(f"stack {name!r} down: {n} container(s), {len(before['networks'])} network(s) removed{extra}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("down", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(down)
