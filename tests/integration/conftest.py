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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("docker") and docker_unusable():
            item.add_marker(pytest.mark.skip(reason=f"needs Docker: {docker_unusable()}"))


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

    def instances(self) -> dict[str, dict]:
        return {i["process_name"]: i for i in http_json(self.head_url + "/server_instances")[1]}  # type: ignore[union-attr]

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
    from gymctl.compose.images import image_units
    from gymctl.config import load_config
    from gymctl.docker.base_image import base_image_exists, build_base_image
    from gymctl.docker.images import build_images

    if not base_image_exists():
        build_base_image()
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    return build_images(image_units(cfg))


def collect(st: StackUnderTest, out: Path, repeats: int = 2) -> list[dict]:
    data = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
    r = gymctl("collect", "--head", st.head_url, "--agent", AGENT, "--input", str(data), "--output", str(out), "--num-repeats", str(repeats))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
