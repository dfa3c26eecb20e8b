"""Prometheus metrics of one server: a pure ASGI middleware (requests, latency, in flight, per-type figures) and `GET /metrics`.

The middleware sits inside the app (`app.add_middleware`), so calls that arrive in-process through
`gymctl.server.asgi_dispatch` are counted like those over a socket. Each app has its own
`CollectorRegistry`: several servers in one process (all-in-one) each show only their own figures.
The hot path does one dict lookup per request for the route and a few lock-guarded increments.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gymctl.errors import ConfigError

METRICS_PATH = "/metrics"
# Latency buckets from 1 ms (in-process hops) to a minute (long agent rollouts).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REWARD_BUCKETS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
STEP_BUCKETS = (1, 2, 3, 4, 5, 8, 12, 16, 24, 32, 64)
# A resources server's POST routes that are not tools (NeMo Gym's session and scoring routes).
NOT_TOOLS = frozenset({"/seed_session", "/close_session", "/verify", "/aggregate_metrics", "/", "/health"})
MODEL_ROUTES = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/completions"})
UNMATCHED = "unmatched"  # the route label of a path no route serves (keeps label values bounded)

Refresh = Callable[[], Awaitable[None]]


def upstream_error_kind(status: int) -> str | None:
    """What a model server's status says about its upstream call: None when it went through."""
    if status < 400:
        return None
    if status in (502, 503):
        return "unreachable"
    if status == 504:
        return "timeout"
    if status >= 500:
        return "server_error"
    return "rejected"


class HttpStats:
    """Requests by (route, method, status) and latency buckets by route, kept as plain numbers.

    One event loop serves a server, so the hot path needs no lock: a dict lookup, two additions and a
    bisect. Prometheus' families (and the per-type counts derived from them) are built at scrape time.
    """

    def __init__(self, server_type: str) -> None:
        self.server_type = server_type
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> [per-bucket counts..., +Inf count, sum]

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        row = self.latency.get(route)
        if row is None:
            row = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("gymctl_http_requests", "HTTP requests answered, by route, method and status.", labels=["route", "method", "status"])
        for (route, method, status), n in sorted(self.counts.items()):
            requests.add_metric([route, method, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("gymctl_http_request_duration_seconds", "Time to answer a request, by route.", labels=["route"])
        for route, row in sorted(self.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, seen in zip((*(str(b) for b in LATENCY_BUCKETS), "+Inf"), row[:-1], strict=True):
                cumulative += seen
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, row[-1])
        yield latency
        if self.server_type == "resources_servers":
            tools = CounterMetricFamily("gymctl_tool_calls", "Tool calls, by tool and status.", labels=["tool", "status"])
            for (route, method, status), n in sorted(self.counts.items()):
                if method == "POST" and route not in NOT_TOOLS and route != UNMATCHED:
                    tools.add_metric([route.lstrip("/"), str(status)], n)
            yield tools
        elif self.server_type == "responses_api_models":
            calls = CounterMetricFamily("gymctl_upstream_calls", "Model calls passed to the upstream endpoint.", labels=["route"])
            errors = CounterMetricFamily("gymctl_upstream_errors", "Model calls the upstream failed, by kind.", labels=["route", "kind"])
            by_route: dict[str, int] = {}
            by_kind: dict[tuple[str, str], int] = {}
            for (route, _, status), n in self.counts.items():
                if route in MODEL_ROUTES:
                    by_route[route] = by_route.get(route, 0) + n
                    kind = upstream_error_kind(status)
                    if kind:
                        by_kind[(route, kind)] = by_kind.get((route, kind), 0) + n
            for route, n in sorted(by_route.items()):
                calls.add_metric([route], n)
            for (route, kind), n in sorted(by_kind.items()):
                errors.add_metric([route, kind], n)
            yield calls
            yield errors


class ServerMetrics:
    """The figures of one server (or the head): HTTP ones for all, and those its type has."""

    def __init__(self, instance: str, server_type: str, impl: str = "") -> None:
        self.instance = instance
        self.server_type = server_type
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        info = Gauge("gymctl_server_info", "This server: always 1, its identity in the labels.", ["instance", "server_type", "impl"], registry=r)
        info.labels(instance, server_type, impl).set(1)
        Gauge("gymctl_server_start_time_seconds", "When this server started (unix time).", registry=r).set(time.time())
        self.http = HttpStats(server_type)
        r.register(self.http)
        self.observe = self.http.observe
        self.inflight = 0
        Gauge("gymctl_http_requests_in_flight", "Requests being answered now.", registry=r).set_function(lambda: self.inflight)
        self.refreshers: list[Refresh] = []
        self.body_of: Callable[[str, int, bytes], None] | None = None
        self.body_paths: frozenset[str] = frozenset()
        if server_type == "resources_servers":
            self.rewards = Histogram("gymctl_verify_reward", "Rewards given by /verify.", buckets=REWARD_BUCKETS, registry=r)
            self.body_paths, self.body_of = frozenset({"/verify"}), self._verified
        elif server_type == "responses_api_agents":
            self.rewards = Histogram("gymctl_rollout_reward", "Rewards of the rollouts this agent ran (/run).", buckets=REWARD_BUCKETS, registry=r)
            self.steps = Histogram("gymctl_rollout_steps", "Model calls per rollout (/run).", buckets=STEP_BUCKETS, registry=r)
            self.body_paths, self.body_of = frozenset({"/run"}), self._ran

    def _verified(self, path: str, status: int, body: bytes) -> None:
        reward = _field(body, "reward") if status == 200 else None
        if isinstance(reward, int | float):
            self.rewards.observe(float(reward))

    def _ran(self, path: str, status: int, body: bytes) -> None:
        if status != 200:
            return
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("reward"), int | float):
            self.rewards.observe(float(doc["reward"]))
        output = (doc.get("response") or {}).get("output") if isinstance(doc.get("response"), dict) else None
        if isinstance(output, list):
            calls = sum(1 for item in output if isinstance(item, dict) and item.get("type") == "function_call_output")
            self.steps.observe(calls + 1)  # one model call per tool result, and the last one that answered

    async def exposition(self) -> bytes:
        """The Prometheus text of this server, after any refresher (the head probes its instances) has run."""
        for refresh in self.refreshers:
            await refresh()
        return generate_latest(self.registry)


def _field(body: bytes, name: str) -> Any:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc.get(name) if isinstance(doc, dict) else None


class MetricsMiddleware:
    """Pure ASGI: times and counts every HTTP request, answers `GET /metrics` itself."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    @staticmethod
    def route_of(scope: dict[str, Any]) -> str:
        """The matched route's template (FastAPI puts the route in the scope): label values stay bounded."""
        path = getattr(scope.get("route"), "path", None)
        return path if isinstance(path, str) else UNMATCHED

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET":
            await self._serve_metrics(send)
            return
        m = self.metrics
        status = 500
        capture = scope["path"] in m.body_paths
        chunks: list[bytes] = []

        async def send_counted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif capture and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        started = time.perf_counter()
        m.inflight += 1
        try:
            await self.app(scope, receive, send_counted)
        finally:
            m.inflight -= 1
            m.observe(self.route_of(scope), scope["method"], status, time.perf_counter() - started)
            if capture and m.body_of is not None:
                m.body_of(scope["path"], status, b"".join(chunks))

    async def _serve_metrics(self, send: Any) -> None:
        body = await self.metrics.exposition()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def install_metrics(app: Any, metrics: ServerMetrics) -> ServerMetrics:
    """Add the middleware to a FastAPI app (before it starts); `app.state.metrics` holds the figures."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    return metrics


def metrics_enabled() -> bool:
    """GYMCTL_METRICS=0 leaves the middleware out (benchmarks measure its cost against that)."""
    from gymctl.server.settings import ServerSettings

    return ServerSettings.from_env().metrics


MONITORING_PATHS = frozenset({METRICS_PATH, "/prometheus_targets", "/ui", "/ui/instances"})


def open_paths(base: frozenset[str]) -> frozenset[str]:
    """The paths auth leaves open: `base`, plus the monitoring ones unless GYMCTL_MONITORING_PUBLIC=0 (then Prometheus sends the token)."""
    from gymctl.server.settings import ServerSettings

    return base | MONITORING_PATHS if ServerSettings.from_env().monitoring_public else base


def install_server_metrics(app: Any, instance: str, server_type: str, impl: str) -> ServerMetrics | None:
    """What the kit calls for every server app: the middleware and /metrics (None when GYMCTL_METRICS=0)."""
    from gymctl.server.logformat import install_request_ids

    install_request_ids(app, instance)  # json logs only: the request id of each line
    return install_metrics(app, ServerMetrics(instance, server_type, impl)) if metrics_enabled() else None


def monitoring_public(tree: Any) -> bool:
    """`gymctl.monitoring.public` (default true): /metrics, /prometheus_targets and /ui need no token on the stack's private network."""
    block = tree.get("gymctl") if hasattr(tree, "get") else None
    monitoring = block.get("monitoring") if block is not None and hasattr(block, "get") else None
    if monitoring is None:
        return True
    if not hasattr(monitoring, "get"):
        raise ConfigError(f"{monitoring!r} is not a mapping; write e.g. {{public: false}}", key_path="gymctl.monitoring")
    unknown = [str(k) for k in monitoring if k != "public"]
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} (known: public)", key_path="gymctl.monitoring")
    public = monitoring.get("public", True)
    if not isinstance(public, bool):
        raise ConfigError(f"{public!r} is not true or false", key_path="gymctl.monitoring.public")
    return public


def export_monitoring_setting(tree: Any) -> None:
    """An entry point's share of `gymctl.monitoring.public: false`: GYMCTL_MONITORING_PUBLIC=0 for this process and its children."""
    import os

    if not monitoring_public(tree):
        os.environ["GYMCTL_MONITORING_PUBLIC"] = "0"
