"""What `gymctl status` reports: the head's instances, each probed for liveness with its round trip."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from gymctl.errors import HeadUnreachableError, ServerError
from gymctl.head.probe import probe_one
from gymctl.server.auth import auth_headers


@dataclass
class InstanceStatus:
    instance: str
    server_type: str
    impl: str
    url: str
    registered: str  # the head's view: healthy (lease renewed) / unhealthy
    health: str  # our probe of GET /health: healthy / unreachable / HTTP <n>
    uptime_s: float | None
    rtt_ms: float | None
    alias_of: str | None = None
    node: str | None = None  # where it runs, when its runtime registered it (--topology ray: the Ray node)
    workers: int = 1  # processes serving its port (gymctl.instances.NAME.workers): one registration for them all

    @property
    def ok(self) -> bool:
        return self.registered == "healthy" and self.health == "healthy"


@dataclass
class DeploymentStatus:
    head_url: str
    head_ready: bool
    waiting_for: list[str]
    instances: list[InstanceStatus]
    expect: int | None = None  # --expect N: at least N healthy registrations (replicas and aliases count)
    expected_elsewhere: list[str] = field(default_factory=list)  # waited for, to register from another host

    @property
    def healthy_count(self) -> int:
        return sum(1 for i in self.instances if i.ok)

    @property
    def expect_met(self) -> bool:
        return self.expect is None or self.healthy_count >= self.expect

    @property
    def ok(self) -> bool:
        return self.head_ready and self.expect_met and bool(self.instances) and all(i.ok for i in self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {"head_url": self.head_url, "head_ready": self.head_ready, "waiting_for": self.waiting_for,
                "expect": self.expect, "healthy": self.healthy_count, "ok": self.ok, "expected_from_other_hosts": self.expected_elsewhere,
                "instances": [asdict(i) for i in self.instances]}


async def _probes(session: aiohttp.ClientSession, head_url: str, headers: dict[str, str], items: list[dict[str, Any]], urls: list[str]) -> list[tuple[str, float | None]]:
    """Health and round trip per instance as the head sees them (it reaches servers that are not published);
    from here when the head cannot probe (NeMo Gym's head, or an instance it does not know yet)."""
    seen: dict[tuple[str, str | None], tuple[str, float | None]] = {}  # (process_name, url); an instance may have no url yet
    try:
        async with session.get(f"{head_url}/probe", headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status == 200:
                for p in orjson.loads(await r.read()):
                    seen[(p["process_name"], p["url"])] = (p["health"], p["rtt_ms"])
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        pass
    missing = [k for k, i in enumerate(items) if (i["process_name"], i.get("url")) not in seen]
    local = await asyncio.gather(*(probe_one(session, urls[k]) for k in missing))
    out = [seen.get((i["process_name"], i.get("url")), ("unreachable", None)) for i in items]
    for k, result in zip(missing, local, strict=True):
        out[k] = result
    return out


async def fetch_status(head_url: str, *, token: str | None = None, expect: int | None = None, use_host_url: bool = True) -> DeploymentStatus:
    """Ask the head for its instances, probe each one's /health, and report."""
    head_url = head_url.rstrip("/")
    headers = auth_headers(token)
    started = time.monotonic()
    from gymctl.server.tls import client_ssl

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl())) as session:
        try:
            async with session.get(f"{head_url}/server_instances", headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
                body = await r.read()
                if r.status == 401:
                    raise ServerError(
                        f"head at {head_url} answered 401: the auth token is {'wrong' if token else 'missing'}; "
                        "set GYMCTL_AUTH_TOKEN to the deployment's token", server="head", status=401)
                if r.status != 200:
                    raise ServerError(f"head at {head_url} answered {r.status} to /server_instances", server="head", status=r.status)
                items = orjson.loads(body)
            async with session.get(f"{head_url}/health", headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
                ready_body = orjson.loads(await r.read())
                head_ready = r.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise HeadUnreachableError(head_url, time.monotonic() - started, type(e).__name__) from None
        except orjson.JSONDecodeError:
            raise ServerError(f"{head_url} did not answer JSON; is --head a gymctl or NeMo Gym head?", server="head") from None
        urls = [(i.get("host_url") if use_host_url else None) or i.get("url") or "" for i in items]
        probes = await _probes(session, head_url, headers, items, urls)
    out = [
        InstanceStatus(
            instance=i["process_name"], server_type=i.get("server_type", ""), impl=i.get("name", ""), url=u,
            registered=i.get("status", "healthy"), health=p[0], uptime_s=i.get("uptime_seconds"), rtt_ms=p[1],
            alias_of=i.get("alias_of"), node=i.get("node"), workers=int(i.get("workers") or 1),
        )
        for i, u, p in zip(items, urls, probes, strict=True)
    ]
    waiting = list(ready_body.get("waiting_for") or []) if isinstance(ready_body, dict) else []
    elsewhere = list(ready_body.get("expected_from_other_hosts") or []) if isinstance(ready_body, dict) else []
    return DeploymentStatus(head_url, head_ready, waiting, out, expect, elsewhere)
