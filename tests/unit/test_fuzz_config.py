"""Property tests of the config loader: arbitrary bytes, arbitrary YAML and overrides give a config or a ConfigError,
never another exception (which the CLI would show as a traceback)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gymctl.cli.errors import run_app
from gymctl.cli.main import app
from gymctl.config import load_config
from gymctl.errors import ConfigError, UsageError
from tests.conftest import REPO, SCRIPTED_CONFIG

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4), max_leaves=15)
SERVER_TYPES = ["responses_api_models", "resources_servers", "responses_api_agents", "environment_servers"]


@st.composite
def config_like(draw: Any) -> Any:
    """Trees shaped like a config (instance -> server type -> impl -> block) with arbitrary values inside."""
    instances = draw(st.dictionaries(st.sampled_from(["policy_model", "x", "head_server", "gymctl", "config_paths", "policy_api_key"]),
                                     st.one_of(trees, st.dictionaries(st.sampled_from(SERVER_TYPES), st.dictionaries(
                                         st.sampled_from(["scripted_model", "simple_agent", "nope"]), trees, max_size=2), max_size=2)), max_size=4))
    return instances


def _load(tmp: Path, data: bytes) -> None:
    path = tmp / "c.yaml"
    path.write_bytes(data)
    try:
        load_config([str(path)], cwd=tmp, env_yaml=False)
    except ConfigError as e:
        assert str(e) and "Traceback" not in str(e)


@FUZZ
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_a_config_error_not_a_crash(data):
    with tempfile.TemporaryDirectory(prefix="i15_fuzz_") as tmp:
        _load(Path(tmp), data)


@FUZZ
@given(tree=st.one_of(trees, config_like()))
def test_arbitrary_yaml_gives_a_config_error_not_a_crash(tree):
    with tempfile.TemporaryDirectory(prefix="i15_fuzz_") as tmp:
        _load(Path(tmp), yaml.safe_dump(tree, allow_unicode=True).encode())


@FUZZ
@given(overrides=st.lists(st.text(alphabet=st.sampled_from("+=.[]{},:$ab01_ \"'\\"), max_size=20), max_size=3))
def test_arbitrary_overrides_give_a_config_error_not_a_crash(overrides):
    try:
        load_config([str(REPO / "servers" / SCRIPTED_CONFIG)], overrides, cwd=REPO, env_yaml=False)
    except (ConfigError, UsageError) as e:  # both are shown as one line by the CLI
        assert str(e)


@pytest.mark.parametrize(("content", "says"), [
    (bytes(range(256)) * 2, "not UTF-8 text"),
    (b"\x00" * 64, "NUL bytes"),
    (b"a: \x01\n", "not valid YAML text"),
])
def test_cli_names_a_non_text_config_file_without_a_traceback(tmp_path, capsys, content, says):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        run_app(app, ["render", "-c", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code in (1, 2)
    assert says in err and str(path) in err and "Traceback" not in err


def test_cli_names_a_directory_given_as_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_app(app, ["render", "-c", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code in (1, 2) and "directory" in err and "not found" not in err and "Traceback" not in err
