"""Where NeMo Gym 0.7.0 lives beside gymctl (scripts/install_nemo_gym.sh puts it there), for compatibility tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENV = Path(os.environ.get("GYMCTL_NEMO_GYM_VENV", Path.home() / ".cache/gymctl-bench/nemo-gym-0.7.0"))


def nemo_gym_bin(name: str) -> Path:
    """The path of one of NeMo Gym's commands; skips the test (with how to install) when it is absent.

    Under CI=true such a skip fails the run (tests/conftest.py): CI must run every compatibility test.
    """
    path = VENV / "bin" / name
    if not (VENV / ".complete").exists() or not path.exists():
        pytest.skip(f"NeMo Gym 0.7.0 is not installed at {VENV}; run scripts/install_nemo_gym.sh")
    return path
