"""The head's /ui: the first HTML response lists every instance (no script needed), reloads itself, and shows a dead one red."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from gymctl.config.model import load_config
from gymctl.head.ui import RequestCounts, _totals, render_page
from gymctl.runtime import embedded, inprocess
from tests.conftest import AGENT, EXAMPLE_CONFIG, SCRIPTED_CONFIG

SERVED = {"example_single_tool_call", "policy_model", AGENT}


def row_classes(page: str) -> dict[str, str]:
    return dict((name, cls) for cls, name in re.findall(r'<tr class="(\w+)" data-instance="([^"]+)"', page))


async def get(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/html")
        return await r.text()


async def test_the_page_lists_every_instance_and_turns_a_dead_one_red():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    dep = await embedded.start_embedded(cfg)
    try:
        async with aiohttp.ClientSession() as session:
            page = await get(session, dep.head_url + "/ui")
            assert '<meta http-equiv="refresh" content="2">' in page and "<script" not in page and "http" not in page.split("<body>")[0].replace(
                "http-equiv", "")
            assert row_classes(page) == {name: "ok" for name in SERVED}
            assert "instances healthy" in page
            dead = dep.servers["example_single_tool_call"]
            dead.server.should_exit = True  # the server stops answering (its registration is still current)
            await asyncio.wait_for(dead.task, 15)  # type: ignore[arg-type]
            page = await get(session, dep.head_url + "/ui")
            classes = row_classes(page)
            assert classes["example_single_tool_call"] == "bad" and classes["policy_model"] == "ok"
            assert "probe: unreachable" in page and 'class="summary bad"' in page
            async with session.get(dep.head_url + "/ui/instances") as r:
                rows = {row["instance"]: row for row in await r.json()}
            assert rows["example_single_tool_call"]["healthy"] is False and rows["policy_model"]["rtt_ms"] is not None
    finally:
        await inprocess.stop(dep)


def test_expected_instances_that_never_registered_are_listed_red_and_text_is_escaped():
    rows = [{"instance": "<b>x</b>", "server_type": "resources_servers", "impl": "i", "host": "h", "url": "http://h:1", "healthy": False,
             "status": "not registered", "uptime_s": None, "rtt_ms": None, "requests_per_s": None, "errors_5xx": None, "last_error": "a<b"}]
    page = render_page(rows, expected=2, registered=1)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page and "a&lt;b" in page
    assert "1 of 2 expected registered" in page


def test_request_rate_comes_from_two_looks_at_the_counters():
    counts = RequestCounts()
    assert counts.rate("u", 100, 0, now=10.0) is None
    assert counts.rate("u", 160, 1, now=12.0) == 30.0
    text = 'gymctl_http_requests_total{method="POST",route="/run",status="200"} 7.0\ngymctl_http_requests_total{method="POST",route="/run",status="502"} 2.0\n'
    assert _totals(text) == (9.0, 2.0)
