"""`gymctl run --topology ray`: the deployment placed on a Ray cluster until SIGINT/SIGTERM, then every actor stopped (and a local cluster with them)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gymctl.runtime.signals import capture_signals
from gymctl.server.settings import ServerSettings


async def serve_ray(config: list[str] | None, sets: list[str] | None, overrides: list[str] | None, *, log_level: str = "warning",
                    on_ready: Callable[[str, list[Any], float], None] | None = None, on_stopping: Callable[[], None] | None = None) -> None:
    """Join `ray_head_node_address` (or start a local cluster), serve the head here and each instance as an actor, until a signal."""
    from gymctl.config.model import load_config
    from gymctl.ray.topology import start_ray  # imports Ray: RayNotInstalledError says how to get it
    from gymctl.runtime.supervisor import ProcessRow

    started = time.monotonic()
    cwd = os.getcwd()
    paths, args = list(config or []), [*(overrides or []), *(sets or [])]
    cfg = load_config(paths, args, cwd=Path(cwd))
    settings = ServerSettings.from_env(log_level=log_level).model_copy(update={"head_url": None, "port": None, "host_url": None})
    dep = await start_ray(cfg, (paths, args, cwd), settings)
    stopping = asyncio.Event()
    try:
        with capture_signals(lambda sig: stopping.set()):
            if on_ready:
                rows = [ProcessRow("head", "head", "registry", dep.head_url, os.getpid())]
                for a in dep.actors:
                    spec = cfg.instances[a.instance]
                    rows.append(ProcessRow(a.instance, spec.server_type, f"{spec.impl} (Ray actor {a.name} on {a.node_ip})", a.url, a.pid))
                on_ready(dep.head_url, rows, time.monotonic() - started)
            await stopping.wait()
            if on_stopping:
                on_stopping()
    finally:
        await dep.stop()
