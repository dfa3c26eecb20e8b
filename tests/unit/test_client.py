"""ServerClient: routing by name through a real head, re-resolution after a restart, bounded retries."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from gymctl.errors import HeadUnreachableError, ServerError
from gymctl.head.app import create_head_app
from gymctl.server.client import ServerClient
from gymctl.server.registration import Registrar, registration_record
from gymctl.server.serving import bind_socket, make_server
from tests.conftest import free_port


async def serve(app, port: int | None = None):
    sock = bind_socket("127.0.0.1", port, "test")
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.005)
    return server, task, sock.getsockname()[1]


async def shutdown(server, task):
    server.should_exit = True
    await task


def echo_app(tag: str) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return {"tag": tag, **body}

    return app


async def register(head_url: str, name: str, port: int) -> None:
    client = ServerClient(head_url)

    async def send(path, body):
        async with client.session.post(head_url + path, json=body) as r:
            return r.status

    record = registration_record(instance=name, server_type="resources_servers", impl="echo", url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
    reg = Registrar(send, [record], head_url=head_url)
    assert await reg.beat()
    await client.close()


@pytest.fixture
async def head():
    server, task, port = await serve(create_head_app(None))
    yield f"http://127.0.0.1:{port}"
    await shutdown(server, task)


async def test_routes_by_name_and_follows_a_restart_to_a_new_port(head):
    s1, t1, p1 = await serve(echo_app("first"))
    await register(head, "echo", p1)
    client = ServerClient(head)
    try:
        assert (await client.post("echo", "/echo", json={"x": 1})).json() == {"tag": "first", "x": 1}
        await shutdown(s1, t1)
        # The instance comes back elsewhere and registers; the deregistration of the old one never happened.
        s2, t2, p2 = await serve(echo_app("second"))
        await client.session.post(head + "/deregister", json={"process_name": "echo", "url": f"http://127.0.0.1:{p1}"})
        await register(head, "echo", p2)
        r = await client.post("echo", "/echo", json={"x": 2})
        assert r.json() == {"tag": "second", "x": 2}
        await shutdown(s2, t2)
    finally:
        await client.close()


async def test_unreachable_server_fails_after_bounded_retries(head):
    port = free_port()
    await register(head, "ghost", port)
    client = ServerClient(head, retries=2, retry_window_s=0.5)
    try:
        with pytest.raises(ServerError, match=r"ghost at http://127.0.0.1:.* unreachable after \d+ attempts over 0\.\d s"):
            await client.post("ghost", "/x", json={})
    finally:
        await client.close()


async def test_head_unreachable_says_where_and_how_long():
    client = ServerClient(f"http://127.0.0.1:{free_port()}", head_wait_s=0.5)
    try:
        with pytest.raises(HeadUnreachableError, match=r"head at http://127.0.0.1:\d+ unreachable after \d+ s"):
            await client.post("anything", "/x", json={})
    finally:
        await client.close()


async def test_cached_routes_survive_a_head_outage():
    hs, ht, hp = await serve(create_head_app(None))
    head = f"http://127.0.0.1:{hp}"
    s1, t1, p1 = await serve(echo_app("up"))
    await register(head, "echo", p1)
    client = ServerClient(head)
    try:
        assert (await client.post("echo", "/echo", json={})).ok
        await shutdown(hs, ht)  # the head dies
        assert (await client.post("echo", "/echo", json={"during": "outage"})).json()["during"] == "outage"
    finally:
        await client.close()
        await shutdown(s1, t1)


async def test_a_server_restarting_on_its_port_is_waited_for(head):
    port = free_port()
    await register(head, "slow", port)
    client = ServerClient(head, retries=1, retry_window_s=10)

    async def come_up_later():
        await asyncio.sleep(1.5)
        return await serve(echo_app("back"), port)

    later = asyncio.create_task(come_up_later())
    try:
        r = await client.post("slow", "/echo", json={"n": 1})
        assert r.json() == {"tag": "back", "n": 1}
    finally:
        await client.close()
        server, task, _ = await later
        await shutdown(server, task)


async def test_routes_prefer_healthy_registrations(head):
    s1, t1, p1 = await serve(echo_app("live"))
    dead_port = free_port()
    client = ServerClient(head)
    try:
        # Two registrations of one name; the dead one's lease expires, the live one keeps renewing.
        await register(head, "echo", dead_port)
        await register(head, "echo", p1)
        items = await client.instances()
        assert len([i for i in items if i["process_name"] == "echo"]) == 2
        client._refreshed_at = 0
        # Simulate the head's verdict: expired for the dead one.
        fake = [dict(i, status="unhealthy" if i["port"] == dead_port else "healthy") for i in items]

        async def instances():
            return fake

        client.instances = instances  # type: ignore[method-assign]
        await client.refresh()
        assert client.routes["echo"] == [f"http://127.0.0.1:{p1}"]
        for _ in range(4):
            assert (await client.post("echo", "/echo", json={})).json()["tag"] == "live"
    finally:
        await client.close()
        await shutdown(s1, t1)


async def test_a_peer_that_resets_mid_reply_is_a_typed_server_error_not_a_raw_aiohttp_one():
    """A model worker killed while the reply is awaited resets the connection: the caller gets ServerError (the agent's 502)."""
    import socket
    import struct

    async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST
        writer.transport.abort()

    server = await asyncio.start_server(reset_after_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ServerClient(None, routes={"policy_model": [f"http://127.0.0.1:{port}"]})
    try:
        with pytest.raises(ServerError, match=r"policy_model at http://127\.0\.0\.1:\d+ failed during POST /v1/responses|lost the connection during POST /v1/responses"):
            await client.post("policy_model", "/v1/responses", json={"input": "hi"})
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
