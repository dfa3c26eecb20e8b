"""The image build context: where it is prepared, and that a server image gets gymctl's source and the server set only."""

from __future__ import annotations

import shutil
import subprocess

from gymctl.config import paths
from gymctl.docker import context
from tests.conftest import REPO


def test_a_checkout_builds_in_images_context_and_a_wheel_install_in_the_users_cache(tmp_path, monkeypatch):
    assert context.default_context_dir() == REPO / "images" / ".context"
    package = tmp_path / "site-packages" / "gymctl"
    (package / "_bundled" / "images").mkdir(parents=True)
    monkeypatch.setattr(paths, "files", lambda name: package)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert context.default_context_dir() == tmp_path / "cache" / "gymctl" / "build-context"


def test_the_shared_context_holds_the_server_set_and_gymctls_source_without_host_tooling(tmp_path, monkeypatch):
    # gymctl as installed from a wheel: its source plus the _bundled copy of servers/ and templates.
    package = tmp_path / "site-packages" / "gymctl"
    shutil.copytree(REPO / "gymctl", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "servers", package / "_bundled" / "servers", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    monkeypatch.setattr(context, "PACKAGE_ROOT", package)
    calls = []
    monkeypatch.setattr(context.subprocess, "run", lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0, "", ""))
    root = tmp_path / "ctx"
    context.BuildContext(root).prepare_shared()
    assert calls and calls[0][1:4] == ["-m", "pip", "wheel"]  # one wheelhouse, built on the host
    assert (root / "wheels" / "requirements.txt").read_text().splitlines() == sorted(context.SERVER_REQUIREMENTS)
    assert (root / "Dockerfile").read_text() == (REPO / "images" / "Dockerfile").read_text()
    shipped = {p.name for p in (root / "gymctl").iterdir()}
    assert {"server", "head", "cli", "config", "runtime"} <= shipped
    assert not shipped & {"_bundled", "docker", "compose", "__pycache__"}
    assert not (root / "gymctl" / "cli" / "build_cmd.py").exists() and (root / "gymctl" / "cli" / "serve_cmd.py").is_file()
