"""The head server: the registry's HTTP API, NeMo Gym's `/server_instances` and `/global_config_dict_yaml`."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from omegaconf import OmegaConf
from pydantic import BaseModel, Field, field_validator

from gymctl.config.model import GymConfig
from gymctl.config.redact import redact
from gymctl.head.head_metrics import install_head_metrics
from gymctl.head.registry import RegistrationConflict, Registry
from gymctl.head.ui import add_status_page
from gymctl.head.urls import check_server_url
from gymctl.server.kit import new_app


class Registration(BaseModel):
    """What a server sends to register or renew its lease."""

    process_name: str = Field(min_length=1)
    server_type: str
    name: str
    url: str = Field(pattern=r"^https?://")
    host: str
    port: int = Field(ge=1, le=65535)
    host_url: str | None = Field(default=None, pattern=r"^https?://")
    pid: int | None = None
    entrypoint: str | None = None
    dir_path: str | None = None
    config_path: str | None = None
    start_time: float | None = None
    alias_of: str | None = None
    node: str | None = None  # where it runs, when its runtime knows (--topology ray: the Ray node's address and id)
    workers: int | None = Field(default=None, ge=1)  # processes serving this one URL (gymctl.instances.NAME.workers); each sends this record

    _urls = field_validator("url", "host_url")(lambda v: None if v is None else check_server_url(v))  # gymctl.head.urls


class Deregistration(BaseModel):
    process_name: str
    url: str | None = None


def expected_instances(config: GymConfig | None) -> set[str]:
    """Every instance the config names: its own and those it expects from other hosts."""
    return set(config.instances) | set(config.remote) if config else set()


def public_config(config: GymConfig, registry: Registry) -> dict[str, Any]:
    """The merged config as clients see it: secrets redacted, every host/port filled in from the registry."""
    raw = OmegaConf.to_container(config.tree, resolve=False)
    assert isinstance(raw, dict)
    tree = redact(raw)  # redact builds a new tree
    with contextlib.suppress(Exception):  # an interpolation only the servers' environments can resolve: serve it as written
        tree = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    tree = redact(tree)  # again: a value resolved from the head's environment may hold a secret (a URL's password)
    assert isinstance(tree, dict)
    seen: set[str] = set()
    for item in registry.instances():
        name = item["process_name"]
        spec = config.instances.get(name)
        if spec is None or name in seen or item["status"] != "healthy":
            continue
        seen.add(name)
        host, port = item["host"], item["port"]
        if item.get("host_url"):  # published: clients outside the network use the host address
            published = urlsplit(item["host_url"])
            host = published.hostname or host
            port = published.port or (443 if published.scheme == "https" else 80)
        block = tree[name][spec.server_type][spec.impl]
        block["host"], block["port"] = host, port
    tree.setdefault("head_server", {})
    tree["head_server"] = {**(tree["head_server"] or {}), "host": config.head_host, "port": config.head_port}
    return tree


def create_head_app(config: GymConfig | None, registry: Registry | None = None) -> FastAPI:
    """Build the head app for a config (None: a bare registry, every registration accepted)."""
    registry = registry or Registry(expected=expected_instances(config))
    if config is not None and config.remote and not registry.remote:
        registry.remote = dict(config.remote)
    app = new_app("gymctl head")
    app.state.registry = registry
    router = APIRouter()

    @router.get("/")
    @router.get("/livez")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    async def ready() -> JSONResponse:
        missing = registry.missing()
        if missing:
            remote = [n for n in missing if n in registry.remote]
            return JSONResponse({"status": "starting", "waiting_for": missing, "expected_from_other_hosts": remote}, status_code=503)
        return JSONResponse({"status": "ok"})

    for path in ("/health", "/healthz", "/readyz"):
        router.add_api_route(path, ready, methods=["GET"])

    @router.post("/register")
    async def register(body: Registration) -> Any:
        try:
            new = registry.register(body.model_dump())
        except RegistrationConflict as e:
            return JSONResponse({"detail": str(e)}, status_code=409)
        return {"registered": True, "new": new}

    @router.post("/deregister")
    async def deregister(body: Deregistration) -> dict[str, Any]:
        return {"deregistered": registry.deregister(body.process_name, body.url)}

    @router.get("/server_instances")
    async def server_instances() -> list[dict[str, Any]]:
        return registry.instances()

    @router.get("/probe")
    async def probe() -> list[dict[str, Any]]:
        """Each instance's liveness and round trip as seen from the head (which reaches internal servers)."""
        from gymctl.head.probe import probe_all

        return await probe_all(registry.instances())

    @router.get("/global_config_dict_yaml")
    async def global_config_dict_yaml() -> Response:
        text = "{}\n" if config is None else OmegaConf.to_yaml(OmegaConf.create(public_config(config, registry)))
        return Response(orjson.dumps(text), media_type="application/json")

    @router.get("/prometheus_targets")
    async def prometheus_targets(request: Request) -> list[dict[str, Any]]:
        """Prometheus' http_sd: every instance to scrape (gymctl.head.targets)."""
        from gymctl.head.targets import prometheus_targets as targets

        return targets(registry, request.headers.get("host"))

    add_status_page(router, registry)  # /ui and /ui/instances (gymctl.head.ui)
    app.include_router(router)
    install_head_metrics(app, registry)  # /metrics: the registry's figures and the head's probe round trips
    return app
