"""ServerSettings: every GYMCTL_* variable in one place; explicit argument > environment > config > default."""

from __future__ import annotations

import pytest

from gymctl.server.auth import auth_token
from gymctl.server.settings import ServerSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("PORT", "HEAD_URL", "AUTH_TOKEN", "TELEMETRY", "CONFIG_FILE", "READY_FD", "SEPARATED_START"):
        monkeypatch.delenv(f"GYMCTL_{name}", raising=False)


def test_explicit_argument_beats_environment_beats_default(monkeypatch):
    assert ServerSettings().port is None and ServerSettings().heartbeat_s == 2.0
    monkeypatch.setenv("GYMCTL_PORT", "9001")
    monkeypatch.setenv("GYMCTL_HEARTBEAT_S", "0.5")
    assert ServerSettings().port == 9001 and ServerSettings().heartbeat_s == 0.5
    assert ServerSettings(port=8000).port == 8000


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("GYMCTL_PORT", "")
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "")
    assert ServerSettings().port is None and auth_token() is None


def test_the_runtime_variables_are_fields(monkeypatch):
    monkeypatch.setenv("GYMCTL_CONFIG_FILE", "/etc/gymctl/config.yaml")
    monkeypatch.setenv("GYMCTL_READY_FD", "7")
    monkeypatch.setenv("GYMCTL_SEPARATED_START", "exec")
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "t0k")
    s = ServerSettings()
    assert (s.config_file, s.ready_fd, s.separated_start, s.auth_token) == ("/etc/gymctl/config.yaml", 7, "exec", "t0k")
    assert auth_token() == "t0k"


def test_a_malformed_variable_is_a_config_error_naming_it(monkeypatch):
    from gymctl.errors import ConfigError

    monkeypatch.setenv("GYMCTL_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"^environment: GYMCTL_PORT: .*\(unset it or give a valid value\)"):
        ServerSettings.from_env()
    assert ServerSettings.from_env(port=8000).port == 8000  # an explicit argument still wins
