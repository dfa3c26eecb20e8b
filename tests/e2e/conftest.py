"""Fixtures shared by the e2e tests: `separated` (runs of `gymctl run --topology separated`, stopped after each test)."""

from __future__ import annotations

from tests.e2e.test_separated_support import separated  # a fixture: pytest finds it here by name

__all__ = ["separated"]
