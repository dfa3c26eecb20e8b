"""`gymctl up/restart` failures as a user reads them, on the fake Docker backend: one `Type: message`, the fix, no traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from gymctl.docker.fake import FakeBackend
from tests.conftest import EXAMPLE_CONFIG, SCRIPTED_CONFIG

AGENT = "example_single_tool_call_simple_agent"
UP = ["up", "-t", "separated", "-p", "k-ut", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--timeout", "5"]


def gymctl(*args: str) -> tuple[int, str]:
    """Exit code and stderr of `gymctl ARGS`, run in-process through the CLI's error handling."""
    from gymctl.cli.errors import run_app
    from gymctl.cli.main import app

    with CliRunner().isolation() as (_out, err, *_):
        try:
            run_app(app, list(args), prog_name="gymctl")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        sys.stderr.flush()
        return code, err.getvalue().decode()


@pytest.fixture
def fake(fake_stack: FakeBackend) -> FakeBackend:
    return fake_stack


def test_up_with_a_crashing_container_names_it_with_exit_code_and_logs(fake):
    fake.make_exit("policy_model", 2, logs=["omegaconf: environment variable GYMCTL_X is not set"])
    code, err = gymctl(*UP)
    assert code == 1
    assert "StartupError: policy_model: container exited with code 2 while starting" in err
    assert "--- last log lines ---\nomegaconf: environment variable GYMCTL_X is not set" in err
    assert "Traceback" not in err


def test_up_with_a_published_port_taken_starts_nothing(fake):
    fake.take_port(11002)
    code, err = gymctl(*UP, "--set", f"{AGENT}.responses_api_agents.simple_agent.port=11002")
    assert code == 1
    assert f"PortInUseError: {AGENT} (published port): port 11002 on 127.0.0.1 is already in use" in err
    assert fake.calls == []


def test_restart_of_an_unknown_instance_lists_the_known_ones(fake):
    assert gymctl(*UP)[0] == 0
    code, err = gymctl("restart", "policy_modle", "-p", "k-ut")
    assert code == 2
    assert "UsageError: no container serves instance 'policy_modle'; did you mean 'policy_model'?" in err
    assert ("compose_restart", "k-ut") not in fake.calls
