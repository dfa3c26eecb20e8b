"""`gymctl down [--volumes]`: stop and remove a stack; nothing with its label is left."""

from __future__ import annotations

import sys
from typing import Annotated

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


def down(
    overrides: IgnoredOverridesArg = None,
    project: ProjectOpt = None,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Remove the stack's volumes too.")] = False,
    config: IgnoredConfigOpt = None,
    sets: IgnoredSetOpt = None,
    topology: IgnoredTopologyOpt = None,
    as_json: JsonOpt = False,
    context: ContextOpt = None,
) -> None:
    """Stop and remove the stack's containers and network (by compose project name and gymctl's labels).

    Takes `gymctl up`'s command line unchanged: only --project matters; --config, --set, +overrides and --topology are accepted and ignored.
    """
    from gymctl.docker.cleanup import remove_labelled
    from gymctl.docker.stack import ComposeStack, StackNotUpError

    name = project_of(project)
    if topology == "swarm":
        from gymctl.cli.swarm_verbs import down as down_swarm

        down_swarm(name, as_json=as_json)
        return
    from gymctl.docker.stack_state import forget

    stack = ComposeStack(name, stack_file(name))
    try:
        before = stack.down(volumes=volumes)
        forget(name)  # the stack's record, token and certificates: status and collect no longer find it
    except StackNotUpError as e:
        forget(name)
        print(f"{e}", file=sys.stderr)
        if as_json:
            print_json({"project": name, "was_up": False, "containers": 0, "networks": 0, "stray_containers": 0})
        return
    left = remove_labelled(name)  # anything compose did not own (e.g. a container started by hand with the label)
    n = len(before["containers"])
    extra = f"; also removed {left['containers']} stray container(s)" if left["containers"] else ""
    print(f"stack {name!r} down: {n} container(s), {len(before['networks'])} network(s) removed{extra}", file=sys.stderr)
    if as_json:
        print_json({"project": name, "was_up": True, "containers": n, "networks": len(before["networks"]),
                    "stray_containers": left["containers"]})


def register(app: typer.Typer) -> None:
    app.command("down")(down)
