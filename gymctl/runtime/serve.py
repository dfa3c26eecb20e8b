"""serve_one: run ONE instance (with its aliases) or the head in this process until stopped; what `gymctl serve` and forked children call."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import orjson

from gymctl.config.model import GymConfig
from gymctl.errors import ConfigError, UsageError, did_you_mean
from gymctl.runtime.signals import capture_signals
from gymctl.server.settings import ServerSettings

HEAD = "head"


def check_servable(cfg: GymConfig, instance: str) -> None:
    """UsageError unless `instance` is `head` or an instance of `cfg` that has its own process (not an alias)."""
    if instance == HEAD:
        return
    if instance not in cfg.instances:
        raise UsageError(
            f"instance {instance!r} is not in the config{did_you_mean(instance, list(cfg.instances))}"
            f" (instances: {', '.join(cfg.instances)}, or `head`)"
        )
    alias_of = cfg.instances[instance].alias_of
    if alias_of:
        raise UsageError(f"{instance!r} is an alias of {alias_of!r} and is served by its process; run: gymctl serve {alias_of}")


def report_ready(instance: str, url: str, ready_fd: int | None, log_format: str = "text") -> None:
    """Tell people (the `NAME: serving at URL (pid N)` line; a JSON log line with --log-format json) and the supervisor (`ready_fd`)."""
    message = f"{instance}: serving at {url} (pid {os.getpid()})"
    if log_format == "json":  # whatever the level: the supervisor's and the user's one sign of life
        from gymctl.server.logformat import json_line

        message = json_line(instance, "info", message, logger="gymctl.serve")
    print(message, file=sys.stderr, flush=True)
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, orjson.dumps({"instance": instance, "url": url, "pid": os.getpid()}) + b"\n")
        os.close(ready_fd)
    except OSError:  # nobody listens (the supervisor is gone): serving goes on
        pass


async def serve_one(
    cfg: GymConfig, instance: str, settings: ServerSettings, *, stop: asyncio.Event | None = None, tune_gc: bool = True,
) -> None:
    """Serve `instance` (or `head`) until SIGINT/SIGTERM or `stop` is set; then drain, deregister and return.

    `settings` say where to register (head_url), which port (port; None: the config's, else any free one)
    and where to report readiness (ready_fd). A second signal exits at once. `tune_gc` freezes the
    start-up heap, for a process that does nothing else (gymctl.runtime.loop.tune_gc).
    """
    from gymctl.runtime.inprocess import start
    from gymctl.runtime.inprocess import stop as stop_deployment
    from gymctl.runtime.loop import tune_gc as freeze_startup_heap
    from gymctl.server.logformat import configure_logging

    check_servable(cfg, instance)
    configure_logging(instance, settings.log_level, settings.log_format)  # --log-format json: one JSON object per line
    if instance == HEAD:
        if settings.port:
            cfg.head_port = settings.port
        dep = await start(cfg, names=[], with_head=True, settings=settings.model_copy(update={"port": None}))
        url = dep.head_url
    else:
        names = [instance] + [n for n, s in cfg.instances.items() if s.alias_of == instance]
        dep = await start(cfg, names=names, with_head=False, settings=settings)
        if dep.nemo_gym is not None:  # a NeMo Gym server: a child of this process, registered by it once it answers
            try:
                await dep.nemo_gym.wait_ready()
            except BaseException:
                await stop_deployment(dep)
                raise
        url = dep.servers[instance].url if instance in dep.servers else dep.nemo_gym.children[0].spec.url
    if tune_gc:
        freeze_startup_heap()
    stopping = stop or asyncio.Event()
    try:
        with capture_signals(lambda sig: stopping.set()):
            report_ready(instance, url, settings.ready_fd, settings.log_format)
            await stopping.wait()
    finally:
        if settings.workers > 1 and dep.registrar is not None:
            # One of several workers on this port: the others still serve the one registration they share (the
            # supervisor deregisters it once they have all stopped).
            await dep.registrar.stop(deregister=False)
            dep.registrar = None
        await stop_deployment(dep)


def load_mounted(path: str, sets: list[str] | None, instance: str) -> GymConfig:
    """The mounted merged config of a container: only this instance's code is in its image.

    The other instances' server code lives in their own images, so their entrypoints are validated
    against empty placeholders here (their dir_path stays None); the served instance must be present.
    """
    from gymctl.config.loader import load_tree
    from gymctl.config.model import SERVER_TYPES, parse_config
    from gymctl.config.paths import resolve_existing

    if not Path(path).is_file():
        raise ConfigError(f"GYMCTL_CONFIG_FILE={path} does not exist; mount the merged config there")
    loaded = load_tree([path], list(sets or []), cwd=Path.cwd(), env_yaml=False)
    elsewhere = []
    with tempfile.TemporaryDirectory(prefix="gymctl-elsewhere-") as shadow:
        for name, value in loaded.tree.items_ex(resolve=False):
            name = str(name)
            if name == instance or not hasattr(value, "items"):
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
