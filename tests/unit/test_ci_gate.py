"""Under CI=true a skipped Docker or NeMo Gym test fails the run: CI cannot go green without running them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

TESTS = '''
import pytest

@pytest.mark.nemo_gym
def test_needs_nemo_gym():
    pytest.skip("NeMo Gym 0.7.0 is not installed")

@pytest.mark.docker
def test_needs_docker():
    pytest.skip("needs Docker")

def test_plain_skip():
    pytest.skip("an ordinary skip")
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(ROOT_CONFTEST.read_text())
    (tmp_path / "test_gate.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    docker: d\n    nemo_gym: n\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_in_ci_a_skipped_nemo_gym_or_docker_test_fails_the_run(tmp_path: Path) -> None:
    r = _run(tmp_path, "true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 failed" in r.stdout and "1 skipped" in r.stdout, r.stdout
    assert "a NeMo Gym compatibility test was skipped in CI" in r.stdout
    assert "a Docker test was skipped in CI" in r.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_they_skip_saying_why(tmp_path: Path, ci: str | None) -> None:
    r = _run(tmp_path, ci)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 skipped" in r.stdout, r.stdout
