"""Compose rendering: a pure function from a parsed config and a topology to compose YAML (no I/O, no Docker)."""
