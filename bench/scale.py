"""Scale probe: N rollouts in flight against one system, with each process's open files watched.

`python -m bench.scale --in-flight 10000 --ideal 200` starts the upstream stub (delay per model call
in_flight / (2 * ideal), so a rollout takes in_flight / ideal seconds), a gymctl system, and drives it
either with the bench's neutral client (`--driver bench`, the default) or with `gymctl collect`
(`--driver collect`, failures counted from `_failures.jsonl` after the collector's own retries).
One JSON line: failures and their first samples (with when they happened), the steady rate of the
ideal, the peak open files of every process of the system and of the driver, and the peak of
connections between any (source address, destination address:port) pair.

Past what one process holds (65,000 in flight: `--in-flight 65000 --system gymctl_separated --driver collect
--workers 8`), the agent and the model server run `workers` processes each on their port, the stub runs as
several processes on one port, and `gymctl collect` spreads its connections over processes by itself.
`--sweep 64,1000,10000,65000` runs the points one after another (gymctl separated, `gymctl collect`; the
workers each point needs), beside NeMo Gym at the points it survives (`--nemo-gym-points`), and prints one
JSON line per point and a table; `python -m bench --scale-sweep ...` runs the same.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.harness import SYSTEMS, _set_stub
from bench.load_client import load_rows, raise_open_files_limit, run_load
from bench.procs import pss_mib
from bench.systems import AGENT, System
from bench.upstream_stub import StubProcess

MODEL = "policy_model"
RESOURCES = "example_single_tool_call"
PER_WORKER = 8_200  # rollouts in flight one agent or model worker is given (9,500 fit its 20,000 files; margin for the kernel's spread)
PER_STUB = 12_000  # model calls one stub process holds


class FdWatch:
    """Samples open files per process (the system's, the driver's, the stub's) every `interval` seconds."""

    def __init__(self, procs: callable, interval: float = 1.0) -> None:
        self.procs = procs
        self.interval = interval
        self.peak: dict[str, int] = collections.defaultdict(int)
        self.peak_sum: dict[str, int] = collections.defaultdict(int)
        self.peak_pss = 0.0
        self.peak_pair = 0
        self.peak_pair_at = ""
        self.pairs_every_s = 10.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_pairs = 0.0
        while not self._stop.wait(self.interval):
            procs = self.procs()
            sums: dict[str, int] = collections.defaultdict(int)
            for label, p in procs:
                try:
                    n = p.num_fds()
                except psutil.Error:
                    continue
                self.peak[label] = max(self.peak[label], n)
                sums[label.split(":", 1)[0].split("#", 1)[0]] += n
            for group, n in sums.items():  # at one moment, over a group's processes (the stub's: model calls in flight)
                self.peak_sum[group] = max(self.peak_sum[group], n)
            self.peak_pss = max(self.peak_pss, pss_mib([p for label, p in procs if not label.startswith(("driver", "stub"))]))
            if time.monotonic() - last_pairs > self.pairs_every_s:
                last_pairs = time.monotonic()
                pair, n = busiest_pair()
                if n > self.peak_pair:
                    self.peak_pair, self.peak_pair_at = n, pair

    def __enter__(self) -> FdWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def busiest_pair() -> tuple[str, int]:
    """The (source address, destination address:port) pair with the most established TCP connections now (/proc/net/tcp)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    seen: set[tuple[str, str]] = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            # ESTABLISHED; a server's side has a distinct remote port each, so it never adds up. Each connection once: read
            # in pages while tens of thousands open and close, the kernel's table lists some twice (the 65,000 run counted
            # 34,938 from one source address, past the 28,232 ports one address has).
            if parts[3] == "01" and (parts[1], parts[2]) not in seen:
                seen.add((parts[1], parts[2]))
                counts[(parts[1].split(":")[0], parts[2])] += 1
    if not counts:
        return "", 0
    (src, dst), n = counts.most_common(1)[0]

    def ip(hexed: str) -> str:
        return socket.inet_ntoa(bytes.fromhex(hexed)[::-1])

    host, port = dst.split(":")
    return f"{ip(src)} -> {ip(host)}:{int(port, 16)}", n


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


def _labelled(system: System, stubs: list[StubProcess], driver: psutil.Process | None) -> list[tuple[str, psutil.Process]]:
    out = [(f"system:{_name(p)}#{p.pid}", p) for p in system.processes()]
    for k, stub in enumerate(stubs):
        if stub.proc is not None:
            out.append((f"stub#{k + 1}", psutil.Process(stub.proc.pid)))
    if driver is not None:
        out.append(("driver", driver))
        with contextlib.suppress(psutil.Error):
            out += [(f"driver:spread#{c.pid}", c) for c in driver.children(recursive=True)]  # gymctl collect's spread processes
    return out


def _with_workers(system: System, workers: dict[str, int]) -> System:
    """The separated system with `gymctl.instances.NAME.workers` set for the instances named."""
    if workers:
        argv = system.argv
        sets = [a for name, n in workers.items() for a in ("--set", f"gymctl.instances.{name}.workers={n}")]
        system.argv = lambda stub_url, head_port: [*argv(stub_url, head_port), *sets]  # type: ignore[method-assign]
    return system


# From 10,000 in flight started at once on 2 loaded cores the servers' event loops stall for seconds while the wave
# starts (measured: the resources server's heartbeat late past the 6 s lease, the agents' pools cancelling its
# in-flight calls as lost -- 2,395 of 65,000 and 3,062 of 20,000 rollouts failed): leases long enough for that
# (the registry's own setting, GYMCTL_LEASE_S).
BIG_LEASES = {"GYMCTL_HEARTBEAT_S": "3", "GYMCTL_LEASE_S": "45"}


def _with_env(system: System, extra: dict[str, str]) -> System:
    if extra:
        env = system.env
        system.env = lambda: {**env(), **extra}  # type: ignore[method-assign]
    return system


def start_stubs(n: int, delay_s: float) -> list[StubProcess]:
    """`n` stub processes on one port (SO_REUSEPORT when more than one), each waiting `delay_s` per call."""
    first = StubProcess(delay_s=delay_s, reuse_port=n > 1)
    first.start()
    stubs = [first]
    try:
        port = int(first.url.rsplit(":", 1)[1])
        for _ in range(n - 1):
            stubs.append(StubProcess(delay_s=delay_s, port=port, reuse_port=True))
            stubs[-1].start()
    except BaseException:
        for s in stubs:
            s.stop()
        raise
    return stubs


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _collect(agent_head: str, in_flight: int, requests: int, timeout_s: float, work: Path) -> tuple[subprocess.Popen, Path]:
    rows = load_rows()
    data = work / "input.jsonl"
    with data.open("w") as f:
        for i in range(math.ceil(requests / len(rows)) * len(rows)):
            f.write(json.dumps(rows[i % len(rows)]) + "\n")
            if i + 1 >= requests:
                break
    out = work / "rollouts.jsonl"
    argv = [sys.executable, "-m", "gymctl", "collect", "--head", agent_head, "--agent", AGENT, "--input", str(data),
            "--output", str(out), "--concurrency", str(in_flight), "--timeout", str(timeout_s), "--overwrite"]
    log = (work / "collect.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), out


def _limited(system: System, nofile: int | None) -> System:
    """The system with its processes' open-files limit (soft and hard) lowered to `nofile`: the 20,000 of a
    big machine reproduced at a small scale."""
    if nofile:
        argv = system.argv
        system.argv = lambda stub_url, head_port: ["prlimit", f"--nofile={nofile}:{nofile}", "--", *argv(stub_url, head_port)]  # type: ignore[method-assign]
    return system


def workers_for(in_flight: int) -> dict[str, int]:
    """Worker processes per instance so that each holds at most PER_WORKER rollouts (none below that)."""
    n = math.ceil(in_flight / PER_WORKER)
    return {AGENT: n, MODEL: n, RESOURCES: max(1, n // 2)} if n > 1 else {}


def probe(system_name: str, in_flight: int, ideal: float, driver: str, requests: int | None, log_dir: Path,
          system_nofile: int | None = None, workers: dict[str, int] | None = None, stub_processes: int | None = None,
          rollout_s: float | None = None) -> dict:
    """One point: `in_flight` rollouts against `system_name`; `rollout_s` (default in_flight / ideal) sets the stub's delay."""
    raise_open_files_limit(in_flight * 2 + 1024)
    rollout_s = rollout_s or in_flight / ideal
    ideal = in_flight / rollout_s
    delay = rollout_s / 2
    requests = requests or in_flight * 2
    workers = workers or {}
    n_stubs = stub_processes or max(1, math.ceil(in_flight / PER_STUB))
    stubs = start_stubs(n_stubs, delay)
    stub = stubs[0]
    leases = BIG_LEASES if in_flight >= 10_000 and system_name.startswith("gymctl") else {}
    system = _with_env(_limited(_with_workers(SYSTEMS[system_name](log_dir), workers), system_nofile), leases)
    result: dict = {"system": system_name, "driver": driver, "in_flight": in_flight, "requests": requests, "system_nofile": system_nofile,
                    "workers": workers, "stub_processes": n_stubs, "leases": leases, "ideal_rollouts_per_s": round(ideal, 1), "stub_delay_s": round(delay, 3),
                    "load_before": load_average()}
    try:
        result["ready_s"] = round(system.start(stub.url), 2)
        if n_stubs == 1:
            _set_stub(stub.url, delay_s=delay)  # (a group was started with it: a POST reaches one of its processes)
        time.sleep(0.5)
        pss_ready = pss_mib(system.processes())
        cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in system.processes())
        if driver == "bench":
            run_url = system.agent_run_url()
            me = psutil.Process()
            with FdWatch(lambda: _labelled(system, stubs, me)) as watch:
                load = asyncio.run(run_load(run_url, load_rows(), requests, in_flight, ramp_s=rollout_s,
                                            timeout_s=max(120.0, 10 * rollout_s)))
            result.update(failures=load.failures, failure_samples=load.failure_samples, deferred=load.deferred,
                          failed_at_s=[round(t, 1) for t in load.failed_at[:3]] + [round(t, 1) for t in load.failed_at[-3:]],
                          rollouts_per_s=round(load.steady_rate(rollout_s), 1), elapsed_s=round(load.elapsed_s, 1),
                          succeeded=load.succeeded)
            result["achieved_of_ideal"] = round(result["rollouts_per_s"] / ideal, 3)
        else:
            with tempfile.TemporaryDirectory(prefix="gymctl-i16-collect-") as tmp:
                work = Path(tmp)
                t0 = time.monotonic()
                proc, out = _collect(system.head_url, in_flight, requests, max(120.0, 10 * rollout_s), work)
                driver_proc = psutil.Process(proc.pid)
                driver_cpu: dict[int, float] = {}

                def procs() -> list[tuple[str, psutil.Process]]:
                    labelled = _labelled(system, stubs, driver_proc)
                    for label, p in labelled:  # the driver's CPU, its spread processes' included (they exit before it)
                        if label.startswith("driver"):
                            with contextlib.suppress(psutil.Error):
                                t = p.cpu_times()
                                driver_cpu[p.pid] = t.user + t.system
                    return labelled

                with FdWatch(procs) as watch:
                    rc = proc.wait()
                elapsed = time.monotonic() - t0
                failures_path = out.with_name(out.stem + "_failures.jsonl")
                fails = [json.loads(line) for line in failures_path.read_text().splitlines()] if failures_path.exists() else []
                written = sum(1 for _ in out.open()) if out.exists() else 0
                # The collector starts every rollout at once: ideal = every wave of `in_flight` done in one rollout time.
                ideal_elapsed = math.ceil(requests / in_flight) * rollout_s
                log_text = (work / "collect.log").read_text()
                own = re.findall(r"over ([0-9.]+) s", log_text)  # the collector's own clock (from its first rollout): no start-up
                elapsed = float(own[-1]) if own else elapsed
                result.update(failures=len(fails), failure_samples=[f.get("reason", "")[:300] for f in fails[:5]], exit_code=rc,
                              succeeded=written, elapsed_s=round(elapsed, 1), rollouts_per_s=round(written / elapsed, 1),
                              achieved_of_ideal=round(ideal_elapsed / elapsed, 3), ideal_elapsed_s=round(ideal_elapsed, 1),
                              driver_cpu_ms_per_rollout=round(sum(driver_cpu.values()) * 1000 / max(1, written), 3),
                              collect_log_tail=log_text[-1500:])
        cpu1 = sum(p.cpu_times().user + p.cpu_times().system for p in system.processes())
        result["cpu_ms_per_rollout"] = round((cpu1 - cpu0) * 1000 / max(1, result.get("succeeded", 0)), 2)
        result["peak_open_files"] = dict(watch.peak)
        result["max_open_files_one_process"] = max(watch.peak.values(), default=0)
        result["peak_open_files_by_group"] = dict(watch.peak_sum)
        result["stub_calls_in_flight_peak"] = max(0, watch.peak_sum.get("stub", 0) - 10 * n_stubs)  # its open files less its own ~10
        result["busiest_pair"] = {"pair": watch.peak_pair_at, "connections": watch.peak_pair}
        result["processes"] = {"system": len(system.processes()), "stub": n_stubs}
        result["pss_ready_mib"] = round(pss_ready, 1)
        result["pss_peak_mib"] = round(watch.peak_pss, 1)
        result["kib_per_in_flight"] = round(max(0.0, watch.peak_pss - pss_ready) * 1024 / in_flight, 1)
        result["load_after"] = load_average()
    finally:
        try:
            system.stop()
        except Exception:  # noqa: BLE001 - a failed stop still kills
            system.kill()
        for s in stubs:
            s.stop()
    result["system_log_tail"] = "".join(system.log_path.read_text(errors="replace").splitlines(keepends=True)[-15:]) if system.log_path.exists() else ""
    return result


SWEEP = (64, 1000, 10000, 65000)


def sweep(points: list[int], log_dir: Path, *, ideal: float = 200.0, big_rollout_s: float = 240.0, nemo_gym_points: tuple[int, ...] = (64, 1000),
          out: Path | None = None) -> list[dict]:
    """gymctl separated through `gymctl collect` at each point (workers as each needs; 2 x in-flight rollouts, one wave past
    10,000 with a rollout of `big_rollout_s` so all are in flight at once), beside NeMo Gym (bench client) at `nemo_gym_points`."""
    results = []
    for n in points:
        big = n > 10_000
        runs = [("gymctl_separated", "collect")] + ([("nemo_gym", "bench")] if n in nemo_gym_points else [])
        for system, driver in runs:
            print(f"bench.scale: {system} {n:,} in flight ({driver}), load {load_average()} ...", file=sys.stderr, flush=True)
            r = probe(system, n, ideal, driver, n if big else None, log_dir, workers=workers_for(n) if system.startswith("gymctl") else None,
                      rollout_s=big_rollout_s if big else None)
            results.append(r)
            print(json.dumps(r), flush=True)
            if out is not None:
                out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    return results


def table(results: list[dict]) -> str:
    """The sweep as FIGURES.md shows it."""
    lines = ["| in flight | system (driver) | workers (agent/model) | rollouts | failures | of ideal | max open files, one process | "
             "busiest (src, dst) pair | PSS per in-flight rollout | CPU ms per rollout (servers / collector) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = r.get("workers") or {}
        lines.append(
            f"| {r['in_flight']:,} | {r['system']} ({r['driver']}) | {w.get(AGENT, 1)}/{w.get(MODEL, 1)} | {r.get('succeeded', 0):,} | "
            f"{r.get('failures')} | {r.get('achieved_of_ideal')} | {r.get('max_open_files_one_process'):,} | "
            f"{(r.get('busiest_pair') or {}).get('connections', 0):,} | {r.get('kib_per_in_flight')} KiB | "
            f"{r.get('cpu_ms_per_rollout')} / {r.get('driver_cpu_ms_per_rollout', '-')} | {r.get('load_before')} -> {r.get('load_after')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="gymctl_all_in_one", choices=list(SYSTEMS))
    parser.add_argument("--in-flight", type=int, default=10000)
    parser.add_argument("--ideal", type=float, default=200.0, help="ideal rollouts/s (sets the stub's delay)")
    parser.add_argument("--driver", choices=("bench", "collect"), default="bench")
    parser.add_argument("--requests", type=int, default=None, help="rollouts in all (default: 2 x in-flight)")
    parser.add_argument("--system-nofile", type=int, default=None, help="lower the system's open-files limit to this")
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / f"gymctl-i16-scale-{os.getpid()}")
    parser.add_argument("--workers", type=int, default=None, help="worker processes of the agent and the model server (default: as needed)")
    parser.add_argument("--rollout-s", type=float, default=None, help="seconds per rollout (sets the stub delay; default in-flight / ideal)")
    parser.add_argument("--sweep", default="", help="in-flight points, e.g. 64,1000,10000,65000 (gymctl separated via gymctl collect)")
    parser.add_argument("--nemo-gym-points", default="64,1000", help="--sweep: the points NeMo Gym runs at too (bench client)")
    parser.add_argument("--out", type=Path, default=None, help="--sweep: write the results (JSON) here as they come")
    args = parser.parse_args(argv)
    if args.sweep:
        points = [int(x) for x in args.sweep.split(",") if x.strip()]
        sweep(points, args.log_dir, ideal=args.ideal, nemo_gym_points=tuple(int(x) for x in args.nemo_gym_points.split(",") if x.strip()),
              out=args.out)
        return
    workers = workers_for(args.in_flight) if args.workers is None else (
        {AGENT: args.workers, MODEL: args.workers, RESOURCES: max(1, args.workers // 2)} if args.workers > 1 else {})
    if not args.system.startswith("gymctl_separated"):
        workers = {}
    print(json.dumps(probe(args.system, args.in_flight, args.ideal, args.driver, args.requests, args.log_dir, args.system_nofile,
                           workers=workers, rollout_s=args.rollout_s)))


if __name__ == "__main__":
    main()
