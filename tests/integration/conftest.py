"""Real-Docker tests: skipped with the reason when no engine or Compose v2 — except in CI, where a skip fails the run
(the hook is in tests/conftest.py).

Images are built once per session (unchanged ones are skipped by `gymctl build` itself); every stack a test
starts gets its own project name and free ports, and whatever carries its label is removed afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, http_json

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # ryuk's image cannot be pulled here; we clean by label
AGENT = "example_single_tool_call_simple_agent"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=1)
def docker_unusable() -> str | None:
    """Why the docker tests cannot run here, or None."""
    try:
        from gymctl.docker.cli import require_docker

        require_docker()
    except Exception as e:  # noqa: BLE001 -- any failure is the reason the docker tests cannot run
        return f"{type(e).__name__}: {e}"
    return None


LAB_LAST = "test_delete_leaves_no_trace"  # tests/integration/test_lab.py: deletes the session's lab, so it runs after every lab test


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("docker") and docker_unusable():
            item.add_marker(pytest.mark.skip(reason=f"needs Docker: {docker_unusable()}"))
    # One lab per machine and per session: every test using the `lab` fixture runs together, the delete test last.
    uses_lab = [i for i in items if "lab" in getattr(i, "fixturenames", ()) and i.name != LAB_LAST]
    last = [i for i in items if i.name == LAB_LAST]
    if uses_lab or last:
        first_lab = min(items.index(i) for i in uses_lab + last)
        rest = [i for i in items if i not in uses_lab and i not in last]
        items[:] = rest[:first_lab] + uses_lab + last + rest[first_lab:]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def gymctl(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gymctl", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@dataclass
class StackUnderTest:
    """A project name and free ports for one stack of the example environment."""

    project: str
    head_port: int
    agent_port: int

    @property
    def head_url(self) -> str:
        return f"http://127.0.0.1:{self.head_port}"

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    def config_args(self, *extra: str) -> list[str]:
        return ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={self.head_port}",
                "--set", f"{AGENT}.responses_api_agents.simple_agent.port={self.agent_port}", *extra]

    @property
    def headers(self) -> dict[str, str]:
        """The stack's token as `gymctl up` kept it (run from the repo), or the environment's; none with --no-auth."""
        kept = REPO / ".gymctl" / "stacks" / self.project / "auth_token"
        token = kept.read_text().strip() if kept.is_file() else os.environ.get("GYMCTL_AUTH_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def instances(self) -> dict[str, dict]:
        return {i["process_name"]: i for i in http_json(self.head_url + "/server_instances", headers=self.headers)[1]}  # type: ignore[union-attr]

    def labelled(self) -> dict[str, list[str]]:
        from gymctl.docker.cli import engine_client
        from gymctl.docker.state import labelled

        return labelled(engine_client(), self.project)


def remove_project(project: str) -> None:
    from gymctl.docker.cleanup import remove_labelled

    subprocess.run(["docker", "compose", "-p", project, "down", "--remove-orphans", "-t", "2"], capture_output=True,
                   cwd="/", timeout=120)
    remove_labelled(project)


@pytest.fixture
def stack_ut() -> Iterator[StackUnderTest]:
    head, agent = free_ports(2)
    st = StackUnderTest(f"gymctl-it-{uuid.uuid4().hex[:8]}", head, agent)
    yield st
    remove_project(st.project)


@pytest.fixture(scope="session")
def example_images() -> list:
    """The example's images (both topologies), built once; the base image first if the engine lacks it."""
    if docker_unusable():
        pytest.skip(f"needs Docker: {docker_unusable()}")
    from docker.errors import APIError

    from gymctl.compose.images import image_units
    from gymctl.config import load_config
    from gymctl.docker.base_image import base_image_exists, build_base_image
    from gymctl.docker.images import build_images

    if not base_image_exists():
        build_base_image()
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    for attempt in range(3):
        try:
            return build_images(image_units(cfg))
        except APIError as e:  # another session's build pruned at the same moment: the images are built, try again
            if "prune operation is already running" not in str(e) or attempt == 2:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def collect(st: StackUnderTest, out: Path, repeats: int = 2) -> list[dict]:
    data = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
    r = gymctl("collect", "--head", st.head_url, "--agent", AGENT, "--input", str(data), "--output", str(out), "--num-repeats", str(repeats))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def lab(example_images: list[Any]) -> Iterator[dict[str, Any]]:
    """The session's one lab (one per machine): 3 nodes in a swarm, node 1 the manager with two fake GPUs; its create time is printed.

    Shared by tests/integration/test_lab.py and test_swarm*.py; test_lab.py's test_delete_leaves_no_trace runs last of them.
    """
    from gymctl.docker.lab import delete_lab

    (port,) = free_ports(1)
    t0 = time.monotonic()
    try:
        r = gymctl("cluster", "create", "--nodes", "3", "--swarm", "--gpu-nodes", "1", "--gpus-per-node", "2",
                   "--registry-port", str(port), "--json", timeout=300)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        print(f"\nlab fixture: cluster create took {time.monotonic() - t0:.1f} s")
        yield info
    finally:
        delete_lab()
