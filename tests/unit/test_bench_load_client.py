"""The neutral load client: its statistics, and that it counts every failure instead of stopping."""

from __future__ import annotations

import asyncio
import math

import pytest

from bench.load_client import LoadResult, load_rows, percentile, run_load
from bench.procs import free_port
from bench.upstream_stub import StubThread


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_result_throughput_counts_successes_only():
    r = LoadResult(requests=4, concurrency=2, elapsed_s=2.0, latencies_ms=[10.0, 20.0, 30.0], failures=1)
    assert r.rollouts_per_s == 1.5 and r.p50_ms == 20.0
    assert r.summary()["failures"] == 1


def test_drives_a_server_at_the_given_concurrency():
    rows = [r["responses_create_params"] for r in load_rows()]
    with StubThread(delay_s=0.05) as stub:
        result = asyncio.run(run_load(stub.url + "/v1/responses", rows, requests=40, concurrency=20))
        assert stub.requests()["count"] == 40
    assert result.succeeded == 40 and result.failures == 0
    # 40 requests, 20 at once, 50 ms each: two waves, so well under the 2 s it would take one at a time.
    assert 0.1 <= result.elapsed_s < 1.0
    assert 50 <= result.p50_ms <= result.p99_ms


def test_http_errors_and_refused_connections_are_failures_not_crashes():
    with StubThread() as stub:
        r = asyncio.run(run_load(stub.url + "/no-such-route", [{}], requests=5, concurrency=2))
    assert r.failures == 5 and r.succeeded == 0 and "HTTP 404" in r.failure_samples[0]
    refused = asyncio.run(run_load(f"http://127.0.0.1:{free_port()}/run", [{}], requests=3, concurrency=3))
    assert refused.failures == 3 and "Connect" in refused.failure_samples[0]


def test_bad_arguments_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"requests \(0\) and concurrency \(4\) must be >= 1"):
        asyncio.run(run_load("http://127.0.0.1:1/run", [{}], requests=0, concurrency=4))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        load_rows(empty)


def test_ramped_run_reaches_a_steady_rate_close_to_in_flight_over_latency():
    # 20 in flight, 0.1 s per reply: the steady rate is 20 / 0.1 s = 200/s once the ramp is over.
    with StubThread(delay_s=0.1) as stub:
        r = asyncio.run(run_load(stub.url + "/v1/responses", [{}], requests=20 + 200, concurrency=20, ramp_s=0.1))
    assert r.failures == 0 and len(r.completed_at) == 220
    assert r.completed_at[0] >= 0.1 and r.last_issue_s > 0.5
    assert 120 <= r.rate_between(0.1, r.last_issue_s) <= 210


def test_rate_between_counts_completions_in_the_window():
    r = LoadResult(requests=4, concurrency=1, elapsed_s=4.0, completed_at=[0.5, 1.5, 2.5, 3.5])
    assert r.rate_between(1.0, 3.0) == 1.0 and r.rate_between(2.0, 2.0) == 0.0


def test_steady_rate_is_in_flight_over_mean_latency_after_the_ramp():
    # two workers; rollouts started after the ramp (t >= 1) took 0.5 s on average: 2 / 0.5 = 4/s
    r = LoadResult(requests=4, concurrency=2, elapsed_s=3.0, latencies_ms=[200.0, 200.0, 400.0, 600.0],
                   completed_at=[0.3, 0.4, 1.5, 1.7], last_issue_s=1.2)
    assert r.steady_rate(1.0) == pytest.approx(4.0)
