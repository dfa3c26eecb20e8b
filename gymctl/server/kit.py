"""ServerKit: what every server gets (its name, the config, a ServerClient); the shared routes and wrapping."""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI
from fastapi.responses import Response

from gymctl.server.admission import admitted_app
from gymctl.server.auth import PROBE_PATHS, BearerAuthMiddleware
from gymctl.server.client import ServerClient
from gymctl.server.limits import limited_app
from gymctl.server.metrics import install_server_metrics, open_paths


@dataclass
class ServerKit:
    """Handed to `create_app(config, kit)`: identity, the merged config, and name-based routing."""

    instance: str
    server_type: str
    impl: str
    client: ServerClient
    global_config: dict[str, Any] = field(default_factory=dict)
    start_time: float = field(default_factory=time.time)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The process's pooled aiohttp session (for calls to URLs outside the deployment)."""
        return self.client.session

    def block_of(self, instance: str) -> dict[str, Any]:
        """Another instance's implementation block from the merged config."""
        types = self.global_config.get(instance) or {}
        for impls in types.values():
            if isinstance(impls, dict):
                for block in impls.values():
                    return dict(block or {})
        return {}


def new_app(title: str) -> FastAPI:
    """A FastAPI app as gymctl's servers want it: no docs routes, no per-request telemetry hooks.

    FastAPI's native OpenTelemetry checks providers on every request; set GYMCTL_TELEMETRY=1 to keep it.
    """
    # Imported here, not at the top: importing the kit stays light.
    from gymctl.server.settings import ServerSettings

    kwargs: dict[str, Any] = {"title": title, "docs_url": None, "redoc_url": None, "openapi_url": None}
    if not ServerSettings.from_env().telemetry and "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        kwargs["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    return FastAPI(**kwargs)


def add_health_routes(app: FastAPI, kit: ServerKit) -> None:
    """`GET /` and `GET /health`: 200 while the server serves (liveness)."""
    paths = {getattr(r, "path", None) for r in app.router.routes}
    payload = orjson.dumps({"status": "ok", "instance": kit.instance, "server_type": kit.server_type, "name": kit.impl, "pid": os.getpid()})

    async def health() -> Response:
        return Response(payload, media_type="application/json")

    for path in ("/", "/health"):
        if path not in paths:
            app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
    install_server_metrics(app, kit.instance, kit.server_type, kit.impl)  # /metrics; in-process calls counted too


def wrap_app(app: Any, token: str | None, *, head: bool = False) -> Any:
    """The ASGI app as served: admission control (gymctl.server.admission) outermost, then the body-size limit
    (gymctl.server.limits), auth in front when a token is set (a server's, not the head's, open to its trusted networks)."""
    if not token:
        return admitted_app(limited_app(app))  # 503 + Retry-After at the limit
    from gymctl.server.trusted_networks import trusted_networks  # GYMCTL_AUTH_TRUSTED_NETWORKS: peers of NeMo Gym servers

    return admitted_app(limited_app(BearerAuthMiddleware(app, token, open_paths(PROBE_PATHS), trusted=None if head else trusted_networks())))
