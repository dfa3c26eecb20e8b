"""In-process calls straight to the route (gymctl.server.direct) answer as the served app answers over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gymctl.server.asgi_dispatch import asgi_request
from gymctl.server.client import ServerClient
from gymctl.server.direct import DirectApp
from gymctl.server.kit import ServerKit, add_health_routes, new_app, wrap_app
from gymctl.server.serving import bind_socket, make_server

TOKEN = "s3cret-token"
AUTH = [(b"authorization", f"Bearer {TOKEN}".encode())]
JSON = [(b"content-type", b"application/json")]


class Weather(BaseModel):
    city: str
    days: int = 1


class Conflict(Exception):
    pass


def probe_app(gate: asyncio.Event) -> FastAPI:
    """A server with what a real one has: a validated body, cookies, HTTPException, a custom handler, a crash."""
    app = new_app("probe")
    router = APIRouter()

    @app.exception_handler(Conflict)
    async def conflict(request: Request, e: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(e), "error": "Conflict"}, status_code=409)

    @router.post("/get_weather")
    async def get_weather(body: Weather) -> dict[str, Any]:
        return {"city": body.city, "days": body.days, "weather_description": "cold"}

    @router.post("/seed_session")
    async def seed_session(request: Request, response: Response) -> dict[str, Any]:
        response.set_cookie("gymctl_session", request.cookies.get("gymctl_session") or "fresh")
        return {"seen": request.cookies.get("gymctl_session")}

    @router.post("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418, detail="short and stout")

    @router.post("/conflict")
    async def conflicting() -> None:
        raise Conflict("already seeded")

    @router.post("/boom")
    async def boom() -> None:
        raise RuntimeError("handler bug")

    @router.post("/verify")  # only the Request, a Response back (a server's /run, /verify, model calls): the endpoint is called directly
    async def verify(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or "response" not in body:
            raise HTTPException(status_code=422, detail="needs response")
        if body["response"] == "crash":
            raise RuntimeError("verify bug")
        if body["response"] == "conflict":
            raise Conflict("verified twice")
        reply = Response(b'{"reward": 1.0}', media_type="application/json")
        reply.set_cookie("verified", request.cookies.get("gymctl_session") or "none")
        return reply

    @router.post("/echo_dict")  # only the Request, a plain value back: FastAPI's JSON for it
    async def echo_dict(request: Request):  # type: ignore[no-untyped-def]
        return {"seen": (await request.body()).decode(), "q": None, "n": [1, 2.5]}

    @router.post("/wait")
    async def wait() -> dict[str, Any]:
        await gate.wait()
        return {}

    app.include_router(router)
    add_health_routes(app, ServerKit(instance="probe", server_type="resources_servers", impl="probe", client=ServerClient(None)))
    return app


@dataclass
class Served:
    direct: DirectApp
    url: str
    app: FastAPI
    gate: asyncio.Event


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("GYMCTL_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("GYMCTL_MAX_CONCURRENCY", "2")
    gate = asyncio.Event()
    app = probe_app(gate)
    wrapped = wrap_app(app, TOKEN)  # as gymctl.runtime.inprocess serves it: one object on the socket and in-process
    sock = bind_socket("127.0.0.1", 0, "test")
    server = make_server(wrapped)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield Served(DirectApp(wrapped), f"http://127.0.0.1:{sock.getsockname()[1]}", app, gate)
    finally:
        gate.set()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task


def _cookies(headers: list[tuple[bytes, bytes]]) -> list[str]:
    return sorted(v.decode() for k, v in headers if k.lower() == b"set-cookie")


async def over_http(url: str, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, list[str], str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session, session.request(
            method, url + path, data=body, headers={k.decode(): v.decode() for k, v in headers}) as r:
        return r.status, await r.read(), sorted(r.headers.getall("Set-Cookie", [])), r.headers.get("content-type", "")


async def in_process(app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, list[str], str]:
    status, out, data = await asgi_request(app, method, path, body, headers)
    ctype = next((v.decode() for k, v in out if k.lower() == b"content-type"), "")
    return status, data, _cookies(out), ctype


CASES = [
    ("good", "POST", "/get_weather", b'{"city": "Oslo"}', AUTH + JSON),
    ("invalid body", "POST", "/get_weather", b'{"town": 3}', AUTH + JSON),
    ("wrong type", "POST", "/get_weather", b'{"city": "Oslo", "days": "many"}', AUTH + JSON),
    ("not JSON", "POST", "/get_weather", b'{"city": ', AUTH + JSON),
    ("unknown route", "POST", "/no_such_tool", b"{}", AUTH + JSON),
    ("wrong method", "GET", "/get_weather", b"", AUTH),
    ("HTTPException", "POST", "/teapot", b"{}", AUTH + JSON),
    ("custom handler", "POST", "/conflict", b"{}", AUTH + JSON),
    ("500 from a handler", "POST", "/boom", b"{}", AUTH + JSON),
    ("new session cookie", "POST", "/seed_session", b"{}", AUTH + JSON),
    ("cookie round trip", "POST", "/seed_session", b"{}", [*AUTH, *JSON, (b"cookie", b"gymctl_session=abc123")]),
    ("auth missing", "POST", "/get_weather", b'{"city": "Oslo"}', JSON),
    ("wrong token", "POST", "/get_weather", b'{"city": "Oslo"}', [(b"authorization", b"Bearer nope"), *JSON]),
    ("liveness needs no token", "GET", "/health", b"", []),
    ("request-only route", "POST", "/verify", b'{"response": {}}', [*AUTH, *JSON, (b"cookie", b"gymctl_session=abc123")]),
    ("request-only HTTPException", "POST", "/verify", b"{}", AUTH + JSON),
    ("request-only custom handler", "POST", "/verify", b'{"response": "conflict"}', AUTH + JSON),
    ("request-only 500", "POST", "/verify", b'{"response": "crash"}', AUTH + JSON),
    ("request-only body not JSON", "POST", "/verify", b"{nope", AUTH + JSON),
    ("request-only plain value", "POST", "/echo_dict", b"hello", AUTH + JSON),
    ("request-only without the token", "POST", "/verify", b'{"response": {}}', JSON),
    ("body over the limit", "POST", "/get_weather", b'{"city": "' + b"x" * 5000 + b'"}', AUTH + JSON),
]


async def test_every_request_gets_the_same_status_body_and_cookies_in_process_as_over_http(served: Served):
    metrics = served.app.state.metrics
    for name, method, path, body, headers in CASES:
        http = await over_http(served.url, method, path, body, headers)
        first = await in_process(served.direct, method, path, body, headers)  # the first call of a route is checked against FastAPI's routing
        direct = await in_process(served.direct, method, path, body, headers)  # ... later ones go straight to the route
        assert first == http, name
        assert direct == http, name
    assert http[0] == 413
    table = served.direct.table
    assert table is not None and table[("POST", "/get_weather")].checked  # the straight path was the one taken
    assert table[("POST", "/verify")].endpoint is not None and table[("POST", "/get_weather")].endpoint is None  # called directly / by FastAPI
    assert metrics.http.counts[("/verify", "POST", 200)] == 3 and metrics.http.counts[("/verify", "POST", 500)] == 6  # a crash, bad JSON
    # Counted by the metrics middleware as over HTTP: every (route, method, status) once per call, in both ways.
    assert metrics.http.counts[("/get_weather", "POST", 200)] == 3
    assert metrics.http.counts[("/get_weather", "POST", 422)] == 3 * 3  # invalid body, wrong type, not JSON
    assert metrics.http.counts[("/boom", "POST", 500)] == 3
    assert metrics.http.counts[("/seed_session", "POST", 200)] == 6


async def test_the_status_codes_users_see(served: Served):
    async def status(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        await asgi_request(served.direct, "POST", path, body, headers)
        s, _, data = await asgi_request(served.direct, "POST", path, body, headers)
        return s, data

    assert (await status("/get_weather", b'{"town": 3}', AUTH + JSON))[0] == 422
    assert b"city" in (await status("/get_weather", b'{"town": 3}', AUTH + JSON))[1]  # names the missing field
    assert await status("/boom", b"{}", AUTH + JSON) == (500, b"Internal Server Error")
    assert (await status("/get_weather", b"{}", JSON))[0] == 401
    s, _, data = await asgi_request(served.direct, "POST", "/seed_session", b"{}", [*AUTH, *JSON, (b"cookie", b"gymctl_session=abc123")])
    assert s == 200 and data == b'{"seen":"abc123"}'


async def test_in_process_and_http_calls_share_one_admission_limit(served: Served):
    held = [asyncio.create_task(asgi_request(served.direct, "POST", "/wait", b"{}", AUTH + JSON)) for _ in range(2)]
    await asyncio.sleep(0.05)
    status, headers, _ = await asgi_request(served.direct, "POST", "/get_weather", b'{"city": "Oslo"}', AUTH + JSON)
    assert status == 503 and (b"retry-after", b"1") in headers
    http = await over_http(served.url, "POST", "/get_weather", b'{"city": "Oslo"}', AUTH + JSON)
    assert http[0] == 503  # the limit holds in-process callers and socket callers together
    served.gate.set()
    assert [t[0] for t in await asyncio.gather(*held)] == [200, 200]
    assert (await in_process(served.direct, "POST", "/get_weather", b'{"city": "Oslo"}', AUTH + JSON))[0] == 200


async def test_server_client_waits_out_a_busy_in_process_server(served: Served):
    client = ServerClient(None, token=TOKEN, local={"probe": served.direct})
    held = [asyncio.create_task(client.post("probe", "/wait", json={})) for _ in range(2)]
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(client.post("probe", "/get_weather", json={"city": "Oslo"}))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # turned away (503 + Retry-After) and waiting, not failed
    served.gate.set()
    r = await waiting
    assert r.status == 200 and r.json()["city"] == "Oslo"
    assert [h.status for h in await asyncio.gather(*held)] == [200, 200]
    await client.close()


async def test_served_over_a_socket_it_answers_as_the_full_stack_does(served: Served):
    """DirectApp is also what uvicorn serves (gymctl.runtime.inprocess): the same replies as the plain stack over HTTP."""
    sock = bind_socket("127.0.0.1", 0, "test")
    server = make_server(served.direct)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    direct_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        for name, method, path, body, headers in CASES:
            plain = await over_http(served.url, method, path, body, headers)
            for _ in range(2):  # the first call of a route goes through the stack and checks FastAPI's choice
                assert await over_http(direct_url, method, path, body, headers) == plain, name
        table = served.direct.table
        assert table is not None and table[("POST", "/get_weather")].checked
        assert served.app.state.metrics.http.counts[("/get_weather", "POST", 200)] == 3
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
