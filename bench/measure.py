"""One measurement round of one system: ready time, PSS at ready and under load, one /run latency, a load run, shutdown."""

from __future__ import annotations

import asyncio
import math
import statistics
import time

from bench.load_client import load_rows, run_load, single_latencies
from bench.procs import PssSampler, cpu_s, pss_mib
from bench.systems import System, SystemFailed


def measure_system(system: System, stub_url: str, requests: int = 1000, concurrency: int = 64,
                   singles: int = 50) -> dict:
    """Start `system`, measure it, stop it. Raises SystemFailed (after stopping it) when it does not serve."""
    rows = load_rows()
    ready_s = system.start(stub_url)
    try:
        time.sleep(0.5)  # let start-up work that follows readiness (first heartbeats, lazy imports) settle
        procs = system.processes()
        pss_ready = pss_mib(procs)
        run_url = system.agent_run_url()
        try:
            lat = asyncio.run(single_latencies(run_url, rows[0], singles))
        except RuntimeError as e:
            raise SystemFailed(system.name, f"/run failed: {e}") from None
        procs = system.processes()
        cpu_before = cpu_s(procs)
        with PssSampler(system.processes, interval=1.0) as sampler:
            load = asyncio.run(run_load(run_url, rows, requests, concurrency))
        cpu_ms_per_rollout = (cpu_s(procs) - cpu_before) * 1000 / max(1, load.succeeded)
        pss_load = max(sampler.peak, pss_mib(system.processes()))
    except BaseException:
        system.kill()
        raise
    shutdown_s, leftovers = system.stop()
    return {
        "ready_s": round(ready_s, 3),
        "processes": len(procs),
        "pss_mib": round(pss_ready, 1),
        "pss_load_mib": round(pss_load, 1),
        "run_latency_ms": round(statistics.median(lat), 2),
        "rollouts_per_s": round(load.rollouts_per_s, 1),
        "p50_ms": round(load.p50_ms, 1),
        "p99_ms": round(load.p99_ms, 1),
        "cpu_ms_per_rollout": round(cpu_ms_per_rollout, 2),
        "failures": load.failures,
        "failure_samples": load.failure_samples,
        "shutdown_s": round(shutdown_s, 3),
        "leftover_processes": leftovers,
    }


def measure_sweep_point(system: System, stub_url: str, in_flight: int, stub_delay_s: float, pss_ready: float,
                        min_window_s: float = 5.0) -> dict:
    """Steady state with `in_flight` rollouts against a stub that waits `stub_delay_s` per model call.

    The client's workers start spread over one rollout time (2 model calls), then each keeps one
    rollout in flight; throughput is counted over the steady window that follows (at least one
    rollout time, at least `min_window_s`) by Little's law (in flight / mean latency of the rollouts
    started in it), and compared with the ideal in_flight / rollout time.
    """
    rows = load_rows()
    run_url = system.agent_run_url()
    rollout_s = 2 * stub_delay_s
    ideal = in_flight / rollout_s
    window_s = max(rollout_s, min_window_s)
    requests = in_flight + max(in_flight, math.ceil(ideal * window_s))
    with PssSampler(system.processes, interval=1.0) as sampler:
        load = asyncio.run(run_load(run_url, rows, requests, in_flight, ramp_s=rollout_s,
                                    timeout_s=max(120.0, 10 * rollout_s)))
    steady = load.steady_rate(rollout_s)
    peak = sampler.peak
    return {
        "in_flight": in_flight,
        "requests": requests,
        "stub_delay_s": round(stub_delay_s, 4),
        "window_s": round(load.last_issue_s - rollout_s, 2),
        "rollouts_per_s": round(steady, 1),
        "counted_rollouts_per_s": round(load.rate_between(rollout_s, load.last_issue_s), 1),
        "ideal_rollouts_per_s": round(ideal, 1),
        "achieved_of_ideal": round(steady / ideal, 3) if ideal else None,
        "failures": load.failures,
        "failure_samples": load.failure_samples,
        "p50_ms": round(load.p50_ms, 1),
        "p99_ms": round(load.p99_ms, 1),
        "pss_mib": round(peak, 1),
        "pss_per_in_flight_kib": round(max(0.0, peak - pss_ready) * 1024 / in_flight, 1) if peak else None,
    }
