"""The cost of /metrics on the hot path: gymctl all-in-one with and without the metrics middleware, in alternating pairs.

    python -m bench.metrics                      # 3 pairs of 600 rollouts at concurrency 64 (~1 min)
    python -m bench.metrics --pairs 2 --requests 300

Both deployments run at once against one upstream stub; each pair drives one then the other (the
order flips every pair), so a shared machine's load shifts hit both alike. It reports rollouts/s,
server CPU ms per rollout and the ratio with/without, median over the pairs; exit 1 when the
throughput cost is above --max-cost (default 5%). On a shared machine the wall-clock ratio is noisy, so it
also reports the middleware's CPU per request (timed in-process around a trivial app), the requests a
rollout makes (counted by the servers' own /metrics, in-process calls included) and their product as a
share of a rollout's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.load_client import load_rows, raise_open_files_limit, run_load
from bench.procs import cpu_s, http_get_json
from bench.systems import GymctlAllInOne
from bench.upstream_stub import StubProcess


def middleware_us(n: int = 50_000) -> float:
    """CPU microseconds the middleware adds to one request: a trivial ASGI app called with and without it, in this process."""
    from gymctl.server.metrics import MetricsMiddleware, ServerMetrics

    class Route:
        path = "/get_weather"

    async def app(scope: dict, receive: object, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def sink(message: dict) -> None:
        return None

    wrapped = MetricsMiddleware(app, ServerMetrics("bench", "resources_servers", "x"))
    scope = {"type": "http", "path": "/get_weather", "method": "POST", "route": Route()}

    async def timed(target) -> float:
        t0 = time.process_time()
        for _ in range(n):
            await target(scope, None, sink)
        return time.process_time() - t0

    bare, with_mw = asyncio.run(timed(app)), asyncio.run(timed(wrapped))
    return max(with_mw - bare, 0.0) / n * 1e6


def requests_per_rollout(head_url: str, rollouts: int) -> float:
    """HTTP requests counted by every server's /metrics (in-process calls included), per rollout."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    _, items = http_get_json(head_url + "/server_instances")
    total = 0.0
    for url in {i["url"] for i in items if isinstance(items, list)}:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            for family in text_string_to_metric_families(r.read().decode()):
                total += sum(s.value for s in family.samples if s.name == "gymctl_http_requests_total")
    return total / rollouts


class WithoutMetrics(GymctlAllInOne):
    """The same deployment with GYMCTL_METRICS=0: no middleware, no /metrics."""

    name = "gymctl_all_in_one_no_metrics"

    def env(self) -> dict[str, str]:
        return {**super().env(), "GYMCTL_METRICS": "0"}


def measure(pairs: int, requests: int, concurrency: int) -> dict:
    raise_open_files_limit(1 << 14)
    rows = load_rows()
    log_dir = Path(tempfile.mkdtemp(prefix="gymctl-i14-bench-"))
    with_m, without = GymctlAllInOne(log_dir), WithoutMetrics(log_dir)
    figures: dict[str, dict[str, list[float]]] = {s.name: {"rollouts_per_s": [], "cpu_ms_per_rollout": []} for s in (with_m, without)}
    try:
        with StubProcess() as stub:
            for system in (with_m, without):
                system.start(stub.url)
            urls = {s.name: s.agent_run_url() for s in (with_m, without)}
            for s in (with_m, without):  # warm-up: first-use costs (imports, pools) out of the figures
                asyncio.run(run_load(urls[s.name], rows, 100, concurrency))
            for n in range(pairs):
                for system in (with_m, without) if n % 2 == 0 else (without, with_m):
                    procs = system.processes()
                    c0 = cpu_s(procs)
                    load = asyncio.run(run_load(urls[system.name], rows, requests, concurrency))
                    if load.failures:
                        raise RuntimeError(f"{system.name}: {load.failures} failed rollouts")
                    figures[system.name]["rollouts_per_s"].append(load.rollouts_per_s)
                    figures[system.name]["cpu_ms_per_rollout"].append((cpu_s(procs) - c0) * 1000 / load.succeeded)
            per_rollout = requests_per_rollout(with_m.head_url, 100 + pairs * requests)
            for system in (with_m, without):
                system.stop()
    finally:
        with_m.kill()
        without.kill()
    ratios = [a / b for a, b in zip(figures[with_m.name]["rollouts_per_s"], figures[without.name]["rollouts_per_s"], strict=True)]
    cpu = [a / b for a, b in zip(figures[with_m.name]["cpu_ms_per_rollout"], figures[without.name]["cpu_ms_per_rollout"], strict=True)]
    us = middleware_us()
    cpu_ms = statistics.median(figures[without.name]["cpu_ms_per_rollout"])
    return {
        "middleware_us_per_request": round(us, 2), "requests_per_rollout": round(per_rollout, 2),
        # the cost a rollout pays, from the two figures above: robust where wall-clock throughput on a shared machine is not
        "middleware_cpu_share": round(us * per_rollout / 1000 / cpu_ms, 4),
        "pairs": pairs, "requests": requests, "concurrency": concurrency,
        "systems": {name: {k: round(statistics.median(v), 2) for k, v in f.items()} for name, f in figures.items()},
        "throughput_ratio": round(statistics.median(ratios), 3), "throughput_ratio_per_pair": [round(r, 3) for r in ratios],
        "cpu_per_rollout_ratio": round(statistics.median(cpu), 3),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-cost", type=float, default=0.05, help="fail when throughput with metrics is below (1 - this) of without")
    args = p.parse_args(argv)
    result = measure(args.pairs, args.requests, args.concurrency)
    print(json.dumps(result, indent=2))
    cost = 1 - result["throughput_ratio"]
    print(f"bench.metrics: /metrics costs {cost:.1%} of throughput at concurrency {args.concurrency} "
          f"(CPU per rollout x{result['cpu_per_rollout_ratio']}; middleware {result['middleware_us_per_request']} us x "
          f"{result['requests_per_rollout']} requests = {result['middleware_cpu_share']:.1%} of a rollout's CPU); limit {args.max_cost:.0%}",
          file=sys.stderr)
    sys.exit(1 if cost > args.max_cost else 0)


if __name__ == "__main__":
    main()
