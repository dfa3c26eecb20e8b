"""The head's own figures for Prometheus: registrations by type and health, expected vs registered, lease expiries, probe round trips."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gymctl.head.registry import Registry
from gymctl.server.metrics import ServerMetrics, install_metrics, metrics_enabled

HEAD = "head"


class RegistryCollector:
    """Read at scrape time from the registry (nothing on the registration path); probes run just before each scrape."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.lease_expiries = 0
        self._healthy: set[tuple[str, str]] = set()
        self.probes: list[dict[str, Any]] = []

    async def probe(self) -> None:
        """GET /health on every registered URL (once per URL: aliases share their agent's), as `gymctl status` does."""
        from gymctl.head.probe import probe_all

        seen: set[str] = set()
        items = []
        for item in self.registry.instances():
            if item["url"] not in seen and not item.get("alias_of"):
                seen.add(item["url"])
                items.append(item)
        self.probes = await probe_all(items) if items else []

    def _count_expiries(self, items: list[dict[str, Any]]) -> None:
        healthy = {(i["process_name"], i["url"]) for i in items if i["status"] == "healthy"}
        unhealthy = {(i["process_name"], i["url"]) for i in items if i["status"] != "healthy"}
        self.lease_expiries += len(self._healthy & unhealthy)
        self._healthy = healthy

    def collect(self) -> Iterator[Metric]:
        items = self.registry.instances()
        self._count_expiries(items)
        by_type = GaugeMetricFamily("gymctl_head_registrations", "Registrations at the head, by server type and health.", labels=["server_type", "status"])
        counts: dict[tuple[str, str], int] = {}
        for i in items:
            key = (str(i.get("server_type", "")), str(i["status"]))
            counts[key] = counts.get(key, 0) + 1
        for t in sorted({i.get("server_type", "") for i in items}):
            for status in ("healthy", "unhealthy"):
                by_type.add_metric([str(t), status], counts.get((str(t), status), 0))
        yield by_type
        expected = len(self.registry.expected)
        missing = self.registry.missing()
        yield GaugeMetricFamily("gymctl_head_expected_instances", "Instances the deployment's config names.", value=expected)
        yield GaugeMetricFamily("gymctl_head_registered_instances", "Expected instances with a healthy registration.", value=expected - len(missing))
        up = GaugeMetricFamily("gymctl_head_instance_healthy", "1 while an instance's lease is current, 0 once it lapsed.",
                               labels=["gymctl_instance", "server_type", "url"])
        for i in items:
            up.add_metric([i["process_name"], str(i.get("server_type", "")), i["url"]], 1 if i["status"] == "healthy" else 0)
        for name in missing:
            if not any(i["process_name"] == name for i in items):  # expected, never registered (or dropped)
                up.add_metric([name, "", ""], 0)
        yield up
        yield CounterMetricFamily("gymctl_head_lease_expiries", "Leases that lapsed (a server stopped renewing).", value=self.lease_expiries)
        rtt = GaugeMetricFamily("gymctl_head_probe_rtt_seconds", "Round trip of the head's GET /health to an instance (last scrape).",
                                labels=["gymctl_instance", "url"])
        reachable = GaugeMetricFamily("gymctl_head_probe_up", "1 when the head's last probe of an instance got a 200.", labels=["gymctl_instance", "url"])
        for p in self.probes:
            if p["rtt_ms"] is not None:
                rtt.add_metric([p["process_name"], p["url"]], p["rtt_ms"] / 1000)
            reachable.add_metric([p["process_name"], p["url"]], 1 if p["health"] == "healthy" else 0)
        yield rtt
        yield reachable


def install_head_metrics(app: Any, registry: Registry) -> ServerMetrics | None:
    """The head's /metrics: its HTTP figures and the registry's (None when GYMCTL_METRICS=0)."""
    if not metrics_enabled():
        return None
    metrics = ServerMetrics(HEAD, HEAD, HEAD)
    collector = RegistryCollector(registry)
    metrics.registry.register(collector)
    metrics.refreshers.append(collector.probe)
    return install_metrics(app, metrics)
