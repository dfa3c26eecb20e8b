"""Where NeMo Gym 0.7.0 lives beside gymctl (scripts/install_nemo_gym.sh puts it there), for compatibility tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENV = Path(os.environ.get("GYMCTL_NEMO_GYM_VENV", Path.home() / ".cache/gymctl-bench/nemo-gym-0.7.0"))


def nemo_gym_bin(name: str) -> Path:
    """The path of one of NeMo Gym's commands; skips the test (with how to install) when it is absent."""
    path = VENV / "bin" / name
    if not (VENV / ".complete").exists() or not path.exists():
        if os.environ.get("CI") == "true" and os.environ.get("GYMCTL_REQUIRE_NEMO_GYM") == "1":
            pytest.fail(f"NeMo Gym 0.7.0 is required but missing at {VENV}")
        pytest.skip(f"NeMo Gym 0.7.0 is not installed at {VENV}; run scripts/install_nemo_gym.sh")
    return path
