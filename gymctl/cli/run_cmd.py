"""`gymctl run` (= `ng_run`): the local runtime; all-in-one by default, one process per instance with --topology separated."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Annotated

import typer

from gymctl.cli.options import ConfigOpt, LogLevelOpt, OverridesArg, RestartOpt, RunTopologyOpt, SetOpt, load_from_cli


def run(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: RunTopologyOpt = "all-in-one",
    log_dir: Annotated[str | None, typer.Option("--log-dir", help="separated: write each instance's output to DIR/<instance>.log too.")] = None,
    restart: RestartOpt = "no",
    log_level: LogLevelOpt = "warning",
) -> None:
    """Start the head and every server of a config, locally (no Docker), until Ctrl-C.

    \b
    Examples:
      gymctl run -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
                 -c responses_api_models/scripted_model/configs/scripted_model.yaml
      ng_run "+config_paths=\\[a.yaml,b.yaml]" +policy_base_url=http://127.0.0.1:8000/v1 +policy_api_key=KEY +policy_model_name=M
    """
    cfg = load_from_cli(config, sets, overrides)
    if topology == "separated":
        from gymctl.cli.console import print_processes
        from gymctl.runtime.separated import run_separated

        sys.exit(run_separated(cfg, config_args=(config, sets, overrides), serve=_serve_child, on_ready=print_processes,
                               log_dir=log_dir, restart=restart, log_level=log_level))
    from gymctl.runtime.loop import run as run_loop

    run_loop(_all_in_one(cfg, log_level))


def _serve_child(argv: list[str]) -> None:
    """What a forked child of the separated runtime runs: `gymctl serve ...`, through this CLI."""
    from gymctl.cli.errors import run_app
    from gymctl.cli.main import app

    run_app(app, args=argv, prog_name="gymctl")


async def _all_in_one(cfg, log_level: str) -> None:
    import logging

    from gymctl.cli.console import print_deployment
    from gymctl.runtime.inprocess import on_signals, start, stop, wait_ready
    from gymctl.runtime.loop import tune_gc
    from gymctl.server.settings import ServerSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    t0 = time.monotonic()
    # GYMCTL_PORT / GYMCTL_HEAD_URL / GYMCTL_HOST_URL describe ONE server (containers, `gymctl serve`); a shell
    # that exported them must not make every instance of an all-in-one run bind one port.
    settings = ServerSettings(log_level=log_level, port=None, head_url=None, host_url=None)
    dep = await start(cfg, settings=settings)
    tune_gc()
    stop_event = asyncio.Event()
    on_signals(stop_event, force=lambda: os._exit(130))
    try:
        await wait_ready(dep)
        print_deployment(dep, time.monotonic() - t0)
        await stop_event.wait()
        print("Stopping: draining in-flight requests ...", file=sys.stderr, flush=True)
    finally:
        await stop(dep)
    print("Stopped; nothing left running.", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
