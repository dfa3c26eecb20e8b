"""The benchmark run: stub alone, then interleaved rounds (floor + every system), the scale sweep, and the outputs."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import report
from bench.floor import EchoServer, limits, measure_floor
from bench.load_client import load_rows, raise_open_files_limit, run_load, single_latencies
from bench.measure import measure_sweep_point, measure_system
from bench.nemo_gym import NemoGym
from bench.procs import cpu_s, pss_mib
from bench.systems import GymctlAllInOne, GymctlContainers, GymctlSeparated, System, SystemFailed
from bench.upstream_stub import StubProcess

SYSTEMS: dict[str, type[System]] = {
    "nemo_gym": NemoGym,
    "gymctl_all_in_one": GymctlAllInOne,
    "gymctl_separated": GymctlSeparated,
    "gymctl_containers": GymctlContainers,
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# --quick fails below this throughput / echo-floor ratio. The all-in-one shape could reach 1/3 at most
# (3 HTTP exchanges per rollout); on the shared 2-core machine it measured 0.07-0.14 (bench/README.md),
# so 0.05 catches a 2x regression without failing on a noisy neighbour.
QUICK_MIN_FLOOR_RATIO = 0.05


@dataclass
class Plan:
    systems: list[str]
    rounds: int = 3
    requests: int = 1000
    concurrency: int = 64
    singles: int = 50
    sweep: list[int] = field(default_factory=lambda: [64, 1024, 4096, 10000])
    sweep_system: str = "gymctl_all_in_one"
    sweep_ideal: float | None = None  # target ideal rollouts/s; default: see sweep_ideal()
    quick: bool = False
    out_dir: Path = RESULTS_DIR
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gymctl-bench-")))


def _set_stub(stub_url: str, **config: object) -> None:
    req = urllib.request.Request(stub_url + "/_stub/config", data=json.dumps(config).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def measure_stub(stub_url: str, requests: int = 4000, concurrency: int = 64) -> dict:
    rows = [r["responses_create_params"] | {"model": "stub"} for r in load_rows()]
    res = asyncio.run(run_load(stub_url + "/v1/responses", rows, requests, concurrency))
    return {"requests_per_s": round(res.rollouts_per_s, 1), "p50_ms": round(res.p50_ms, 2),
            "failures": res.failures, "rollouts_per_s_allowed": round(res.rollouts_per_s / 2, 1)}


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(plan: Plan) -> tuple[dict, int]:
    """Run the plan; returns (result dict, exit code). Every process it starts is stopped before it returns."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    raise_open_files_limit(1 << 18)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"bench: logs in {plan.log_dir}", file=sys.stderr, flush=True)
    rounds: dict[str, list[dict]] = {n: [] for n in plan.systems}
    failed: dict[str, dict] = {}
    floors: list[dict] = []
    sweep: dict[str, dict] = {}
    active: list[System] = []
    held_11000_before = _listeners(11000)
    stub = StubProcess()
    try:
        stub.start()
        stub_alone = measure_stub(stub.url)
        print(f"bench: stub alone {stub_alone}", file=sys.stderr, flush=True)
        for i in range(plan.rounds):
            floors.append(measure_floor())
            print(f"bench: round {i + 1}/{plan.rounds} floor {floors[-1]['echo_rps']} req/s", file=sys.stderr,
                  flush=True)
            order = plan.systems[i % len(plan.systems):] + plan.systems[: i % len(plan.systems)]
            for name in order:
                if name in failed:
                    continue
                system = SYSTEMS[name](plan.log_dir)
                active.append(system)
                try:
                    figures = measure_system(system, stub.url, plan.requests, plan.concurrency, plan.singles)
                    rounds[name].append(figures)
                    print(f"bench:   {name}: {json.dumps({k: v for k, v in figures.items() if k != 'failure_samples'})}",
                          file=sys.stderr, flush=True)
                except SystemFailed as e:
                    failed[name] = {"failed": e.what, "log_tail": e.log_tail}
                    print(f"bench:   {name} FAILED: {e.what}\n{e.log_tail}", file=sys.stderr, flush=True)
                finally:
                    system.kill()
                    active.remove(system)
        floor_limit = statistics_median([f["limit_rollouts_per_s"]["all_in_one"] for f in floors])
        if plan.sweep and plan.sweep_system not in failed:
            measured = [r["rollouts_per_s"] for r in rounds.get(plan.sweep_system, [])]
            ideal = plan.sweep_ideal or sweep_ideal(floor_limit, statistics.median(measured) if measured else None)
            system = SYSTEMS[plan.sweep_system](plan.log_dir)
            active.append(system)
            try:
                sweep = run_sweep(system, stub.url, plan, ideal)
            except SystemFailed as e:
                failed.setdefault(f"sweep_{plan.sweep_system}", {"failed": e.what, "log_tail": e.log_tail})
            finally:
                system.kill()
                active.remove(system)
                _set_stub(stub.url, delay_s=0.0)
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything it started", file=sys.stderr, flush=True)
        for system in active:
            system.kill()
        stub.stop()
        raise
    finally:
        for system in active:
            system.kill()
        stub.stop()
    left_on_11000 = [p for p in _listeners(11000) if p not in held_11000_before]
    result = assemble(plan, rounds, failed, floors, sweep, stub_alone)
    result["port_11000_listeners_left"] = left_on_11000
    return result, (1 if failed or left_on_11000 else 0)


def run_quick(plan: Plan, pairs: int = 3) -> tuple[dict, int]:
    """gymctl all-in-one only: throughput as a ratio to the echo floor, measured in alternating pairs.

    The machine is shared, so each gymctl load run sits right after an echo run and the ratio of each
    pair is taken; the median of the pairs is what CI compares with QUICK_MIN_FLOOR_RATIO.
    """
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    raise_open_files_limit(1 << 14)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    rows = load_rows()
    system = GymctlAllInOne(plan.log_dir)
    figures: dict = {}
    ratios: list[float] = []
    echoes: list[float] = []
    loads = []
    echo_cpu: list[float] = []
    gym_cpu: list[float] = []
    try:
        with StubProcess() as stub, EchoServer() as echo:
            try:
                figures["ready_s"] = round(system.start(stub.url), 3)
            except SystemFailed as e:
                figures.update(failed=e.what, log_tail=e.log_tail)
                print(f"bench: gymctl_all_in_one FAILED: {e.what}\n{e.log_tail}", file=sys.stderr)
            else:
                time.sleep(0.5)
                figures["pss_mib"] = round(pss_mib(system.processes()), 1)
                run_url = system.agent_run_url()
                figures["run_latency_ms"] = round(statistics.median(
                    asyncio.run(single_latencies(run_url, rows[0], plan.singles))), 2)
                echo_proc, gym_procs = [psutil.Process(echo.proc.pid)], system.processes()
                for _ in range(pairs):
                    c0 = cpu_s(echo_proc)
                    echoes.append(echo.requests_per_s(1500, plan.concurrency))
                    echo_cpu.append((cpu_s(echo_proc) - c0) / 1500)
                    c0 = cpu_s(gym_procs)
                    loads.append(asyncio.run(run_load(run_url, rows, plan.requests // pairs + 1, plan.concurrency)))
                    gym_cpu.append((cpu_s(gym_procs) - c0) / max(1, loads[-1].succeeded))
                    ratios.append(loads[-1].rollouts_per_s / echoes[-1])
                figures["shutdown_s"], figures["leftover_processes"] = (round(x, 3) for x in system.stop())
    finally:
        system.kill()
    if loads:
        figures.update(
            rollouts_per_s=round(statistics.median(r.rollouts_per_s for r in loads), 1),
            p50_ms=round(statistics.median(r.p50_ms for r in loads), 1),
            p99_ms=round(statistics.median(r.p99_ms for r in loads), 1),
            failures=sum(r.failures for r in loads), processes=1,
            of_echo_floor=round(statistics.median(ratios), 3), of_echo_floor_per_pair=[round(x, 3) for x in ratios],
            cpu_ms_per_rollout=round(statistics.median(gym_cpu) * 1000, 2),
            # server CPU per echo request / server CPU per rollout: the throughput ratio were both CPU-bound
            cpu_of_echo_floor=round(statistics.median(echo_cpu) / statistics.median(gym_cpu), 3))
    floor = limits(statistics.median(echoes)) if echoes else {}
    floor["echo_rps_per_pair"] = [round(x, 1) for x in echoes]
    if echo_cpu:
        floor["echo_cpu_ms_per_request"] = round(statistics.median(echo_cpu) * 1000, 3)
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": True,
              "machine": {"load_avg": [round(x, 2) for x in psutil.getloadavg()]}, "floor": floor,
              "systems": {"gymctl_all_in_one": {**{k: None for k in report.FIGURES}, **figures}},
              "ratios": {}, "targets": [], "min_floor_ratio": QUICK_MIN_FLOOR_RATIO}
    failed = "failed" in figures or figures.get("failures")
    return result, 1 if failed else 0


def statistics_median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def sweep_ideal(floor_limit: float, system_rps: float | None) -> float:
    """The ideal rollouts/s the sweep's stub delay is set for: below the floor-derived limit (half of it) and
    below what the system did at concurrency 64 (80% of it), so that what is tested is queueing (pools,
    sockets, memory per rollout) and not raw speed; kept within 100-200/s so that 10,000 in flight means a
    50-100 s rollout and the sweep ends in minutes."""
    bounds = [200.0, 0.5 * floor_limit] + ([0.8 * system_rps] if system_rps else [])
    return round(max(100.0, min(bounds)), 1)


def run_sweep(system: System, stub_url: str, plan: Plan, ideal: float) -> dict:
    system.start(stub_url)
    time.sleep(0.5)
    pss_ready = pss_mib(system.processes())
    points: dict[str, dict] = {}
    for in_flight in plan.sweep:
        delay = in_flight / (2 * ideal)
        _set_stub(stub_url, delay_s=delay)
        point = measure_sweep_point(system, stub_url, in_flight, delay, pss_ready)
        points[str(in_flight)] = point
        print(f"bench:   sweep {in_flight}: {point['rollouts_per_s']}/s of {point['ideal_rollouts_per_s']}/s, "
              f"failures {point['failures']}, {point['pss_per_in_flight_kib']} KiB/in-flight", file=sys.stderr,
              flush=True)
    system.stop()
    return points


def assemble(plan: Plan, rounds: dict[str, list[dict]], failed: dict[str, dict], floors: list[dict],
             sweep: dict, stub_alone: dict) -> dict:
    systems: dict[str, dict] = {}
    for name in plan.systems:
        systems[name] = report.median_of(rounds[name]) if rounds[name] else {k: None for k in report.FIGURES}
        systems[name]["per_round"] = rounds[name]
        if name in failed:
            systems[name].update(failed[name])
    echo = [f["echo_rps"] for f in floors]
    floor = dict(floors[0]) if floors else {}
    if floors:
        floor["echo_rps"] = round(statistics_median(echo), 1)
        floor["echo_rps_per_round"] = echo
        floor["limit_rollouts_per_s"] = {k: round(floor["echo_rps"] / h["http"], 1) for k, h in floor["hops"].items()}
    ratio_table = report.ratios(systems)
    for name in systems:
        rps = systems[name].get("rollouts_per_s")
        systems[name]["of_echo_floor"] = round(rps / floor["echo_rps"], 3) if rps and floor.get("echo_rps") else None
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": psutil.cpu_count(), "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_avg": [round(x, 2) for x in psutil.getloadavg()]},
        "quick": plan.quick, "rounds": plan.rounds, "requests": plan.requests, "concurrency": plan.concurrency,
        "stub": stub_alone, "floor": floor, "systems": systems, "ratios": ratio_table,
        "sweep_system": plan.sweep_system if sweep else None, "sweep": sweep,
    }
    # The flat per-system keys, for scripts that read latest.json.
    for name in SYSTEMS:
        result.setdefault(name, systems.get(name))
    result["targets"] = report.check_targets(systems, ratio_table, sweep) if not plan.quick else []
    return result


def _listeners(port: int) -> list[int]:
    try:
        return sorted({c.pid for c in psutil.net_connections("tcp")
                       if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid})
    except psutil.AccessDenied:
        return []
