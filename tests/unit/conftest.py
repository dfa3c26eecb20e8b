"""Fixtures shared by the unit tests: the in-memory fake Docker backend for the stack verbs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gymctl.docker.backend import use_backend
from gymctl.docker.fake import FakeBackend
from gymctl.runtime.inprocess import RunningDeployment


@pytest.fixture
def fake_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    """A FakeBackend in use, in a fresh working directory (up writes .gymctl/stacks/<project>/ under it)."""
    monkeypatch.chdir(tmp_path)
    with use_backend(FakeBackend()) as backend:
        yield backend


@pytest.fixture
async def example_deployment() -> AsyncIterator[RunningDeployment]:
    """The example environment (scripted policy) all-in-one in this test's event loop, on a free head port."""
    from gymctl.config import load_config
    from gymctl.runtime import inprocess
    from gymctl.server.settings import ServerSettings
    from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, free_port

    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    cfg.head_port = free_port()
    dep = await inprocess.start(cfg, settings=ServerSettings(heartbeat_s=0.2))
    await inprocess.wait_ready(dep)
    yield dep
    await inprocess.stop(dep)
