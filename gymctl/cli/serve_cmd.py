"""`gymctl serve INSTANCE|head`: start one instance (or the head) alone; the entry point of processes and containers."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from gymctl.cli.options import (
    ConfigOpt,
    OverridesArg,
    ServeLogLevelOpt,
    SetOpt,
    load_from_cli,
)


def _log_format(value: str | None) -> str | None:
    """Check --log-format and hand it on through GYMCTL_LOG_FORMAT (ServerSettings and `gymctl run`'s children read it)."""
    if value is None:
        return None
    from gymctl.server.logformat import check_log_format

    try:
        fmt = check_log_format(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    os.environ["GYMCTL_LOG_FORMAT"] = fmt
    return fmt


LogFormatOpt = Annotated[str | None, typer.Option("--log-format", callback=_log_format, show_default=False,
                                                  help="text (default) or json: one JSON object per line (time, level, instance, message, "
                                                       "request_id), for log shippers.")]


def serve(
    instance: Annotated[str, typer.Argument(help="Instance name from the config, or `head` for the registry alone.")],
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    head_url: Annotated[str | None, typer.Option("--head", help="Head to register with (default: GYMCTL_HEAD_URL, else the config's head_server).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (default: GYMCTL_PORT, else the config's, else any free port).")] = None,
    log_level: ServeLogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Start ONE server instance of a config (or the head), register it with the head, serve until SIGTERM.

    The config comes from --config / +config_paths, or from GYMCTL_CONFIG_YAML (its text) or the file named by
    GYMCTL_CONFIG_FILE (how containers get it). Secrets stay ${oc.env:VAR} references, resolved from this process's environment.

    \b
    Examples:
      GYMCTL_HEAD_URL=http://127.0.0.1:11000 gymctl serve example_single_tool_call -c my_config.yaml
      gymctl serve head -c my_config.yaml
    """
    from gymctl.config.delivered import delivered_config_file
    from gymctl.runtime.loop import run as run_loop
    from gymctl.runtime.serve import check_servable, load_mounted, serve_one
    from gymctl.server.settings import ServerSettings

    mounted = delivered_config_file(ServerSettings.from_env())  # containers: the merged config, handed in
    cfg = load_mounted(mounted, sets, instance) if mounted and not config and not overrides else load_from_cli(config, sets, overrides)
    check_servable(cfg, instance)
    from gymctl.server.metrics import export_monitoring_setting

    export_monitoring_setting(cfg.tree)  # gymctl.monitoring.public: false -> /metrics, /ui need the token
    explicit: dict[str, object] = {"log_level": log_level} if log_level else {}
    if head_url:
        explicit["head_url"] = head_url
    if port:
        explicit["port"] = port
    run_loop(serve_one(cfg, instance, ServerSettings.from_env(**explicit)))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
