"""InstanceActor: one instance (with its aliases) served inside a Ray actor, registering with the head; a restarted actor serves and registers again."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import ray

START_TIMEOUT_S = 60.0


class InstanceActorImpl:
    """Serves on its own event loop in a thread from construction on, so when Ray restarts the actor (max_restarts) it is back by itself.

    The server binds the node's address on a free port and advertises it; it registers with `head_url`.
    """

    def __init__(self, config_args: tuple[list[str], list[str], str], instance: str, aliases: list[str], head_url: str,
                 token: str | None, log_level: str) -> None:
        from gymctl.config.model import load_config
        from gymctl.runtime.inprocess import start
        from gymctl.server.settings import ServerSettings

        paths, args, cwd = config_args
        cfg = load_config(paths, args, cwd=Path(cwd))
        names = [instance, *aliases]
        for name in names:
            cfg.instances[name].port = None  # replicas share a node: each takes a free port
        self.instance = instance
        self.node_ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        settings = ServerSettings.from_env(log_level=log_level).model_copy(update={
            "head_url": head_url, "bind_host": self.node_ip, "advertise_host": self.node_ip, "port": None, "host_url": None,
            "auth_token": token or None,
        })
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"gymctl-{instance}", daemon=True)
        self.thread.start()
        self.dep: Any = asyncio.run_coroutine_threadsafe(start(cfg, names=names, with_head=False, settings=settings), self.loop).result(START_TIMEOUT_S)
        self.node = f"{self.node_ip} (ray node {ray.get_runtime_context().get_node_id()[:8]})"
        if self.dep.registrar is not None:  # the head shows where it runs (gymctl status' node column); sent now, renewed with each beat
            for record in self.dep.registrar.records:
                record["node"] = self.node
            asyncio.run_coroutine_threadsafe(self.dep.registrar.beat(), self.loop).result(START_TIMEOUT_S)

    def info(self) -> dict[str, Any]:
        """Where it serves: {instance, url, node_ip, node_id, pid}."""
        return {"instance": self.instance, "url": self.dep.servers[self.instance].url, "node_ip": self.node_ip, "node": self.node,
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def stop(self) -> None:
        """Drain, deregister, stop serving (the actor process is then killed by its owner)."""
        from gymctl.runtime.inprocess import stop

        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(stop(self.dep), self.loop).result(START_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


InstanceActor = ray.remote(InstanceActorImpl)
