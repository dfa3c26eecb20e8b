"""The cost of /metrics on the hot path: gymctl all-in-one with and without the metrics middleware, in alternating pairs.

    python -m bench.metrics                      # 3 pairs of 600 rollouts at concurrency 64 (~1 min)
    python -m bench.metrics --pairs 2 --requests 300

Both deployments run at once against one upstream stub; each pair drives one then the other (the
order flips every pair), so a shared machine's load shifts hit both alike. It reports rollouts/s,
server CPU ms per rollout and the ratio with/without, median over the pairs; exit 1 when the
throughput cost is above --max-cost (default 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.load_client import load_rows, raise_open_files_limit, run_load
from bench.procs import cpu_s
from bench.systems import GymctlAllInOne
from bench.upstream_stub import StubProcess


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
            for system in (with_m, without):
                system.stop()
    finally:
        with_m.kill()
        without.kill()
    ratios = [a / b for a, b in zip(figures[with_m.name]["rollouts_per_s"], figures[without.name]["rollouts_per_s"], strict=True)]
    cpu = [a / b for a, b in zip(figures[with_m.name]["cpu_ms_per_rollout"], figures[without.name]["cpu_ms_per_rollout"], strict=True)]
    return {
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
          f"(CPU per rollout x{result['cpu_per_rollout_ratio']}); limit {args.max_cost:.0%}", file=sys.stderr)
    sys.exit(1 if cost > args.max_cost else 0)


if __name__ == "__main__":
    main()
