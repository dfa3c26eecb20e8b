"""The Docker client for the engine a command started with: an engine that does not answer is a one-line DockerError."""

from __future__ import annotations

import pytest

from gymctl.docker import contexts
from gymctl.errors import DockerError


def test_origin_client_names_the_engine_that_does_not_answer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setattr(contexts, "_ORIGIN", {"DOCKER_HOST": dead, "DOCKER_CONTEXT": None})
    with pytest.raises(DockerError) as err:
        contexts.origin_client()
    assert "this machine's engine" in str(err.value)
    assert dead in str(err.value)
    assert "Traceback" not in str(err.value)
