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


def test_the_gymctl_an_image_ships_starts_its_cli_and_serve(tmp_path):
    """What a server image copies of gymctl (host tooling left out) must still run `gymctl serve --help`."""
    import sys

    shutil.copytree(REPO / "gymctl", tmp_path / "gymctl", ignore=context.HOST_ONLY)
    r = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['gymctl', 'serve', '--help']; from gymctl.cli.main import main; main()"],
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Start ONE server instance" in r.stdout
