"""The head's probe of its instances: GET /health on each registered URL, with the round trip in ms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp


async def probe_one(session: aiohttp.ClientSession, url: str, timeout_s: float = 3.0) -> tuple[str, float | None]:
    """("healthy" | "HTTP <n>" | "unreachable", round trip in ms) for one server's GET /health."""
    t0 = time.perf_counter()
    try:
        async with session.get(url.rstrip("/") + "/health", timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            await r.read()
            rtt = (time.perf_counter() - t0) * 1000
            return ("healthy" if r.status == 200 else f"HTTP {r.status}"), rtt
    except (TimeoutError, aiohttp.ClientError, OSError):
        return "unreachable", None


async def probe_all(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Probe every registered instance at its network URL (liveness paths need no token)."""
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(probe_one(session, i["url"]) for i in items))
    return [
        {"process_name": i["process_name"], "url": i["url"], "health": health, "rtt_ms": None if rtt is None else round(rtt, 2)}
        for i, (health, rtt) in zip(items, results, strict=True)
    ]
