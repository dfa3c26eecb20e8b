"""Scale probe: N rollouts in flight against one system, with each process's open files watched.

`python -m bench.scale --in-flight 10000 --ideal 200` starts the upstream stub (delay per model call
in_flight / (2 * ideal), so a rollout takes in_flight / ideal seconds), a gymctl system, and drives it
either with the bench's neutral client (`--driver bench`, the default) or with `gymctl collect`
(`--driver collect`, failures counted from `_failures.jsonl` after the collector's own retries).
One JSON line: failures and their first samples (with when they happened), the steady rate of the
ideal, the peak open files of every process of the system and of the driver, and the peak of
connections between any (source address, destination address:port) pair.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
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


class FdWatch:
    """Samples open files per process (the system's, the driver's, the stub's) every `interval` seconds."""

    def __init__(self, procs: callable, interval: float = 1.0) -> None:
        self.procs = procs
        self.interval = interval
        self.peak: dict[str, int] = collections.defaultdict(int)
        self.peak_pss = 0.0
        self.peak_pair = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            procs = self.procs()
            for label, p in procs:
                try:
                    n = p.num_fds()
                except psutil.Error:
                    continue
                self.peak[label] = max(self.peak[label], n)
            self.peak_pss = max(self.peak_pss, pss_mib([p for label, p in procs if not label.startswith(("driver", "stub"))]))

    def __enter__(self) -> FdWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _labelled(system: System, stub: StubProcess, driver: psutil.Process | None) -> list[tuple[str, psutil.Process]]:
    out = [(f"system:{' '.join(p.cmdline()[2:4]) or p.name()}#{p.pid}", p) for p in system.processes()]
    if stub.proc is not None:
        out.append(("stub", psutil.Process(stub.proc.pid)))
    if driver is not None:
        out.append(("driver", driver))
    return out


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


def probe(system_name: str, in_flight: int, ideal: float, driver: str, requests: int | None, log_dir: Path,
          system_nofile: int | None = None) -> dict:
    raise_open_files_limit(in_flight * 2 + 1024)
    rollout_s = in_flight / ideal
    delay = rollout_s / 2
    requests = requests or in_flight * 2
    stub = StubProcess(delay_s=delay)
    stub.start()
    system = _limited(SYSTEMS[system_name](log_dir), system_nofile)
    result: dict = {"system": system_name, "driver": driver, "in_flight": in_flight, "requests": requests, "system_nofile": system_nofile,
                    "ideal_rollouts_per_s": ideal, "stub_delay_s": round(delay, 3)}
    try:
        result["ready_s"] = round(system.start(stub.url), 2)
        _set_stub(stub.url, delay_s=delay)
        time.sleep(0.5)
        pss_ready = pss_mib(system.processes())
        cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in system.processes())
        if driver == "bench":
            run_url = system.agent_run_url()
            me = psutil.Process()
            with FdWatch(lambda: _labelled(system, stub, me)) as watch:
                load = asyncio.run(run_load(run_url, load_rows(), requests, in_flight, ramp_s=rollout_s,
                                            timeout_s=max(120.0, 10 * rollout_s)))
            result.update(failures=load.failures, failure_samples=load.failure_samples, deferred=load.deferred,
                          failed_at_s=[round(t, 1) for t in load.failed_at[:3]] + [round(t, 1) for t in load.failed_at[-3:]],
                          rollouts_per_s=round(load.steady_rate(rollout_s), 1), elapsed_s=round(load.elapsed_s, 1),
                          succeeded=load.succeeded)
        else:
            with tempfile.TemporaryDirectory(prefix="gymctl-i16-collect-") as tmp:
                work = Path(tmp)
                t0 = time.monotonic()
                proc, out = _collect(system.head_url, in_flight, requests, max(120.0, 10 * rollout_s), work)
                with FdWatch(lambda: _labelled(system, stub, psutil.Process(proc.pid))) as watch:
                    rc = proc.wait()
                elapsed = time.monotonic() - t0
                failures_path = out.with_name(out.stem + "_failures.jsonl")
                fails = [json.loads(line) for line in failures_path.read_text().splitlines()] if failures_path.exists() else []
                written = sum(1 for _ in out.open()) if out.exists() else 0
                result.update(failures=len(fails), failure_samples=[f.get("reason", "")[:300] for f in fails[:5]], exit_code=rc,
                              succeeded=written, elapsed_s=round(elapsed, 1), rollouts_per_s=round(written / elapsed, 1),
                              collect_log_tail=(work / "collect.log").read_text()[-1500:])
        cpu1 = sum(p.cpu_times().user + p.cpu_times().system for p in system.processes())
        result["cpu_ms_per_rollout"] = round((cpu1 - cpu0) * 1000 / max(1, result.get("succeeded", 0)), 2)
        result["peak_open_files"] = dict(watch.peak)
        result["pss_ready_mib"] = round(pss_ready, 1)
        result["pss_peak_mib"] = round(watch.peak_pss, 1)
        result["kib_per_in_flight"] = round(max(0.0, watch.peak_pss - pss_ready) * 1024 / in_flight, 1)
        result["achieved_of_ideal"] = round(result["rollouts_per_s"] / ideal, 3)
    finally:
        try:
            system.stop()
        except Exception:  # noqa: BLE001 - a failed stop still kills
            system.kill()
        stub.stop()
    result["system_log_tail"] = "".join(system.log_path.read_text(errors="replace").splitlines(keepends=True)[-15:]) if system.log_path.exists() else ""
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="gymctl_all_in_one", choices=list(SYSTEMS))
    parser.add_argument("--in-flight", type=int, default=10000)
    parser.add_argument("--ideal", type=float, default=200.0, help="ideal rollouts/s (sets the stub's delay)")
    parser.add_argument("--driver", choices=("bench", "collect"), default="bench")
    parser.add_argument("--requests", type=int, default=None, help="rollouts in all (default: 2 x in-flight)")
    parser.add_argument("--system-nofile", type=int, default=None, help="lower the system's open-files limit to this")
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / f"gymctl-i16-scale-{os.getpid()}")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.system, args.in_flight, args.ideal, args.driver, args.requests, args.log_dir, args.system_nofile)))


if __name__ == "__main__":
    main()
