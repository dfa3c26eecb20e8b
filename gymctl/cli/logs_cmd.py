"""`gymctl logs [INSTANCE] [-f]`: the stack's (or one instance's) container logs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.options import ConfigOpt, ContextOpt, IgnoredTopologyOpt, OverridesArg, ProjectOpt, SetOpt, split_instance
from gymctl.cli.render_cmd import project_of, stack_file

if TYPE_CHECKING:
    from gymctl.docker.state import ContainerState


def service_of(instance: str, states: list[ContainerState], config: list[str] | None, sets: list[str] | None = None, overrides: list[str] | None = None) -> str:
    """The compose service serving an instance (an alias is served by its agent's container)."""
    from gymctl.compose.model import service_name

    by_instance: dict[str, str] = {s.instance: s.service for s in states}
    if instance in by_instance:
        return by_instance[instance]
    if config or any(o.lstrip("+").startswith("config_paths=") for o in overrides or []):
        from gymctl.cli.options import load_from_cli

        spec = load_from_cli(config, sets, overrides).instances.get(instance)
        if spec is not None and spec.alias_of:
            return str(by_instance.get(spec.alias_of, service_name(spec.alias_of)))
    if instance in {s.service for s in states}:
        return instance
    from gymctl.errors import UsageError, did_you_mean

    raise UsageError(f"no container serves instance {instance!r}{did_you_mean(instance, list(by_instance))}"
                     + f" (instances: {', '.join(sorted(by_instance))}; an alias is served by its agent: pass --config to map it)")


def logs(
    instance: Annotated[str | None, typer.Argument(help="Instance (or `head`); default: every container.", show_default=False)] = None,
    overrides: OverridesArg = None,
    project: ProjectOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", "-n", help="Only the last N lines of each container.")] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: IgnoredTopologyOpt = None,
    context: ContextOpt = None,
) -> None:
    """Print the logs of the stack's containers, or of the one serving INSTANCE.

    Takes `gymctl up`'s command line: --config / --set / +overrides are read only to map an alias instance
    to its agent's container; --topology is accepted and ignored.
    """
    from gymctl.docker.stack import ComposeStack

    instance, overrides = split_instance(instance, overrides)
    name = project_of(project)
    if topology == "swarm":
        from gymctl.cli.swarm_verbs import logs as logs_swarm

        logs_swarm(name, instance, follow=follow, tail=tail)
        return
    stack = ComposeStack(name, stack_file(name))
    service = service_of(instance, stack.require_up(), config, sets, overrides) if instance else None
    try:
        for chunk in stack.logs(service, follow=follow, tail=tail):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
