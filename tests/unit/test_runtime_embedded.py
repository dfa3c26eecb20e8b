"""Embedded deployments: collect's head binds port 0 and everything registers at the port it got; settings precede the config."""

from __future__ import annotations

import socket

import aiohttp

from gymctl.config.model import load_config
from gymctl.rollouts import CollectSpec
from gymctl.runtime import embedded, inprocess
from gymctl.server.settings import ServerSettings
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, SCRIPTED_CONFIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_embedded_head_binds_port_0_and_servers_register_at_the_real_url(monkeypatch):
    monkeypatch.setenv("GYMCTL_HEAD_URL", "http://127.0.0.1:9")  # one server's variable: an embedded deployment ignores it
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    dep = await embedded.start_embedded(cfg)
    try:
        port = int(dep.head_url.rsplit(":", 1)[1])
        assert port not in (0, 9, 11000) and cfg.head_port == port
        assert dep.registrar is not None and dep.registrar.head_url == dep.head_url
        async with aiohttp.ClientSession() as session, session.get(dep.head_url + "/server_instances") as r:
            names = {i["process_name"] for i in await r.json()}
        assert AGENT in names and "policy_model" in names
        assert dep.client is not None and dep.client.head_url == dep.head_url
    finally:
        await inprocess.stop(dep)


async def test_collect_with_no_head_starts_the_deployment_here_and_stops_it_after(tmp_path):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", limit=2)
    started: list[str] = []
    absent = f"http://127.0.0.1:{free_port()}"
    result = await embedded.collect(spec, absent, cfg, start_if_absent=True, head_wait_s=2, on_started=lambda dep, s: started.append(dep.head_url))
    assert result.in_process and result.summary.written == 2 and result.summary.failed == 0
    assert started and started[0] != absent
    async with aiohttp.ClientSession() as session:  # stopped after the collection
        assert not await embedded.head_alive(session, started[0], timeout_s=0.5)


async def test_an_explicit_head_url_beats_the_environment_which_beats_the_config(monkeypatch):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], ["head_server.port=12345"])
    names = ["example_single_tool_call"]
    heads = []
    for env, explicit in ((None, None), ("http://127.0.0.1:23456", None), ("http://127.0.0.1:23456", "http://127.0.0.1:34567")):
        if env:
            monkeypatch.setenv("GYMCTL_HEAD_URL", env)
        settings = ServerSettings(head_url=explicit) if explicit else ServerSettings()
        dep = await inprocess.start(cfg, names, with_head=False, settings=settings)
        heads.append(dep.head_url)
        await inprocess.stop(dep)
    assert heads == ["http://127.0.0.1:12345", "http://127.0.0.1:23456", "http://127.0.0.1:34567"]
