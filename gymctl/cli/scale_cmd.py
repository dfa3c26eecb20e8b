"""`gymctl scale INSTANCE=N ...`: change a swarm stack's replicas live; waits until the new count runs and is registered with the head."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from gymctl.cli.options import ContextOpt, JsonOpt, ProjectOpt, print_json


def _parse(pairs: list[str]) -> dict[str, int]:
    from gymctl.errors import UsageError

    out = {}
    for pair in pairs:
        name, sep, count = pair.partition("=")
        if not sep or not name or not count.isdigit():
            raise UsageError(f"{pair!r}: write INSTANCE=N, e.g. gymctl scale example_single_tool_call=3")
        out[name] = int(count)
    return out


def scale(
    pairs: Annotated[list[str], typer.Argument(metavar="INSTANCE=N", help="Instance and its new replica count (repeatable).")],
    project: ProjectOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return once the new replicas run and are registered with the head.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="--wait: seconds before giving up.")] = 120.0,
    context: ContextOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the replicas of instances of a swarm stack (gymctl up --topology swarm) while it serves.

    The head is the load balancer: new replicas register and take new sessions; removed ones deregister as they stop,
    and their sessions move to the others.

    \b
    Example:
      gymctl scale example_single_tool_call=3 --context gymctl-lab
    """
    from gymctl.cli.render_cmd import project_of
    from gymctl.cli.stack_access import use_stack
    from gymctl.cli.swarm_verbs import TaskProgress
    from gymctl.docker.swarm import inspect_swarm
    from gymctl.docker.swarm_tasks import head_url_of, service_rows, wait_ready
    from gymctl.docker.swarm_tasks import scale as scale_service

    wanted = _parse(pairs)
    name = project_of(project)
    use_stack(None, name)  # the stack's token (gymctl up kept it): the wait reads the head's registrations with it
    swarm = inspect_swarm()
    t0 = time.monotonic()
    for instance, replicas in wanted.items():
        service = scale_service(swarm, name, instance, replicas)
        print(f"{service}: scaling to {replicas}", file=sys.stderr, flush=True)
    head_url = head_url_of(swarm, name)
    rows = service_rows(swarm, name, head_url)
    if wait and head_url:
        time.sleep(1.0)  # let the swarm take the new spec before reading its tasks
        progress = TaskProgress()
        try:
            rows = wait_ready(swarm, name, head_url, timeout_s=timeout, progress=progress, exact=set(wanted))
        finally:
            progress.close()
    seconds = time.monotonic() - t0
    for r in rows:
        if r.instance in wanted:
            reg = "" if r.registered is None else f", {r.registered} registered"
            print(f"{r.instance}: {r.running}/{r.replicas} running{reg} ({seconds:.1f} s)", file=sys.stderr)
    if as_json:
        print_json({"project": name, "services": {r.instance: {"replicas": r.replicas, "running": r.running, "registered": r.registered}
                                                  for r in rows if r.instance in wanted}, "seconds": round(seconds, 2)})


def register(app: typer.Typer) -> None:
    app.command("scale")(scale)
