"""`pip install gymctl` as a user gets it: the built wheel in a fresh venv, run from a directory with no servers/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path

import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, free_port

# What a source distribution holds (MANIFEST.in); copied aside so a build never writes into the checkout.
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "gymctl", "servers", "compose_templates", "images", "monitoring")
NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", ".context", ".venv", "*.egg-info", "build")
VERBS = ("run", "serve", "status", "collect", "build", "images", "render", "up", "down", "ps", "logs", "restart")
# Every module but gymctl.__main__ (importing it runs the command) and gymctl.ray (the `ray` extra's: without Ray it
# raises RayNotInstalledError, checked below).
IMPORT_ALL = ("import importlib, pkgutil, gymctl; mods = [m.name for m in pkgutil.walk_packages(gymctl.__path__, 'gymctl.') "
              "if not m.name.endswith('__main__') and not m.name.startswith('gymctl.ray')]; "
              "[importlib.import_module(m) for m in mods]; print(len(mods))")


@dataclass
class WheelVenv:
    wheel: Path
    venv: Path
    work: Path  # an empty working directory: no servers/, no configs

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GYMCTL_", "PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(argv, check=False, cwd=self.work, env=env, capture_output=True, text=True, timeout=timeout)


def _pip(python: str | Path, *args: str, timeout: float = 600) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], check=False, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> WheelVenv:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCE:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=NOT_SOURCE)
        else:
            shutil.copy2(path, src / name)
    _pip(sys.executable, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(root / "dist"), str(src))
    (wheel,) = (root / "dist").glob("gymctl-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The dependencies come from the index, pinned to what this checkout's tests run with (fast: pip's cache).
    pins = root / "constraints.txt"
    pins.write_text("".join(f"{d.metadata['Name']}=={d.version}\n" for d in distributions()
                            if d.metadata["Name"] and d.metadata["Name"].lower() != "gymctl"))
    _pip(venv / "bin" / "python", "install", "--quiet", "-c", str(pins), str(wheel))
    work = root / "work"
    work.mkdir()
    return WheelVenv(wheel, venv, work)


def test_the_wheel_carries_servers_templates_and_the_image_recipe_and_nothing_else(wheel_venv):
    names = set(zipfile.ZipFile(wheel_venv.wheel).namelist())
    bundled = "gymctl/_bundled/"
    for want in ("compose_templates/separated.yml.j2", "compose_templates/all-in-one.yml.j2", "images/Dockerfile",
                 "servers/resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
                 "servers/resources_servers/example_single_tool_call/data/example.jsonl",
                 "servers/resources_servers/example_single_tool_call/requirements.txt",
                 "servers/responses_api_models/scripted_model/app.py", "monitoring/alerts.yml"):
        assert bundled + want in names, want
    leaked = [n for n in names if "/tests/" in n or "__pycache__" in n or "/.venv/" in n or "/.context/" in n or n.endswith(".pyc")]
    assert not leaked, leaked
    assert not [n for n in names if not n.startswith(("gymctl/", "gymctl-"))]


def test_only_the_declared_dependencies_are_installed(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("python"), "-m", "pip", "list", "--format=json")
    installed = {p["name"].lower() for p in json.loads(res.stdout)}
    assert {"typer", "rich", "jinja2", "python-on-whales", "docker", "packaging", "fastapi"} <= installed
    assert not installed & {"pytest", "httpx", "testcontainers", "openai", "matplotlib"}, "a dev package leaked in"


def test_every_module_of_gymctl_imports_with_only_the_declared_dependencies(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("python"), "-c", IMPORT_ALL)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 40
    ray = wheel_venv.run(wheel_venv.bin("python"), "-c", "import gymctl.ray")
    assert ray.returncode != 0 and "install it with: pip install 'gymctl[ray]'" in ray.stderr  # the extra, said plainly


def test_version_and_every_verbs_help(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("gymctl"), "--version")
    assert res.returncode == 0 and res.stdout.strip() == "gymctl 0.1.0", res.stdout + res.stderr
    for verb in VERBS:
        res = wheel_venv.run(wheel_venv.bin("gymctl"), verb, "--help")
        assert res.returncode == 0 and "Usage:" in res.stdout, f"gymctl {verb} --help: {res.stderr}"
    for ng in ("ng_run", "ng_status", "ng_collect_rollouts"):
        res = wheel_venv.run(wheel_venv.bin(ng), "--help")
        assert res.returncode == 0 and f"Usage: {ng}" in res.stdout, f"{ng} --help: {res.stderr}"


def test_render_from_a_directory_with_no_servers(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("gymctl"), "render", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "-t", "separated", "-o", "out/")
    assert res.returncode == 0, res.stderr
    compose = (wheel_venv.work / "out" / "docker-compose.yml").read_text()
    for service in ("head", "example_single_tool_call", "example_single_tool_call_simple_agent", "policy_model"):
        assert f"\n  {service}:" in compose, service


def test_the_readme_job_collects_every_rollout_from_an_installed_gymctl(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("python"), "-c", "from gymctl.config.paths import servers_dir; print(servers_dir())")
    servers = Path(res.stdout.strip())
    assert servers.is_relative_to(wheel_venv.venv), servers  # the packaged copy, not the checkout's
    data = servers / "resources_servers/example_single_tool_call/data/example.jsonl"
    res = wheel_venv.run(wheel_venv.bin("gymctl"), "collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG,
                         "--set", f"head_server.port={free_port()}", "--agent", AGENT, "--input", str(data),
                         "--output", "out.jsonl", "--num-repeats", "2")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (wheel_venv.work / "out.jsonl").read_text().splitlines()]
    tasks = len(data.read_text().splitlines())
    assert {(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows} == {(t, k) for t in range(tasks) for k in range(2)}
    assert all(r["reward"] == 1.0 for r in rows)
    assert f"Collected: {2 * tasks} rollouts written, 0 failed" in res.stdout


@pytest.mark.parametrize("config, says", [
    ("resources_servers/nope/configs/nope.yaml", "ConfigError: config file 'resources_servers/nope/configs/nope.yaml' not found"),
    ("resources_servers/example_single_tool_call", "ConfigError: config path 'resources_servers/example_single_tool_call' is a directory"),
])
def test_a_bad_config_path_is_one_clear_line_and_exit_2(wheel_venv, config, says):
    for verb in ("render", "run"):
        res = wheel_venv.run(wheel_venv.bin("gymctl"), verb, "-c", config, timeout=60)
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(says), res.stderr
        assert "Traceback" not in res.stderr


def test_the_seeds_input_path_resolves_against_the_shipped_servers_from_any_directory(wheel_venv):
    res = wheel_venv.run(wheel_venv.bin("gymctl"), "collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={free_port()}",
                         "--agent", AGENT, "--input", "resources_servers/example_single_tool_call/data/example.jsonl",
                         "--output", "seed.jsonl", "--num-repeats", "1")
    assert res.returncode == 0, res.stderr
    assert "Collected: 5 rollouts written, 0 failed" in res.stdout
