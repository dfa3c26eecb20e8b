"""Admission middleware and the per-process connection budget (gymctl.server.admission, gymctl.server.capacity)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gymctl.errors import ConfigError, UsageError
from gymctl.rollouts import CollectSpec
from gymctl.server.admission import AdmissionMiddleware
from gymctl.server.asgi_dispatch import asgi_request
from gymctl.server.capacity import capacity, client_connections_fit, open_files_limit, reserve_files
from gymctl.server.client import retry_after
from gymctl.server.settings import ServerSettings
from tests.conftest import EXAMPLE_DATA


def slow_app(gate: asyncio.Event):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":  # served by uvicorn in one test
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_at_the_limit_the_next_request_gets_503_retry_after_and_close_and_probes_still_pass():
    gate = asyncio.Event()
    admission = AdmissionMiddleware(slow_app(gate), limit=3, retry_after_s=2)
    held = [asyncio.create_task(asgi_request(admission, "POST", "/run", b"{}", [])) for _ in range(3)]
    await asyncio.sleep(0.01)
    status, headers, body = await asgi_request(admission, "POST", "/run", b"{}", [])
    assert status == 503
    assert dict(headers)[b"retry-after"] == b"2" and dict(headers)[b"connection"] == b"close"
    assert b"GYMCTL_MAX_CONCURRENCY" in body
    probe = asyncio.create_task(asgi_request(admission, "GET", "/health", b"", []))  # admitted past the limit
    await asyncio.sleep(0.01)
    assert admission.in_flight == 3 and admission.rejected == 1
    gate.set()
    assert [s for s, _, _ in await asyncio.gather(*held, probe)] == [200] * 4
    assert admission.in_flight == 0 and admission.peak == 3
    assert (await asgi_request(admission, "POST", "/run", b"{}", []))[0] == 200  # a slot freed is a slot admitted


def test_the_budget_splits_the_open_files_between_requests_in_and_calls_out():
    cap = capacity(open_files=20_000)
    assert cap.upstream_connections + cap.max_concurrency <= 20_000 - reserve_files(20_000)
    assert cap.in_flight >= 9_000  # 10,000 in flight on a 20,000-file machine: >= 90% of them admitted at once
    assert capacity(upstream_connections=64, open_files=20_000).max_concurrency > cap.max_concurrency  # a small LLM bound leaves more for requests
    assert capacity(max_concurrency=50, open_files=20_000).max_concurrency == 50


def test_busy_means_503_with_retry_after_only():
    assert retry_after(503, {"Retry-After": "1"}) == 1.0
    assert retry_after(503, {}) is None  # a lost replica's 503 is an answer, not "try again"
    assert retry_after(200, {"Retry-After": "1"}) is None
    assert retry_after(503, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}) == 1.0


@pytest.mark.parametrize("var", ["GYMCTL_MAX_CONCURRENCY", "GYMCTL_UPSTREAM_CONNECTIONS"])
@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_bad_limits_in_the_environment_are_config_errors(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        ServerSettings.from_env()


def test_a_concurrency_past_the_open_files_limit_is_refused_with_the_limit_and_what_to_do(tmp_path):
    too_many = open_files_limit()
    with pytest.raises(UsageError) as e:
        client_connections_fit(too_many)
    text = str(e.value)
    assert f"--concurrency {too_many}" in text and f"{open_files_limit():,}" in text and "ulimit -Hn" in text
    spec = CollectSpec(agent="a", input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", concurrency=too_many)
    spec.check()  # a collector on its own spreads what one process cannot hold over processes (tests/unit/test_workers.py)


async def test_new_connections_to_one_upstream_are_opened_a_few_at_a_time(monkeypatch):
    import aiohttp

    from gymctl.server.connector import PacedConnector

    opening = peak = 0

    async def slow_connect(self, req, traces, timeout):
        nonlocal opening, peak
        opening += 1
        peak = max(peak, opening)
        await asyncio.sleep(0.01)
        opening -= 1
        raise aiohttp.ClientConnectionError("no server in this test")

    monkeypatch.setattr(aiohttp.TCPConnector, "_create_connection", slow_connect)
    async with aiohttp.ClientSession(connector=PacedConnector(limit=0, connects_per_host=4)) as session:

        async def one(port: int) -> None:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{port}/")

        await asyncio.gather(*(one(9) for _ in range(40)), *(one(10) for _ in range(40)))
    assert peak == 8  # 4 per host:port, two hosts


async def test_idle_connections_to_other_hosts_give_way_so_open_ones_stay_within_the_limit():
    from aiohttp import web

    from gymctl.server.connector import PacedConnector

    async def ok(request):
        return web.Response(text="ok")

    runners, urls = [], []
    for _ in range(2):
        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/")
    connector = PacedConnector(limit=6)
    try:
        import aiohttp

        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(url: str) -> None:
                async with session.get(url) as r:
                    await r.read()

            await asyncio.gather(*(get(urls[0]) for _ in range(6)))  # 6 idle connections to the first host
            await asyncio.gather(*(get(urls[1]) for _ in range(6)))  # 6 to the second: the idle ones give way
            idle = sum(len(c) for c in connector._conns.values())
            assert idle + len(connector._acquired) <= 6
    finally:
        for runner in runners:
            await runner.cleanup()


def test_a_concurrency_the_process_cannot_hold_with_the_deployment_inside_is_refused_before_it_starts(capsys, tmp_path):
    from tests.conftest import AGENT, EXAMPLE_CONFIG, SCRIPTED_CONFIG, free_port
    from tests.unit.test_collect_run import cli

    too_many = open_files_limit() // 2  # fits alone, not three connections per rollout
    code, _, err = cli(capsys, "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={free_port()}", "--agent", AGENT,
                       "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "o.jsonl"), "--concurrency", str(too_many))
    assert code == 2
    assert f"--concurrency {too_many}: with the deployment in this process each rollout holds 3 connections" in err
    assert "start the deployment on its own" in err and "Traceback" not in err


async def test_server_client_waits_out_a_busy_server_within_the_callers_timeout():
    from gymctl.server.client import ServerClient
    from gymctl.server.serving import bind_socket, make_server

    gate = asyncio.Event()
    admission = AdmissionMiddleware(slow_app(gate), limit=1, retry_after_s=0)
    sock = bind_socket("127.0.0.1", 0, "test")
    server = make_server(admission)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.005)
    client = ServerClient(None, routes={"busy": [f"http://127.0.0.1:{sock.getsockname()[1]}"]})
    try:
        first = asyncio.create_task(client.post("busy", "/x", json={}))
        await asyncio.sleep(0.1)
        r = await client.post("busy", "/x", json={}, timeout=0.5)  # the slot stays taken: 503 once the timeout is near
        assert r.status == 503 and admission.rejected >= 2
        later = asyncio.create_task(client.post("busy", "/x", json={}))
        await asyncio.sleep(0.2)
        gate.set()  # the slot frees: the waiting call gets in
        assert (await first).status == 200 and (await later).status == 200
    finally:
        await client.close()
        server.should_exit = True
        await task
