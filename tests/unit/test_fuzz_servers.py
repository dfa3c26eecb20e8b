"""Fuzzing every server type on real sockets: schemathesis from each app's own OpenAPI schema, and arbitrary or
mistyped JSON at every POST route. The outcome a user notices: never a 5xx (and never a hang) on generated input.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from gymctl.config import load_config
from gymctl.runtime import inprocess
from gymctl.server.settings import ServerSettings
from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, free_port

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@dataclass
class Target:
    name: str
    url: str
    app: FastAPI


def _fastapi_of(app: Any) -> FastAPI:
    while not isinstance(app, FastAPI):  # unwrap gymctl's ASGI middleware (limits, auth)
        app = app.app
    return app


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Target]]:
    """The example environment in-process on real sockets (head, scripted model, resources, agent), on its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    cfg.head_port = free_port()

    async def up() -> Any:
        dep = await inprocess.start(cfg, settings=ServerSettings(heartbeat_s=0.5))
        await inprocess.wait_ready(dep)
        return dep

    dep = asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    try:
        out = {"head": Target("head", dep.head_url, _fastapi_of(dep.head.server.config.app))}
        for name, rs in dep.servers.items():
            out[cfg.instances[name].server_type] = Target(name, rs.url, _fastapi_of(rs.server.config.app))
        yield out
    finally:
        asyncio.run_coroutine_threadsafe(inprocess.stop(dep), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


SERVER_KINDS = ["head", "responses_api_models", "resources_servers", "responses_api_agents"]


def _post_paths(app: FastAPI) -> list[str]:
    return sorted(path for path, ops in app.openapi()["paths"].items() if "post" in ops)


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error(targets, kind, mode):
    target = targets[kind]
    schema = schemathesis.openapi.from_dict(target.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{kind}: the app's schema lists no operation"
    errors: list[str] = []
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for op in operations:
            check_operation(client, target, op, mode, errors)
    assert not errors, "\n".join(sorted(set(errors))[:20])


def check_operation(client: httpx.Client, target: Target, op: Any, mode: GenerationMode, errors: list[str]) -> None:
    """Send generated cases of one operation; record every 5xx."""

    @FUZZ
    @given(case=op.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=target.url)
        headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() not in ("content-length", "host")}
        if kwargs.get("cookies"):
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
        r = client.request(kwargs["method"], kwargs["url"], headers=headers, params=kwargs.get("params"),
                           content=kwargs.get("data"), json=kwargs.get("json"))
        if r.status_code >= 500:
            errors.append(f"{op.method.upper()} {op.path} -> {r.status_code}: {r.text[:200]}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (a GET without parameters) in negative mode
        assert mode is GenerationMode.NEGATIVE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
KEYS = ["input", "tools", "responses_create_params", "response", "output", "messages", "city", "process_name", "url",
        "verify_responses", "reward", "_ng_task_index", "tool_calls", "content", "role", "type", "name", "arguments"]


def _valid_bodies() -> list[dict[str, Any]]:
    row = example_rows()[0]
    call = {"type": "function_call", "name": "get_weather", "arguments": "{}", "call_id": "c1"}
    return [row, row["responses_create_params"], {**row, "response": {"output": [call]}}, {"city": "Paris"},
            {"messages": [{"role": "user", "content": "hi"}], "tools": row["responses_create_params"].get("tools", [])},
            {"verify_responses": [{"reward": 1.0, "_ng_task_index": 0}]}]


@st.composite
def mistyped(draw: Any) -> Any:
    """A valid body with one field (at any depth) given a value of another JSON type, or a key added."""
    body = draw(st.sampled_from(_valid_bodies()))

    def mutate(node: Any) -> Any:
        if isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node)))
            return {**node, key: mutate(node[key])}
        if isinstance(node, list) and node and draw(st.booleans()):
            i = draw(st.integers(0, len(node) - 1))
            return [*node[:i], mutate(node[i]), *node[i + 1:]]
        return draw(json_values)

    if draw(st.booleans()):
        return {**body, draw(st.sampled_from(KEYS)): draw(json_values)}
    return mutate(body)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_wrong_json_types_get_4xx_not_5xx(targets, kind):
    target = targets[kind]
    paths = _post_paths(target.app)
    errors: list[str] = []
    with httpx.Client(base_url=target.url, timeout=30) as client:

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(path=st.sampled_from(paths), body=st.one_of(json_values, mistyped()))
        def check(path: str, body: Any) -> None:
            r = client.post(path, json=body)
            if r.status_code >= 500:
                errors.append(f"POST {path} {str(body)[:150]} -> {r.status_code}: {r.text[:200]}")

        check()
    assert not errors, "\n".join(errors[:20])


def test_the_agent_still_works_after_the_fuzzing(targets):
    r = httpx.post(targets["responses_api_agents"].url + "/run", json=example_rows()[0], timeout=30)
    assert r.status_code == 200 and r.json()["reward"] == 1.0
    assert targets["responses_api_agents"].name == AGENT
