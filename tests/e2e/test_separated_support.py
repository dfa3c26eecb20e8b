"""Helpers for the separated-runtime e2e tests: start `gymctl run --topology separated`, find its processes, clean up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, free_port, http_json

GYMCTL = [sys.executable, "-m", "gymctl"]
EXAMPLE_ARGS = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]
# Short leases so a test sees an instance go unhealthy in seconds, not the default 6 s / 60 s.
FAST_LEASES = {"GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "1.5", "GYMCTL_DROP_S": "4"}
SERVED = ("head", "example_single_tool_call", AGENT, "policy_model")  # the alias is served by the agent's process


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*GYMCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@dataclass
class SeparatedRun:
    """A `gymctl run --topology separated` subprocess and every process it started."""

    proc: subprocess.Popen
    head_url: str
    out_path: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def children(self) -> list[psutil.Process]:
        """Live descendants (instances and their own children), remembered for the final clean-up."""
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for p in found:
            self.seen.setdefault(p.pid, p)
        return found

    def pid_of(self, name: str) -> int:
        """The pid of the live process serving `name`, as its own `NAME: serving at URL (pid N)` line says."""
        pids = [int(p) for p in re.findall(rf"^{re.escape(name)} +\| {re.escape(name)}: serving at \S+ \(pid (\d+)\)", self.output(), re.M)]
        live = {p.pid for p in self.children()}
        for pid in reversed(pids):
            if pid in live:
                return pid
        raise KeyError(f"no live process serves {name} (announced: {pids})")

    def instances(self, token: str | None = None) -> list[dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return http_json(self.head_url + "/server_instances", headers=headers)[1]  # type: ignore[return-value]

    def url_of(self, name: str, token: str | None = None) -> str:
        for item in self.instances(token):
            if item["process_name"] == name and item["status"] == "healthy":
                return item.get("host_url") or item["url"]
        raise KeyError(name)

    def leftovers(self) -> list[psutil.Process]:
        alive = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive


def start_separated(tmp_path: Path, *extra: str, env: dict[str, str] | None = None, args: list[str] | None = None,
                    cwd: Path = REPO, timeout: float = 40.0, wait_ready: bool = True) -> SeparatedRun:
    port = free_port()
    out_path = tmp_path / f"separated-{port}.out"
    argv = [*GYMCTL, "run", "--topology", "separated", *(EXAMPLE_ARGS if args is None else args), "--set", f"head_server.port={port}", *extra]
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True)
    run = SeparatedRun(proc, f"http://127.0.0.1:{port}", out_path)
    if not wait_ready:
        return run
    try:
        deadline = time.monotonic() + timeout
        while "ready in" not in run.output():
            run.children()
            if proc.poll() is not None:
                raise RuntimeError(f"gymctl run exited with {proc.returncode}:\n{run.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready in {timeout} s:\n{run.output()}")
            time.sleep(0.1)
        run.children()
        return run
    except BaseException:
        stop_separated(run)
        raise


def stop_separated(run: SeparatedRun, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
    """Signal the runtime, wait for it; kill anything it left behind (and say so by the return of leftovers())."""
    run.children()
    if run.proc.poll() is None:
        run.proc.send_signal(sig)
        try:
            run.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
    return run.proc.returncode


def kill_leftovers(run: SeparatedRun) -> None:
    for p in run.leftovers():
        with contextlib.suppress(psutil.Error):
            p.kill()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


@pytest.fixture
def separated(tmp_path):
    """Factory: start_separated(...) whose runs (and every process they started) are stopped after the test."""
    started: list[SeparatedRun] = []

    def start(*extra: str, **kw) -> SeparatedRun:
        run = start_separated(tmp_path, *extra, **kw)
        started.append(run)
        return run

    yield start
    for run in started:
        stop_separated(run)
        kill_leftovers(run)
