"""`gymctl run` (= `ng_run`): the local runtime; all-in-one by default, one process per instance with --topology separated."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.options import (
    ConfigOpt,
    LogLevelOpt,
    OverridesArg,
    RestartOpt,
    RunTopologyOpt,
    SetOpt,
    load_from_cli,
)
from gymctl.cli.serve_cmd import LogFormatOpt

if TYPE_CHECKING:
    from gymctl.config.model import GymConfig


def run(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: RunTopologyOpt = "all-in-one",
    log_dir: Annotated[str | None, typer.Option("--log-dir", help="separated: write each instance's output to DIR/<instance>.log too.")] = None,
    restart: RestartOpt = "no",
    log_level: LogLevelOpt = "warning",
    log_format: LogFormatOpt = None,
) -> None:
    """Start the head and every server of a config, locally (no Docker), until Ctrl-C.

    \b
    Examples:
      gymctl run -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
                 -c responses_api_models/scripted_model/configs/scripted_model.yaml
      ng_run "+config_paths=\\[a.yaml,b.yaml]" +policy_base_url=http://127.0.0.1:8000/v1 +policy_api_key=KEY +policy_model_name=M
    """
    if not config and not overrides:  # a container (all-in-one) is handed its config: GYMCTL_CONFIG_YAML
        from gymctl.config.delivered import delivered_config_file
        from gymctl.server.settings import ServerSettings

        settings = ServerSettings.from_env()
        handed = delivered_config_file(settings) if settings.config_yaml else None
        config = [handed] if handed else config
    cfg = load_from_cli(config, sets, overrides)
    from gymctl.server.metrics import export_monitoring_setting  # here: every verb's start-up would pay for the server stack

    export_monitoring_setting(cfg.tree)  # gymctl.monitoring.public: false -> /metrics, /ui need the token
    if log_dir is not None:
        _check_log_dir(log_dir)
    if topology == "separated":
        from gymctl.cli.console import print_processes
        from gymctl.runtime.separated import run_separated

        sys.exit(run_separated(cfg, config_args=(config, sets, overrides), on_ready=print_processes,
                               log_dir=log_dir, restart=restart, log_level=log_level))
    from gymctl.runtime.loop import run as run_loop

    if topology == "ray":
        from gymctl.cli.console import print_processes
        from gymctl.runtime.ray_run import serve_ray

        run_loop(serve_ray(config, sets, overrides, log_level=log_level, on_ready=print_processes))
        return
    replicated = sorted(n for n in cfg.instances if cfg.deployment_of(n).replicas > 1)
    if replicated:
        print(f"gymctl: all-in-one serves each instance once; replicas of {', '.join(replicated)} need --topology separated", file=sys.stderr, flush=True)
    _note_ray_address(cfg, topology)
    run_loop(_all_in_one(cfg, log_level))


def _note_ray_address(cfg: GymConfig, topology: str) -> None:
    """NeMo Gym's ng_run starts a Ray cluster unless ray_head_node_address names one; gymctl starts none either way."""
    address = cfg.tree.get("ray_head_node_address")
    if address:
        print(f"gymctl: ray_head_node_address={address}: no Ray cluster is started here; gymctl's servers run as {topology} "
              "processes (none needs Ray), NeMo Gym servers are handed this address, and --topology ray places every server "
              "on that cluster as an actor", file=sys.stderr, flush=True)


def _check_log_dir(log_dir: str) -> None:
    """--log-dir must be a directory we can create and write (a file of that name is a mistake, said before anything starts)."""
    from pathlib import Path

    from gymctl.errors import UsageError

    path = Path(log_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--log-dir {log_dir} is a file, not a directory; name a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--log-dir {log_dir}: cannot create the directory ({e.strerror}); name another directory") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"--log-dir {log_dir}: the directory is not writable; name another directory")


async def _all_in_one(cfg: GymConfig, log_level: str) -> None:
    from gymctl.cli.console import print_deployment, print_joined, print_joining
    from gymctl.runtime.embedded import serve_all

    await serve_all(cfg, log_level, on_ready=print_deployment, on_joining=print_joining, on_joined=print_joined,
                    on_stopping=lambda: print("Stopping: draining in-flight requests ...", file=sys.stderr, flush=True))
    print("Stopped; nothing left running.", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
