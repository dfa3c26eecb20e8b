"""ServerClient over replicas: sticky sessions, a dead replica skipped at once, an expired lease fails over or raises typed."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI

from gymctl.errors import ReplicaLostError
from gymctl.head.app import create_head_app
from gymctl.head.registry import Registry
from gymctl.server.client import ServerClient
from gymctl.server.registration import Registrar, registration_record
from tests.unit.test_client import echo_app, serve, shutdown


def slow_app(tag: str, release: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        await asyncio.wait_for(release.wait(), 30)
        return {"tag": tag}

    return app


async def registrar(head_url: str, client: ServerClient, port: int) -> Registrar:
    async def send(path, body):
        async with client.session.post(head_url + path, json=body) as r:
            return r.status

    record = registration_record(instance="echo", server_type="responses_api_models", impl="echo", url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)
    reg = Registrar(send, [record], interval_s=0.1, head_url=head_url)
    assert await reg.beat()
    return reg


@pytest.fixture
async def short_lease_head():
    server, task, port = await serve(create_head_app(None, Registry(lease_s=0.4)))
    yield f"http://127.0.0.1:{port}"
    await shutdown(server, task)


async def test_sessions_stick_and_spread_over_two_replicas(short_lease_head):
    head = short_lease_head
    (s1, t1, p1), (s2, t2, p2) = await serve(echo_app("one")), await serve(echo_app("two"))
    client = ServerClient(head)
    regs = [await registrar(head, client, p) for p in (p1, p2)]
    try:
        seen: dict[str, set[str]] = {}
        for call in range(3):
            for s in range(8):
                r = await client.post("echo", "/echo", json={"c": call}, affinity=f"rollout-{s}")
                seen.setdefault(f"rollout-{s}", set()).add(r.json()["tag"])
        assert all(len(tags) == 1 for tags in seen.values())
        assert set().union(*seen.values()) == {"one", "two"}
        # Cookies are the key when no affinity is given (a resources server's session).
        tags = {(await client.post("echo", "/echo", json={}, cookies={"session": "abc"})).json()["tag"] for _ in range(4)}
        assert len(tags) == 1
    finally:
        for reg in regs:
            await reg.stop(deregister=False)
        await client.close()
        await shutdown(s1, t1)
        await shutdown(s2, t2)


async def test_a_stopped_replica_is_skipped_at_once(short_lease_head):
    head = short_lease_head
    (s1, t1, p1), (s2, t2, p2) = await serve(echo_app("one")), await serve(echo_app("two"))
    client = ServerClient(head, retries=2)
    regs = [await registrar(head, client, p) for p in (p1, p2)]
    try:
        await shutdown(s1, t1)  # still registered and within its lease
        began = time.monotonic()
        tags = [(await client.post("echo", "/echo", json={}, affinity=f"s{i}")).json()["tag"] for i in range(10)]
        assert set(tags) == {"two"}
        assert time.monotonic() - began < 2.0  # no backoff sleeps: the other replica takes it at once
    finally:
        for reg in regs:
            await reg.stop(deregister=False)
        await client.close()
        await shutdown(s2, t2)


async def test_lease_expiry_cancels_in_flight_calls_and_fails_over(short_lease_head):
    head = short_lease_head
    release = asyncio.Event()
    (s1, t1, p1), (s2, t2, p2) = await serve(slow_app("hung", release)), await serve(echo_app("live"))
    client = ServerClient(head, watch_s=0.1)
    hung, live = await registrar(head, client, p1), await registrar(head, client, p2)
    live.start()
    try:
        await client.refresh()
        hung_replica = next(r for r in client.pools["echo"].replicas if r.url.endswith(f":{p1}"))
        keys = [f"s{i}" for i in range(20)]
        on_hung = [k for k in keys if client.pools["echo"].pick(k) is hung_replica]  # bind half the sessions to it
        assert on_hung
        began = time.monotonic()
        replies = await asyncio.gather(*(client.post("echo", "/echo", json={}, affinity=k) for k in on_hung))
        assert {r.json()["tag"] for r in replies} == {"live"}
        assert time.monotonic() - began < 5.0  # the hung replica's lease (0.4 s) expired; not its 30 s
        # With session cookies the call cannot move: a typed failure the collector records (and a rerun retries).
        await hung.beat()
        await client.refresh()
        client.pools["echo"].sticky["c=1"] = hung_replica
        with pytest.raises(ReplicaLostError, match=r"echo at http://127.0.0.1:\d+ was lost mid-call"):
            await client.post("echo", "/echo", json={}, cookies={"c": "1"})
    finally:
        release.set()
        await live.stop(deregister=False)
        await client.close()
        await shutdown(s1, t1)
        await shutdown(s2, t2)


async def test_the_agent_fails_a_rollout_whose_resources_replica_was_lost_with_503_and_the_reason(monkeypatch):
    from gymctl.config import load_config
    from gymctl.runtime import inprocess
    from gymctl.server.settings import ServerSettings
    from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, free_port

    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    cfg.head_port = free_port()
    dep = await inprocess.start(cfg, settings=ServerSettings(heartbeat_s=0.2))
    original = ServerClient.request

    async def lose_the_tool_call(self, method, server_name, path, **kw):
        if path == "/get_weather":  # not handed back to the model as a tool error: the session is gone
            raise ReplicaLostError(server_name, "http://10.0.0.9:8000", "its lease at the head expired")
        return await original(self, method, server_name, path, **kw)

    try:
        await inprocess.wait_ready(dep)
        monkeypatch.setattr(ServerClient, "request", lose_the_tool_call)
        r = await dep.client.post(AGENT, "/run", json=example_rows()[0])
        assert r.status == 503
        assert r.json() == {"detail": "example_single_tool_call at http://10.0.0.9:8000 was lost mid-call (its lease at the head expired); "
                                      "a rerun of the collection retries it", "error": "ReplicaLostError"}
    finally:
        monkeypatch.undo()
        await inprocess.stop(dep)
