"""The head's live status page (`/ui`): every instance by host and type, health, uptime, round trip, requests/s, errors.

Rendered on the server: the first response already lists every instance and works without script; the
page reloads itself every couple of seconds (a meta refresh), so a dead instance turns red within its
lease. No build step and no external assets: it works offline. `/ui/instances` is the same data as JSON.
"""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gymctl.head.probe import probe_one
from gymctl.head.registry import Registry

REFRESH_S = 2
SCRAPE_TIMEOUT_S = 1.0


@dataclass
class RequestCounts:
    """Each instance's request and 5xx totals at the last look, to turn counters into a rate between two page loads."""

    last: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # url -> (monotonic, requests, 5xx)

    def rate(self, url: str, requests: float, errors: float, now: float) -> float | None:
        before = self.last.get(url)
        self.last[url] = (now, requests, errors)
        if before is None or now <= before[0] or requests < before[1]:
            return None
        return (requests - before[1]) / (now - before[0])


def _totals(text: str) -> tuple[float, float]:
    """(requests, 5xx) summed from a server's /metrics text; counted by hand (no parser on the page's path)."""
    requests = errors = 0.0
    for line in text.splitlines():
        if line.startswith("gymctl_http_requests_total{"):
            labels, _, value = line.rpartition(" ")
            try:
                n = float(value)
            except ValueError:
                continue
            requests += n
            if 'status="5' in labels:
                errors += n
    return requests, errors


async def _scrape(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, float] | None:
    try:
        async with session.get(url.rstrip("/") + "/metrics", headers=headers, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)) as r:
            return _totals(await r.text()) if r.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, OSError, UnicodeDecodeError):
        return None


async def status_rows(registry: Registry, counts: RequestCounts, token: str | None = None) -> list[dict[str, Any]]:
    """One row per instance (expected ones that never registered too), sorted by host, type and name."""
    items = [i for i in registry.instances() if not i.get("alias_of")]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        probes, scrapes = await asyncio.gather(
            asyncio.gather(*(probe_one(session, i["url"], timeout_s=SCRAPE_TIMEOUT_S) for i in items)),
            asyncio.gather(*(_scrape(session, i["url"], headers) for i in items)),
        )
    now = time.monotonic()
    rows = []
    for item, (health, rtt), scraped in zip(items, probes, scrapes, strict=True):
        healthy = item["status"] == "healthy" and health == "healthy"
        rate = counts.rate(item["url"], *scraped, now) if scraped else None
        rows.append({
            "instance": item["process_name"], "server_type": item.get("server_type", ""), "impl": item.get("name", ""),
            "host": item.get("host", ""), "url": item["url"], "healthy": healthy,
            "status": "healthy" if healthy else ("lease expired" if item["status"] != "healthy" else health),
            "uptime_s": item.get("uptime_seconds"), "rtt_ms": None if rtt is None else round(rtt, 2),
            "requests_per_s": None if rate is None else round(rate, 1),
            "errors_5xx": None if scraped is None else int(scraped[1]),
            "last_error": None if health == "healthy" else f"probe: {health}",
        })
    seen = {r["instance"] for r in rows}
    for name in registry.missing():
        if name not in seen:
            rows.append({"instance": name, "server_type": "", "impl": "", "host": "", "url": "", "healthy": False, "status": "not registered",
                         "uptime_s": None, "rtt_ms": None, "requests_per_s": None, "errors_5xx": None,
                         "last_error": "expected by the config; never registered or dropped"})
    rows.sort(key=lambda r: (r["host"], r["server_type"], r["instance"]))
    return rows


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d {s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s"


def _cell(value: object, unit: str = "") -> str:
    return "-" if value is None else html.escape(f"{value}{unit}")


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .3em}.meta{color:#666}
table{border-collapse:collapse;width:100%}th,td{padding:.3em .6em;text-align:left;border-bottom:1px solid #ddd}
th{background:#f4f4f4}tr.ok td.status{color:#0a6b2d;font-weight:600}
tr.bad{background:#fde8e8}tr.bad td.status{color:#b00020;font-weight:700}
.summary{font-weight:600}.summary.bad{color:#b00020}.summary.ok{color:#0a6b2d}
"""


def render_page(rows: list[dict[str, Any]], *, expected: int, registered: int, refresh_s: int = REFRESH_S) -> str:
    """The whole page as one HTML string (everything escaped; no script, no external asset)."""
    healthy = sum(1 for r in rows if r["healthy"])
    state = "ok" if healthy == len(rows) and registered >= expected else "bad"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{refresh_s}">',
        "<title>gymctl status</title><style>", STYLE, "</style></head><body>",
        "<h1>gymctl deployment</h1>",
        f'<p class="summary {state}" id="summary">{healthy} of {len(rows)} instances healthy; '
        f"{registered} of {expected} expected registered</p>",
        f'<p class="meta">refreshed every {refresh_s} s at {html.escape(time.strftime("%H:%M:%S"))} · '
        '<a href="/ui/instances">JSON</a> · <a href="/metrics">metrics</a></p>',
    ]
    hosts: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        hosts.setdefault(r["host"] or "(not registered)", []).append(r)
    for host, host_rows in hosts.items():
        parts.append(f"<h2>host {html.escape(host)}</h2><table><thead><tr><th>type</th><th>instance</th><th>status</th><th>uptime</th>"
                     "<th>round trip</th><th>requests/s</th><th>5xx</th><th>last error</th></tr></thead><tbody>")
        for r in host_rows:
            cls = "ok" if r["healthy"] else "bad"
            parts.append(
                f'<tr class="{cls}" data-instance="{html.escape(r["instance"])}"><td>{html.escape(r["server_type"])}</td>'
                f'<td title="{html.escape(r["url"])}">{html.escape(r["instance"])}</td><td class="status">{html.escape(r["status"])}</td>'
                f"<td>{html.escape(_uptime(r['uptime_s']))}</td><td>{_cell(r['rtt_ms'], ' ms')}</td><td>{_cell(r['requests_per_s'])}</td>"
                f"<td>{_cell(r['errors_5xx'])}</td><td>{_cell(r['last_error'])}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def add_status_page(router: Any, registry: Registry) -> None:
    """`GET /ui` (the page) and `GET /ui/instances` (its rows as JSON) on the head's router."""
    from fastapi.responses import HTMLResponse, JSONResponse

    from gymctl.server.auth import auth_token

    counts = RequestCounts()
    token = auth_token()

    async def page() -> HTMLResponse:
        rows = await status_rows(registry, counts, token)
        expected = len(registry.expected)
        return HTMLResponse(render_page(rows, expected=expected, registered=expected - len(registry.missing())),
                            headers={"Cache-Control": "no-store"})

    async def instances() -> JSONResponse:
        return JSONResponse(await status_rows(registry, counts, token))

    router.add_api_route("/ui", page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/ui/instances", instances, methods=["GET"], include_in_schema=False)
