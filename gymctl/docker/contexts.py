"""Docker contexts: create and remove them (the lab's), and resolve `--context NAME` to an engine endpoint."""

from __future__ import annotations

import json
import os
from typing import Any

from gymctl.docker.cli import run
from gymctl.errors import DockerError, UsageError, did_you_mean


def context_names() -> list[str]:
    """Every Docker context's name."""
    out = run(["docker", "context", "ls", "--format", "{{json .}}"]).stdout.decode()
    return [json.loads(line)["Name"] for line in out.splitlines() if line.strip()]


def context_host(name: str) -> str:
    """The engine endpoint (`unix://...`, `tcp://...`) a context points at; UsageError naming the known ones otherwise."""
    try:
        out = run(["docker", "context", "inspect", name]).stdout.decode()
    except DockerError:
        known = context_names()
        raise UsageError(f"no Docker context {name!r} (contexts: {', '.join(known)}){did_you_mean(name, known)}; "
                         "`docker context ls` lists them, `gymctl cluster create` makes the lab's") from None
    data = json.loads(out)[0]
    host = (data.get("Endpoints") or {}).get("docker", {}).get("Host")
    if not host:
        raise UsageError(f"Docker context {name!r} has no docker endpoint")
    return str(host)


def create_context(name: str, host: str, description: str) -> None:
    """`docker context create NAME --docker host=HOST` (an existing one of that name is replaced)."""
    remove_contexts([name])
    run(["docker", "context", "create", name, "--description", description, "--docker", f"host={host}"])


def remove_contexts(names: list[str]) -> list[str]:
    """Remove the named contexts that exist (the current one too: Docker falls back to default); returns those removed."""
    present = [n for n in names if n in context_names()]
    if present:
        run(["docker", "context", "rm", "--force", *present])
    return present


def sdk_client(context: str | None) -> Any:
    """A Docker SDK client for `context` (None: the current one, as DOCKER_HOST/DOCKER_CONTEXT say)."""
    from gymctl.docker.cli import engine_client

    if context is None:
        return engine_client()
    return _client_at(context_host(context), f"the engine of context {context!r}")


def _client_at(host: str, what: str) -> Any:
    """A pinged Docker SDK client for the engine at `host`; DockerError naming `what` when it does not answer."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=host, timeout=120)
        client.ping()
    except DockerException as e:
        raise DockerError(f"{what} ({host}) does not answer: {str(e).split('(')[0].strip()}") from None
    return client


def context_env(context: str | None) -> dict[str, str]:
    """The environment a `docker` CLI call needs to act on `context` ({} for the current one)."""
    if context is None:
        return {}
    return {"DOCKER_CONTEXT": context, "DOCKER_HOST": ""} if "DOCKER_HOST" in os.environ else {"DOCKER_CONTEXT": context}


_ORIGIN: dict[str, str | None] | None = None  # the environment before the first select_context: this machine's engine


def select_context(context: str) -> dict[str, str | None]:
    """Point this process's Docker calls (SDK, CLI, Compose) at `context`'s engine; returns what to restore."""
    global _ORIGIN
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    if _ORIGIN is None:
        _ORIGIN = dict(saved)
    os.environ["DOCKER_HOST"] = context_host(context)
    os.environ.pop("DOCKER_CONTEXT", None)
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    """Undo `select_context`."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def origin_client() -> Any:
    """A Docker SDK client for the engine this command started with (where `gymctl build` put the images),
    also after `--context` pointed the rest of the command elsewhere."""
    origin = _ORIGIN
    if origin is None:
        return sdk_client(None)
    if origin.get("DOCKER_HOST"):
        return _client_at(str(origin["DOCKER_HOST"]), "this machine's engine")
    if origin.get("DOCKER_CONTEXT"):
        return sdk_client(origin["DOCKER_CONTEXT"])
    return _client_at("unix:///var/run/docker.sock", "this machine's engine")
