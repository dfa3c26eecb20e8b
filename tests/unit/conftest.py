"""Fixtures shared by the unit tests: the in-memory fake Docker backend for the stack verbs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gymctl.docker.backend import use_backend
from gymctl.docker.fake import FakeBackend


@pytest.fixture
def fake_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    """A FakeBackend in use, in a fresh working directory (up writes .gymctl/stacks/<project>/ under it)."""
    monkeypatch.chdir(tmp_path)
    with use_backend(FakeBackend()) as backend:
        yield backend
