"""Limits on a real uvicorn server: idle and slow connections are closed (slowloris), big bodies get 413 unread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gymctl.head.app import create_head_app
from gymctl.server.kit import wrap_app
from gymctl.server.limits import BodyLimitMiddleware, http_protocol
from gymctl.server.serving import QuietServer, bind_socket
from gymctl.server.settings import ServerSettings

TIMEOUT_S = 0.6
CAP = 64 * 1024


def slow_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"n": len(body)}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(TIMEOUT_S * 2)  # a handler may take longer than the request deadline
        return {"status": "done"}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_in_thread(app: Any) -> Iterator[str]:
    import uvicorn

    sock = bind_socket("127.0.0.1", 0, "test")
    config = uvicorn.Config(app, lifespan="off", log_level="critical", http=http_protocol(TIMEOUT_S), loop="none")
    server = QuietServer(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    yield from serve_in_thread(BodyLimitMiddleware(slow_app(), CAP))


def connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    return s


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (recv returned b""), or None if it stayed open."""
    t0 = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return time.monotonic() - t0
    except TimeoutError:
        return None
    except ConnectionResetError:
        return time.monotonic() - t0
    finally:
        s.close()


@pytest.mark.parametrize("sent", [b"", b"POST /echo HTTP/1.1\r\nHost: x\r\n", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":"])
def test_connection_that_does_not_finish_its_request_is_closed(address, sent):
    s = connect(address)
    s.sendall(sent)
    took = closed_within(s, TIMEOUT_S * 8)
    assert took is not None, "the server kept an unfinished request's connection open"
    assert took < TIMEOUT_S * 4


def test_many_idle_connections_are_dropped_and_the_server_keeps_answering(address):
    idle = [connect(address) for _ in range(100)]
    time.sleep(TIMEOUT_S * 2.5)
    for s in idle:
        assert closed_within(s, 2) is not None
    assert httpx.get(f"http://{address}/livez", timeout=5).status_code == 200


def test_slow_handler_and_keep_alive_are_not_cut(address):
    with httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        assert client.get("/slow").json() == {"status": "done"}
        assert client.post("/echo", json={"a": 1}).json() == {"n": 1}  # same pooled connection, after the deadline


def test_declared_body_over_the_cap_gets_413_before_it_is_sent(address):
    s = connect(address)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
    s.settimeout(5)
    reply = b""
    while chunk := s.recv(65536):  # the server answers, then closes (connection: close)
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"GYMCTL_MAX_BODY_BYTES" in reply


def test_chunked_body_over_the_cap_gets_413(address):
    def chunks() -> Iterator[bytes]:
        yield b'{"a":"'
        for _ in range(64):
            yield b"x" * 4096
        yield b'"}'

    r = httpx.post(f"http://{address}/echo", content=chunks(), headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 413


def test_bodies_under_the_cap_pass(address):
    r = httpx.post(f"http://{address}/echo", json={"a": "x" * (CAP // 2)}, timeout=10)
    assert r.json() == {"n": 1}


def test_head_register_with_a_huge_body_is_refused_and_not_served_back(monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("GYMCTL_MAX_BODY_BYTES", str(CAP))
    client = TestClient(wrap_app(create_head_app(None), None))
    big = {"process_name": "x", "server_type": "resources_servers", "name": "y", "url": "http://10.0.0.1:8000",
           "host": "10.0.0.1", "port": 8000, "dir_path": "z" * (CAP * 2)}
    assert client.post("/register", json=big).status_code == 413
    assert client.get("/server_instances").json() == []


def test_limits_are_settings():
    settings = ServerSettings(max_body_bytes=10, request_timeout_s=1.5)
    assert (settings.max_body_bytes, settings.request_timeout_s) == (10, 1.5)
    from gymctl.errors import ConfigError

    for bad in ({"GYMCTL_REQUEST_TIMEOUT_S": "inf"}, {"GYMCTL_MAX_BODY_BYTES": "0"}):
        with pytest.MonkeyPatch.context() as mp:
            for k, v in bad.items():
                mp.setenv(k, v)
            with pytest.raises(ConfigError):
                ServerSettings.from_env()
