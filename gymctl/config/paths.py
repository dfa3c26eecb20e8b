"""Where configs, servers, compose templates and the image recipe are found: cwd, GYMCTL_SERVERS_DIR, shipped."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_ROOT.parent
# A wheel carries servers/, compose_templates/ and images/ here (setup.py maps them in at build time);
# a checkout (editable install) has no such folder and uses the repository's own.
BUNDLED = "_bundled"
SHIPPED = ("servers", "compose_templates", "images", "monitoring")


def _bundled_root() -> Path | None:
    root = Path(str(files("gymctl").joinpath(BUNDLED)))
    return root if root.is_dir() else None


def shipped_dir(name: str) -> Path:
    """One of the folders gymctl ships (`servers`, `compose_templates`, `images`): packaged, else the checkout's."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with gymctl (one of {', '.join(SHIPPED)})")
    bundled = _bundled_root()
    return bundled / name if bundled is not None else REPO_ROOT / name


def is_checkout() -> bool:
    """True when gymctl runs from a source checkout (editable install), False when installed from a wheel."""
    return _bundled_root() is None


def servers_dir() -> Path:
    """The shipped `<server_type>/<impl>/` trees (inside the installed package, or the checkout's servers/)."""
    return shipped_dir("servers")


def search_roots(cwd: Path | None = None) -> list[Path]:
    """The roots a relative config or server path is tried against, in order: cwd, GYMCTL_SERVERS_DIR, shipped."""
    roots = [(cwd or Path.cwd()).resolve()]
    from gymctl.server.settings import ServerSettings

    env = ServerSettings.from_env().servers_dir
    if env:
        roots.append(Path(env).expanduser().resolve())
    shipped = servers_dir()
    if shipped.is_dir():  # a server image ships no servers of its own: it mounts them (GYMCTL_SERVERS_DIR)
        roots.append(shipped.resolve())
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
