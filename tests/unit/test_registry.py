"""Leases and self-healing registration: unhealthy after the lease, dropped later, re-registered after a head restart."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gymctl.head.app import create_head_app
from gymctl.head.registry import Registry
from gymctl.server.asgi_dispatch import asgi_request
from gymctl.server.registration import Registrar, registration_record


def record(name: str, port: int) -> dict[str, Any]:
    return registration_record(instance=name, server_type="resources_servers", impl="x", url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)


def test_instance_is_unhealthy_after_its_lease_and_dropped_later():
    reg = Registry(expected={"a"}, lease_s=6, drop_s=60)
    reg.register(record("a", 9001), now=1000.0)
    assert reg.instances(now=1005.0)[0]["status"] == "healthy" and reg.missing(now=1005.0) == []
    [item] = reg.instances(now=1007.0)
    assert item["status"] == "unhealthy" and item["last_seen_s"] == 7.0
    assert reg.missing(now=1007.0) == ["a"]  # the head's readiness turns 503 again
    assert reg.instances(now=1061.0) == []


def test_heartbeat_renews_the_lease():
    reg = Registry(lease_s=6)
    reg.register(record("a", 9001), now=1000.0)
    assert reg.register(record("a", 9001), now=1005.0) is False  # a renewal, not a new instance
    assert reg.instances(now=1010.0)[0]["status"] == "healthy"


def test_restarted_instance_on_a_new_port_is_a_new_entry_and_the_old_one_expires():
    reg = Registry(lease_s=6, drop_s=60)
    reg.register(record("a", 9001), now=1000.0)
    reg.register(record("a", 9002), now=1003.0)
    by_url = {i["url"]: i["status"] for i in reg.instances(now=1008.0)}
    assert by_url == {"http://127.0.0.1:9001": "unhealthy", "http://127.0.0.1:9002": "healthy"}


def test_deregister_removes_at_once():
    reg = Registry()
    reg.register(record("a", 9001))
    assert reg.deregister("a", "http://127.0.0.1:9001") and reg.instances() == []


class SwappableHead:
    """The head as the registrar sees it: an ASGI app that can die (None) and come back empty."""

    def __init__(self) -> None:
        self.app: Any = None

    def start(self) -> Registry:
        registry = Registry(expected={"a", "b"})
        self.app = create_head_app(None, registry)
        return registry

    async def send(self, path: str, body: dict[str, Any]) -> int:
        if self.app is None:
            raise ConnectionRefusedError("head down")
        status, _, _ = await asgi_request(self.app, "POST", path, orjson.dumps(body), [(b"content-type", b"application/json")])
        return status


def test_registrar_re_registers_within_one_heartbeat_after_the_head_restarts():
    async def scenario() -> float:
        head = SwappableHead()
        head.start()
        registrar = Registrar(head.send, [record("a", 9001), record("b", 9002)], interval_s=0.2)
        registrar.start()
        await asyncio.wait_for(registrar.registered.wait(), 2)
        head.app = None  # the head dies ...
        await asyncio.sleep(0.5)
        fresh = head.start()  # ... and comes back with an empty registry
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while {i["process_name"] for i in fresh.instances()} != {"a", "b"}:
            await asyncio.sleep(0.01)
            assert loop.time() - t0 < 2 * registrar.interval_s, "not re-registered within two heartbeats"
        elapsed = loop.time() - t0
        await registrar.stop()
        assert fresh.instances() == []  # deregistered on stop
        return elapsed

    assert asyncio.run(scenario()) <= 0.4


def test_registrar_reports_a_refused_token_without_the_token(caplog):
    async def refuse(path: str, body: dict[str, Any]) -> int:
        return 401

    registrar = Registrar(refuse, [record("a", 9001)], head_url="http://h:1")
    assert asyncio.run(registrar.beat()) is False
    assert "wrong or missing GYMCTL_AUTH_TOKEN" in caplog.text
