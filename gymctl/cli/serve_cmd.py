"""`gymctl serve INSTANCE|head`: start one instance (or the head) alone; the entry point of processes and containers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from gymctl.cli.options import ConfigOpt, OverridesArg, ServeLogLevelOpt, SetOpt, load_from_cli
from gymctl.errors import ConfigError, UsageError, did_you_mean

CONFIG_FILE_ENV = "GYMCTL_CONFIG_FILE"  # containers: the merged config, mounted


def serve(
    instance: Annotated[str, typer.Argument(help="Instance name from the config, or `head` for the registry alone.")],
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    head_url: Annotated[str | None, typer.Option("--head", envvar="GYMCTL_HEAD_URL", help="Head to register with (default: the config's head_server).")] = None,
    port: Annotated[int | None, typer.Option("--port", envvar="GYMCTL_PORT", help="Port to listen on (default: the config's, else any free port).")] = None,
    log_level: ServeLogLevelOpt = "warning",
) -> None:
    """Start ONE server instance of a config (or the head), register it with the head, serve until SIGTERM.

    The config comes from --config / +config_paths, or from the file named by GYMCTL_CONFIG_FILE
    (how containers get it). Secrets stay ${oc.env:VAR} references, resolved from this process's environment.

    \b
    Examples:
      GYMCTL_HEAD_URL=http://127.0.0.1:11000 gymctl serve example_single_tool_call -c my_config.yaml
      gymctl serve head -c my_config.yaml
    """
    if not config and not overrides and os.environ.get(CONFIG_FILE_ENV):
        path = os.environ[CONFIG_FILE_ENV]
        if not Path(path).is_file():
            raise ConfigError(f"{CONFIG_FILE_ENV}={path} does not exist; mount the merged config there")
        cfg = _load_mounted(path, sets, instance)
    else:
        cfg = load_from_cli(config, sets, overrides)
    if instance != "head" and instance not in cfg.instances:
        raise UsageError(
            f"instance {instance!r} is not in the config{did_you_mean(instance, list(cfg.instances))}"
            f" (instances: {', '.join(cfg.instances)}, or `head`)"
        )
    alias_of = cfg.instances[instance].alias_of if instance != "head" else None
    if alias_of:
        raise UsageError(f"{instance!r} is an alias of {alias_of!r} and is served by its process; run: gymctl serve {alias_of}")
    from gymctl.runtime.loop import run as run_loop

    run_loop(_serve(cfg, instance, head_url, port, log_level))


async def _serve(cfg, instance: str, head_url: str | None, port: int | None, log_level: str) -> None:
    import logging

    from gymctl.runtime.inprocess import on_signals, start, stop
    from gymctl.runtime.loop import tune_gc
    from gymctl.server.settings import ServerSettings

    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s {instance} %(levelname)s %(message)s")
    overrides = {"log_level": log_level}
    if head_url:
        overrides["head_url"] = head_url
    if port:
        overrides["port"] = port
    settings = ServerSettings(**overrides)
    if instance == "head":
        if port:
            cfg.head_port = port
        dep = await start(cfg, names=[], with_head=True, settings=settings.model_copy(update={"port": None}))
    else:
        names = [instance] + [n for n, s in cfg.instances.items() if s.alias_of == instance]
        dep = await start(cfg, names=names, with_head=False, settings=settings)
    tune_gc()
    url = dep.head_url if instance == "head" else dep.servers[instance].url
    print(f"{instance}: serving at {url} (pid {os.getpid()})", file=sys.stderr, flush=True)
    stop_event = asyncio.Event()
    on_signals(stop_event, force=lambda: os._exit(130))
    try:
        await stop_event.wait()
    finally:
        await stop(dep)


def _load_mounted(path: str, sets: list[str] | None, instance: str):
    """The mounted merged config of a container: only this instance's code is in its image.

    The other instances' server code lives in their own images, so their entrypoints are validated
    against empty placeholders here (their dir_path stays None); the served instance must be present.
    """
    import tempfile

    from gymctl.config.loader import load_tree
    from gymctl.config.model import SERVER_TYPES, parse_config
    from gymctl.config.paths import resolve_existing

    loaded = load_tree([path], list(sets or []), cwd=Path.cwd(), env_yaml=False)
    keep = {instance}
    elsewhere = []
    with tempfile.TemporaryDirectory(prefix="gymctl-elsewhere-") as shadow:
        for name, value in loaded.tree.items():
            name = str(name)
            if name in keep or not hasattr(value, "items"):
                continue
            types = [t for t in value if t in SERVER_TYPES and t != "environment_servers"]
            for t in types:
                for impl, block in value[t].items():
                    entry = str((block or {}).get("entrypoint") or "app.py")
                    rel = f"{t}/{impl}"
                    found, _ = resolve_existing(rel, Path.cwd())
                    if found is None or not (found / entry).is_file():
                        (Path(shadow) / rel).mkdir(parents=True, exist_ok=True)
                        (Path(shadow) / rel / entry).touch()
                        elsewhere.append(name)
        cfg = parse_config(loaded, cwd=Path(shadow) if elsewhere else Path.cwd())
    for name in elsewhere:
        cfg.instances[name].dir_path = None
    return cfg


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
