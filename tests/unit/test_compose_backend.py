"""The real and the fake ComposeBackend keep the protocol's shape; the real one hands secrets to compose's process only."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from gymctl.docker.backend import ComposeBackend, default_backend, use_backend
from gymctl.docker.docker_backend import DockerBackend, _stop_waves
from gymctl.docker.fake import FakeBackend
from gymctl.errors import DockerError

PROTOCOL_METHODS = sorted(n for n, v in vars(ComposeBackend).items() if inspect.isfunction(v) and not n.startswith("_"))


@pytest.mark.parametrize("impl", [DockerBackend, FakeBackend])
def test_implementations_have_the_protocols_signatures(impl):
    for name in PROTOCOL_METHODS:
        want = inspect.signature(getattr(ComposeBackend, name))
        got = inspect.signature(getattr(impl, name))
        assert got == want, f"{impl.__name__}.{name}{got} differs from ComposeBackend.{name}{want}"


def test_use_backend_swaps_the_default_and_restores_it():
    real = default_backend()
    assert isinstance(real, DockerBackend)
    fake = FakeBackend()
    with use_backend(fake):
        assert default_backend() is fake
        from gymctl.docker.cleanup import remove_labelled

        fake.add_stray("p", "by-hand")
        assert remove_labelled("p") == {"containers": 1, "networks": 0, "volumes": 0}  # through the swapped backend
    assert default_backend() is real


@pytest.fixture
def fake_docker_cli(tmp_path, monkeypatch) -> Path:
    """A `docker` on PATH that answers `compose version` and records each compose command's argv and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        'case "$*" in *"compose version"*) echo 2.29.0; exit 0;; esac\n'
        f'echo "$*" >> {record}.argv\n'
        f"env >> {record}.env\n"
        'case "$*" in *" up "*|*" up") [ -n "$FAIL_UP" ] && { echo "Bind for 127.0.0.1:11000 failed: port is already allocated" >&2; exit 1; };; esac\n'
        "exit 0\n"
    )
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return record


def test_compose_up_passes_secrets_to_the_compose_process_only(fake_docker_cli, tmp_path):
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text("services: {}\n")
    environ_before = dict(os.environ)
    DockerBackend().compose_up("p1", compose_file, env={"GYMCTL_SECRET_X": "s3cret"}, detach=True, remove_orphans=True, pull="never")
    assert dict(os.environ) == environ_before
    argv = Path(f"{fake_docker_cli}.argv").read_text().split()
    assert argv[:2] == ["compose", "--file"] and "--project-name" in argv and argv[argv.index("--project-name") + 1] == "p1"
    assert argv[argv.index("up"):] == ["up", "--detach", "--remove-orphans", "--pull", "never"]
    assert "GYMCTL_SECRET_X=s3cret" in Path(f"{fake_docker_cli}.env").read_text().splitlines()


def test_compose_up_failure_is_a_docker_error_with_compose_stderr(fake_docker_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIL_UP", "1")
    with pytest.raises(DockerError) as info:
        DockerBackend().compose_up("p1", None)
    assert "port is already allocated" in info.value.stderr
    assert Path(info.value.argv[0]).name == "docker" and info.value.argv[1] == "compose" and "up" in info.value.argv
    assert str(info.value).startswith("docker compose up failed: Bind for 127.0.0.1:11000 failed")


def _container(service: str, depends_on: str = "") -> SimpleNamespace:
    return SimpleNamespace(name=f"p-{service}-1", labels={"com.docker.compose.service": service, "com.docker.compose.depends_on": depends_on})


def test_down_stops_dependents_before_what_they_depend_on():
    waves = _stop_waves([_container("head"), _container("model", "head:service_healthy:false"),
                         _container("agent", "head:service_healthy:false,model:service_started:false")])
    assert [[c.name for c in w] for w in waves] == [["p-agent-1"], ["p-model-1"], ["p-head-1"]]
