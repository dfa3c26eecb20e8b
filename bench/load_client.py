"""The neutral load client: POSTs JSONL rows to an agent's `/run` at a fixed concurrency and times each rollout.

Every system in the benchmark is driven by this same client, so the figures compare servers,
not clients. `python -m bench.load_client URL [--data F] [-n N] [-c C]` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass
class LoadResult:
    """Per-request latencies (successes only), failures, and the wall time of one load run."""

    requests: int
    concurrency: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    failure_samples: list[str] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)  # seconds from the start, successes only
    failed_at: list[float] = field(default_factory=list)  # seconds from the start, when each failure was seen
    last_issue_s: float = 0.0  # when the last request was sent
    deferred: int = 0  # 503 + Retry-After answers (a server at its admission limit) waited out and sent again

    def steady_rate(self, from_s: float) -> float:
        """Little's law over the rollouts started at or after `from_s` (the ramp's end) while every worker was
        busy: in-flight / mean latency. Unbiased by the ramp and the drain, unlike counting in a window."""
        lat = [ms / 1000 for ms, done in zip(self.latencies_ms, self.completed_at, strict=True)
               if done - ms / 1000 >= from_s and done - ms / 1000 <= self.last_issue_s]
        return self.concurrency / (sum(lat) / len(lat)) if lat else 0.0

    def rate_between(self, start_s: float, end_s: float) -> float:
        """Successes per second that completed within [start_s, end_s] (a steady-state window)."""
        if end_s <= start_s:
            return 0.0
        return sum(1 for t in self.completed_at if start_s <= t <= end_s) / (end_s - start_s)

    @property
    def succeeded(self) -> int:
        return len(self.latencies_ms)

    @property
    def rollouts_per_s(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def summary(self) -> dict:
        return {"requests": self.requests, "concurrency": self.concurrency, "elapsed_s": round(self.elapsed_s, 3),
                "succeeded": self.succeeded, "failures": self.failures,
                "rollouts_per_s": round(self.rollouts_per_s, 2), "p50_ms": round(self.p50_ms, 2),
                "p99_ms": round(self.p99_ms, 2), "deferred": self.deferred, "failure_samples": self.failure_samples}


def load_rows(path: Path | str = DEFAULT_DATA) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: no rows (expected one JSON object per line)")
    return rows


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) so thousands of sockets fit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run_load(url: str, rows: list[dict], requests: int, concurrency: int, timeout_s: float = 600.0,
                   session: aiohttp.ClientSession | None = None, ramp_s: float = 0.0) -> LoadResult:
    """POST `requests` rows (cycling through `rows`) to `url` with `concurrency` in flight at once.

    With `ramp_s`, the workers start evenly spread over that many seconds instead of all at once,
    so the run reaches a steady state (arrivals spread out) rather than synchronized waves.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError(f"requests ({requests}) and concurrency ({concurrency}) must be >= 1")
    bodies = [json.dumps(row).encode() for row in rows]
    result = LoadResult(requests=requests, concurrency=concurrency, elapsed_s=0.0)
    next_index = 0
    own = session is None
    if session is None:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=4),  # below every server's keep-alive
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def worker(k: int) -> None:
        nonlocal next_index
        if ramp_s > 0:
            await asyncio.sleep(k * ramp_s / concurrency)
        while next_index < requests:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            if next_index == requests:
                result.last_issue_s = started - t0
            busy = 0
            try:
                while True:  # a busy server's 503 + Retry-After is waited out (standard HTTP; NeMo Gym never sends it)
                    async with session.post(url, data=bodies[i % len(bodies)],
                                            headers={"Content-Type": "application/json"}) as resp:
                        raw = await resp.read()
                        wait = resp.headers.get("Retry-After") if resp.status == 503 else None
                        if wait is None or time.perf_counter() - started > timeout_s:
                            if resp.status != 200:
                                raise RuntimeError(f"HTTP {resp.status}: {raw[:200]!r}")
                            json.loads(raw)
                            break
                    result.deferred += 1
                    busy += 1  # wait as asked, doubled per answer in a row up to 8x, jittered
                    await asyncio.sleep(float(wait) * min(2 ** (busy - 1), 8) * random.uniform(0.5, 1.5))
                done = time.perf_counter()
                result.latencies_ms.append((done - started) * 1000.0)
                result.completed_at.append(done - t0)
            except Exception as e:  # noqa: BLE001 - every failure is counted, the run goes on
                result.failures += 1
                result.failed_at.append(time.perf_counter() - t0)
                if len(result.failure_samples) < 5:
                    result.failure_samples.append(f"{type(e).__name__}: {e}"[:300])

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(k) for k in range(min(concurrency, requests))))
    finally:
        result.elapsed_s = time.perf_counter() - t0
        if own:
            await session.close()
    return result


async def single_latencies(url: str, row: dict, repeats: int = 50) -> list[float]:
    """`repeats` sequential rollouts (one in flight); returns each latency in ms (after one warm-up)."""
    result = await run_load(url, [row], repeats + 1, 1)
    if result.failures:
        raise RuntimeError(f"{result.failures} of {repeats + 1} single /run calls failed: {result.failure_samples}")
    return result.latencies_ms[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load_client", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the agent's /run URL")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    raise_open_files_limit(args.concurrency * 2 + 1024)
    result = asyncio.run(run_load(args.url, load_rows(args.data), args.requests, args.concurrency))
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
