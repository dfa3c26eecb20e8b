"""`gymctl collect --metrics-port`: the collection's running figures on `/metrics` (Prometheus text) while it runs.

Read from the collector's `RolloutStats` at scrape time: the rollout path does no extra work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gymctl.rollouts.stats import RolloutStats
from gymctl.server.serving import bind_socket


class CollectionFigures:
    """The figures of one collection: fed the collector's stats (its progress callback), read by each scrape."""

    def __init__(self, agent: str, concurrency: int) -> None:
        self.agent = agent
        self.concurrency = concurrency
        self.stats: RolloutStats | None = None
        self.started = time.time()

    def update(self, stats: RolloutStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        st = self.stats or RolloutStats()
        labels = ["agent"]
        finished = CounterMetricFamily("gymctl_collect_rollouts", "Rollouts this collection finished (written or failed).", labels=labels)
        finished.add_metric([self.agent], st.finished)
        yield finished
        written = CounterMetricFamily("gymctl_collect_written", "Rollouts written to the output.", labels=labels)
        written.add_metric([self.agent], st.done)
        yield written
        failures = CounterMetricFamily("gymctl_collect_failures", "Failed rollouts, by kind (the summary's failure_kinds).", labels=["agent", "kind"])
        for kind, n in sorted(dict(st.failure_kinds).items()):
            failures.add_metric([self.agent, kind], n)
        yield failures
        reward = CounterMetricFamily("gymctl_collect_reward_sum", "Sum of the rewards of written rollouts (mean: / gymctl_collect_rewarded_total).",
                                     labels=labels)
        reward.add_metric([self.agent], st.reward_sum)
        yield reward
        rewarded = CounterMetricFamily("gymctl_collect_rewarded", "Written rollouts that carried a reward.", labels=labels)
        rewarded.add_metric([self.agent], st.rewarded)
        yield rewarded
        mean = GaugeMetricFamily("gymctl_collect_mean_reward", "Mean reward of this run so far.", labels=labels)
        if st.mean_reward is not None:
            mean.add_metric([self.agent], st.mean_reward)
        yield mean
        remaining = max(st.total - st.finished, 0) if self.stats else 0
        inflight = GaugeMetricFamily("gymctl_collect_in_flight", "Rollouts started and not finished (the workers are kept busy).", labels=labels)
        inflight.add_metric([self.agent], min(self.concurrency, remaining))
        yield inflight
        total = GaugeMetricFamily("gymctl_collect_total", "Rollouts this run set out to do (resumed ones not counted).", labels=labels)
        total.add_metric([self.agent], st.total)
        yield total
        rate = GaugeMetricFamily("gymctl_collect_rollouts_per_second", "Finished rollouts per second since the run started.", labels=labels)
        rate.add_metric([self.agent], st.rate if self.stats else 0.0)
        yield rate
        yield GaugeMetricFamily("gymctl_collect_start_time_seconds", "When this collection started (unix time).", value=self.started)


class MetricsExporter:
    """A small HTTP server in the collector's event loop: `GET /metrics` (and `/`), nothing else."""

    def __init__(self, figures: CollectionFigures, host: str, port: int) -> None:
        self.figures = figures
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(figures)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> str:
        """Bind (PortInUseError names the flag when taken) and serve; returns the URL of /metrics."""
        sock = bind_socket(self.host, self.port, "gymctl collect --metrics-port")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
