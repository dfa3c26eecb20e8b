"""serve_one (one instance in this process, until stopped) and the ready pipe a child reports its URL on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gymctl.config.model import load_config
from gymctl.errors import UsageError
from gymctl.runtime.children import Child, OutputSink
from gymctl.runtime.serve import check_servable, serve_one
from gymctl.server.settings import ServerSettings
from tests.conftest import EXAMPLE_CONFIG, SCRIPTED_CONFIG

RESOURCES = "example_single_tool_call"


async def _read_line(fd: int, timeout_s: float = 10.0) -> bytes:
    """One line from a pipe's read end, without blocking the loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    try:
        return await asyncio.wait_for(reader.readline(), timeout_s)
    finally:
        transport.close()


async def test_serve_one_serves_an_instance_on_a_port_it_bound_and_reports_it(capfd):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    r, w = os.pipe()
    # No head answers here: the instance serves anyway and keeps trying to register in the background.
    settings = ServerSettings(head_url="http://127.0.0.1:9", port=None, ready_fd=w, heartbeat_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_one(cfg, RESOURCES, settings, stop=stop, tune_gc=False))
    report = json.loads(await _read_line(r))
    assert report["pid"] == os.getpid() and report["instance"] == RESOURCES
    port = int(report["url"].rsplit(":", 1)[1])
    assert port > 0
    async with aiohttp.ClientSession() as session, session.get(report["url"] + "/health") as resp:
        assert resp.status == 200 and (await resp.json())["instance"] == RESOURCES
    assert f"{RESOURCES}: serving at {report['url']} (pid {os.getpid()})" in capfd.readouterr().err  # the line for people
    stop.set()
    await asyncio.wait_for(task, 15)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(report["url"] + "/health")


def test_check_servable_names_the_instances_and_the_alias_owner():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    check_servable(cfg, "head")
    with pytest.raises(UsageError, match=r"instance 'nope' is not in the config .*or `head`"):
        check_servable(cfg, "nope")
    with pytest.raises(UsageError, match=r"is an alias of 'example_single_tool_call_simple_agent'"):
        check_servable(cfg, "example_single_tool_call_environment_server")


GARBLED = "serving at ??? (pid ?)"  # the human line, mangled: the URL must not come from it


async def _url_of(child: Child) -> str | None:
    await child.attach()
    code = await asyncio.wait_for(child.wait(), 15)
    assert code == 0, list(child.tail)
    await asyncio.sleep(0)  # let the ready reader finish its line
    child.close()
    return child.url


async def test_a_spawned_child_reports_its_url_on_the_ready_fd_not_on_its_output():
    script = (
        "import json, os, sys\n"
        f"print({GARBLED!r}, file=sys.stderr, flush=True)\n"
        "fd = int(os.environ['GYMCTL_READY_FD'])\n"
        "os.write(fd, json.dumps({'url': 'http://127.0.0.1:4242', 'pid': os.getpid()}).encode() + b'\\n')\n"
    )
    child = Child("x", [sys.executable, "-c", script], dict(os.environ), sink=OutputSink(width=1))
    child.spawn()
    assert await _url_of(child) == "http://127.0.0.1:4242"
    assert GARBLED in child.tail


async def test_a_forked_child_gets_its_ready_fd_as_an_argument():
    def run(ready_fd: int) -> int:
        print(GARBLED, file=sys.stderr)
        os.write(ready_fd, b'{"url": "http://127.0.0.1:4343", "pid": 1}\n')
        return 0

    child = Child("y", [sys.executable], dict(os.environ), sink=OutputSink(width=1))
    child.fork(run, close_fds=[])
    assert await _url_of(child) == "http://127.0.0.1:4343"


async def test_a_child_that_never_reports_has_no_url():
    child = Child("z", [sys.executable, "-c", "print('serving at http://127.0.0.1:1 (pid 1)')"], dict(os.environ), sink=OutputSink(width=1))
    child.spawn()
    assert await _url_of(child) is None  # printing the human line is not reporting


def test_a_mounted_config_with_a_top_level_secret_the_container_lacks_loads(tmp_path, monkeypatch):
    """The head's container gets no model secret: a top-level `${oc.env:VAR}` it cannot resolve is kept as written."""
    from gymctl.runtime.serve import load_mounted

    monkeypatch.delenv("GYMCTL_TEST_ABSENT_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    mounted = tmp_path / "config.yaml"
    mounted.write_text(
        "policy_api_key: ${oc.env:GYMCTL_TEST_ABSENT_KEY}\n"
        "r:\n  resources_servers:\n    example_single_tool_call:\n      entrypoint: app.py\n"
    )
    cfg = load_mounted(str(mounted), [], "head")
    assert list(cfg.instances) == ["r"]


@contextlib.asynccontextmanager
async def draining_replica(drain_s: float) -> AsyncIterator[tuple[str, str, asyncio.Event, asyncio.Task[Any], aiohttp.ClientSession]]:
    """A head and one resources replica that drains `drain_s` when told to stop: (head URL, its URL, its stop event,
    its task, a session with the token); both stopped after."""
    from gymctl.server.serving import free_port

    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    head_port = free_port()
    head_url = f"http://127.0.0.1:{head_port}"
    head_stop, stop = asyncio.Event(), asyncio.Event()
    head = asyncio.create_task(serve_one(cfg, "head", ServerSettings(port=head_port, auth_token="drain-test"), stop=head_stop, tune_gc=False))
    r, w = os.pipe()
    settings = ServerSettings(head_url=head_url, port=None, ready_fd=w, heartbeat_s=0.2, auth_token="drain-test", drain_s=drain_s)
    task = asyncio.create_task(serve_one(cfg, RESOURCES, settings, stop=stop, tune_gc=False))
    try:
        url = json.loads(await _read_line(r))["url"]
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer drain-test"}) as session:
            yield head_url, url, stop, task, session
    finally:
        stop.set()
        head_stop.set()
        await asyncio.gather(task, head, return_exceptions=True)


async def test_a_stopping_instance_with_a_drain_deregisters_first_and_serves_until_the_drain_ends():
    # A swarm replica scaled away: callers re-read the head's listing every second, so for that long they may still
    # pick it; it must answer them until then (GYMCTL_DRAIN_S), and be off the listing meanwhile.
    async with draining_replica(1.5) as (head_url, url, stop, task, session):
        async def listed() -> bool:
            async with session.get(f"{head_url}/server_instances") as resp:
                return any(i["url"] == url for i in await resp.json())

        for _ in range(100):
            if await listed():
                break
            await asyncio.sleep(0.05)
        assert await listed()
        stop.set()
        for _ in range(20):
            if not await listed():
                break
            await asyncio.sleep(0.05)
        assert not await listed()  # deregistered at once
        async with session.get(url + "/health") as resp:
            assert resp.status == 200  # ... and still serving
        await asyncio.wait_for(task, 15)
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/health")


async def test_a_draining_instance_serves_on_while_callers_still_send_it_requests_and_stops_when_they_stop():
    # On a loaded machine a caller's re-read of the listing comes late: a replica that closed once its 1.5 s drain
    # was over would reset the calls still coming (seen as 'lost the connection during POST'). It serves on.
    async with draining_replica(1.5) as (_head_url, url, stop, task, session):
        stop.set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:  # a stale caller, past the drain's 1.5 s
            async with session.get(url + "/health") as resp:
                assert resp.status == 200, time.monotonic() - t0
            assert not task.done()
            await asyncio.sleep(0.25)
        await asyncio.wait_for(task, 3.0)  # the calls stopped: it stops about a second later (not at the 4.5 s limit)
        assert time.monotonic() - t0 < 4.4
