"""Shared fixtures: free ports, and a real `gymctl run` deployment of the example in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Tests CI must really run: under CI=true a skip of a test with one of these markers fails the run.
MUST_RUN_IN_CI = {"docker": "a Docker test", "nemo_gym": "a NeMo Gym compatibility test", "netns": "a multi-host test (network namespaces)"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    for marker, what in MUST_RUN_IN_CI.items():
        if item.get_closest_marker(marker):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"{what} was skipped in CI (CI=true), which counts as a failure: {reason}"
            return


EXAMPLE_CONFIG = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
SCRIPTED_CONFIG = "responses_api_models/scripted_model/configs/scripted_model.yaml"
OPENAI_CONFIG = "responses_api_models/openai_model/configs/openai_model.yaml"
EXAMPLE_DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
AGENT = "example_single_tool_call_simple_agent"


def seconds_until(predicate: Callable[[], bool], timeout: float, poll_s: float = 0.05) -> float:
    """How long until `predicate()` holds (a recovery time the fault tests report); fails past `timeout`."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, f"not within {timeout} s"
        time.sleep(poll_s)
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, body: object | None = None, timeout: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def wait_http(url: str, timeout: float = 30.0, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, _ = http_json(url, timeout=2)
            if code == status:
                return
            last = code
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout} s (last: {last})")


@dataclass
class Deployment:
    """A `gymctl run` subprocess and how to reach it."""

    proc: subprocess.Popen
    head_url: str
    log_path: Path

    def instances(self) -> list[dict]:
        return http_json(self.head_url + "/server_instances")[1]  # type: ignore[return-value]

    def url_of(self, name: str) -> str:
        for item in self.instances():
            if item["process_name"] == name:
                return item.get("host_url") or item["url"]
        raise KeyError(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_deployment(args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None, timeout: float = 30.0) -> Deployment:
    port = free_port()
    log_path = tmp_path / f"gymctl-run-{port}.log"
    with open(log_path, "wb") as log:  # the child holds its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "gymctl", "run", *args, "--set", f"head_server.port={port}"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    dep = Deployment(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gymctl run exited with {proc.returncode}:\n{dep.log()}")
            try:
                if http_json(dep.head_url + "/health", timeout=2)[0] == 200:
                    return dep
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gymctl run not ready in {timeout} s:\n{dep.log()}")
    except BaseException:
        stop_deployment(dep)
        raise


def interrupt(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """Ctrl-C for a child we started (its own session): SIGINT, then SIGKILL to its process group after `timeout`; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def stop_deployment(dep: Deployment, timeout: float = 15.0) -> int | None:
    return interrupt(dep.proc, timeout)


@pytest.fixture
def gymctl_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """The example environment all-in-one on the scripted policy, head on a free port."""
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path)
    yield dep
    stop_deployment(dep)


def example_rows() -> list[dict]:
    return [json.loads(line) for line in EXAMPLE_DATA.read_text().splitlines() if line.strip()]
