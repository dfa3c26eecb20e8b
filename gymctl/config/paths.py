"""Where configs and server implementations are looked up: the working directory, then `servers/`."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent


def servers_dir() -> Path:
    """The directory holding `<server_type>/<impl>/` trees (override with GYMCTL_SERVERS_DIR)."""
    env = os.environ.get("GYMCTL_SERVERS_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "servers"


def search_roots(cwd: Path | None = None) -> list[Path]:
    """The roots a relative path is tried against, in order."""
    roots = [(cwd or Path.cwd()).resolve(), servers_dir()]
    return list(dict.fromkeys(roots))


def resolve_existing(relative: str, cwd: Path | None = None, extra_roots: list[Path] | None = None) -> tuple[Path | None, list[Path]]:
    """Return (first existing candidate or None, every candidate tried)."""
    p = Path(relative).expanduser()
    if p.is_absolute():
        return (p if p.exists() else None), [p]
    tried = []
    for root in [*(extra_roots or []), *search_roots(cwd)]:
        candidate = root / p
        tried.append(candidate)
        if candidate.exists():
            return candidate.resolve(), tried
    return None, tried
