"""Where config and server paths resolve: the working directory, GYMCTL_SERVERS_DIR, then the shipped servers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gymctl.config import load_config, paths
from gymctl.errors import ConfigError
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG

CONFIGS = [EXAMPLE_CONFIG, SCRIPTED_CONFIG]


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Path:
    """gymctl as a wheel lays it out: site-packages/gymctl/_bundled/{servers,compose_templates,images}."""
    package = tmp_path / "site-packages" / "gymctl"
    for name in paths.SHIPPED:
        shutil.copytree(REPO / name, package / "_bundled" / name, ignore=shutil.ignore_patterns("__pycache__", ".*", "tests"))
    monkeypatch.setattr(paths, "files", lambda name: package if name == "gymctl" else pytest.fail(name))
    monkeypatch.delenv("GYMCTL_SERVERS_DIR", raising=False)
    return package / "_bundled"


@pytest.fixture
def empty_cwd(tmp_path) -> Path:
    cwd = tmp_path / "work"
    cwd.mkdir()
    return cwd


def test_a_checkout_uses_the_repository_root_folders(monkeypatch):
    monkeypatch.delenv("GYMCTL_SERVERS_DIR", raising=False)
    assert paths.is_checkout()
    assert paths.servers_dir() == REPO / "servers"
    assert paths.shipped_dir("compose_templates") == REPO / "compose_templates"
    assert (paths.shipped_dir("images") / "Dockerfile").is_file()


def test_installed_the_seed_configs_resolve_from_the_packaged_servers(installed, empty_cwd):
    assert not paths.is_checkout() and paths.servers_dir() == installed / "servers"
    assert paths.search_roots(empty_cwd) == [empty_cwd.resolve(), (installed / "servers").resolve()]
    cfg = load_config(CONFIGS, cwd=empty_cwd, env_yaml=False)
    served = {name: inst for name, inst in cfg.instances.items() if inst.alias_of is None}
    assert set(served) == {"example_single_tool_call", "example_single_tool_call_simple_agent", "policy_model"}
    for inst in served.values():
        assert inst.dir_path is not None and inst.dir_path.is_relative_to(installed / "servers"), inst
    assert paths.shipped_dir("compose_templates") == installed / "compose_templates"


def test_the_working_directory_wins_then_gymctl_servers_dir_then_the_shipped_servers(installed, empty_cwd, tmp_path, monkeypatch):
    rel = "resources_servers/example_single_tool_call"
    extra = tmp_path / "mine"
    shutil.copytree(installed / "servers" / rel, extra / rel)
    monkeypatch.setenv("GYMCTL_SERVERS_DIR", str(extra))
    assert paths.resolve_existing(rel, empty_cwd)[0] == (extra / rel).resolve()
    assert paths.resolve_existing("responses_api_models/scripted_model", empty_cwd)[0] == installed / "servers/responses_api_models/scripted_model"
    shutil.copytree(installed / "servers" / rel, empty_cwd / rel)
    found, tried = paths.resolve_existing(rel, empty_cwd)
    assert found == (empty_cwd / rel).resolve() and tried == [empty_cwd.resolve() / rel]


def test_installed_a_missing_config_says_where_it_looked(installed, empty_cwd):
    with pytest.raises(ConfigError) as info:
        load_config(["resources_servers/nope/configs/nope.yaml"], cwd=empty_cwd, env_yaml=False)
    msg = str(info.value)
    assert "not found" in msg and str(empty_cwd) in msg and str(installed / "servers") in msg


def test_only_the_shipped_folders_are_known():
    with pytest.raises(ValueError):
        paths.shipped_dir("tests")
