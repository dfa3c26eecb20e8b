"""Bad input around NeMo Gym servers: each a clear `Type: message` (what, where, what to do), never a traceback.

The servers here are tiny stand-ins laid out as a NeMo Gym checkout (their code imports `nemo_gym`, so gymctl
treats them as NeMo Gym servers); they need no NeMo Gym install.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

CONFIG = "resources_servers/fake_env/configs/fake_env.yaml"
YAML = "fake_env:\n  resources_servers:\n    fake_env:\n      entrypoint: app.py\n"
RAY_OFF = "\n\nclass FakeServer:\n    ray_enabled = False  # as NeMo Gym's own servers say it: no Ray cluster at start\n"
SLEEPER = "try:\n    import nemo_gym  # noqa: F401\nexcept ImportError:\n    pass\nimport time\n" + RAY_OFF + "\n\ntime.sleep(600)  # never serves\n"
NEMO_APP = "from nemo_gym.base_resources_server import SimpleResourcesServer  # noqa: F401\n" + RAY_OFF


def checkout(root: Path, app: str, *, venv: bool = False) -> Path:
    server = root / "resources_servers/fake_env"
    (server / "configs").mkdir(parents=True)
    (server / "app.py").write_text(app)
    (server / "configs/fake_env.yaml").write_text(YAML)
    if venv:  # a .venv whose python is gymctl's own interpreter: it has no nemo_gym
        (server / ".venv/bin").mkdir(parents=True)
        (server / ".venv/bin/python").symlink_to(sys.executable)
    return root


def run(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gymctl", "run", "-c", CONFIG, "--set", f"head_server.port={free_port()}", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("topology", ["all-in-one", "separated"])
def test_missing_venv_says_where_it_looked_and_how_to_create_it(tmp_path, topology):
    root = checkout(tmp_path, NEMO_APP)
    r = run(root, "--topology", topology)
    assert r.returncode == 1, r.stderr
    venv = root / "resources_servers/fake_env/.venv/bin/python"
    assert f"StartupError: fake_env is a NeMo Gym server (resources_servers/fake_env) and its Python is missing; looked for: {venv}" in r.stderr
    assert "uv venv --seed --python 3.13 .venv" in r.stderr and "gymctl.nemo_gym.python" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("topology", ["all-in-one", "separated"])
def test_a_server_that_exits_at_start_is_reported_with_its_log_tail(tmp_path, topology):
    root = checkout(tmp_path, NEMO_APP, venv=True)  # its python cannot import nemo_gym: it exits at once
    r = run(root, "--topology", topology)
    assert r.returncode == 1, r.stderr
    assert "StartupError: fake_env exited with code 1 while starting: ModuleNotFoundError: No module named 'nemo_gym'" in r.stderr
    assert "fake_env" in r.stderr and "| Traceback (most recent call last):" in r.stderr  # its own output, prefixed, is the log tail


@pytest.mark.parametrize("topology", ["all-in-one", "separated"])
def test_a_server_that_never_answers_is_stopped_after_the_bounded_wait(tmp_path, topology):
    root = checkout(tmp_path, SLEEPER, venv=True)
    t0 = time.monotonic()
    r = run(root, "--topology", topology, "+server_spinup_timeout_seconds=2")
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert "did not answer GET http://127.0.0.1:" in r.stderr and "/ within 2 s (server_spinup_timeout_seconds)" in r.stderr
    assert "StartupError: fake_env exited with" in r.stderr
    assert took < 30


@pytest.mark.parametrize(("extra", "message"), [
    (["+dry_run=true"], "ConfigError: command line: dry_run: NeMo Gym's dry_run=True cannot be honoured: gymctl neither builds venvs nor has a dry run"),
    (["--set", "gymctl.instances.fake_env.replicas=2"], "fake_env is a NeMo Gym server: it runs once"),
    (["--set", "gymctl.instances.fake_env.runtime=nemo"],
     "gymctl.instances.fake_env.runtime: 'nemo' is not a runtime; choose one of: gymctl, nemo_gym; did you mean 'nemo_gym'?"),
])
def test_a_key_gymctl_cannot_honour_is_named(tmp_path, extra, message):
    root = checkout(tmp_path, NEMO_APP, venv=True)
    r = run(root, "--topology", "separated", *extra)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
