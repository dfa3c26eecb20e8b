"""Options every config-taking verb shares: --config, --set, and NeMo Gym's `+key=value` arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gymctl.config.model import GymConfig, load_config

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option("--config", "-c", help="Config YAML (repeatable; later files override earlier ones). Resolved against the working directory, then servers/."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set policy_base_url=http://127.0.0.1:8000/v1 (repeatable)."),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="NeMo Gym style overrides: \"+config_paths=\\[a.yaml,b.yaml]\" +policy_model_name=NAME ...", show_default=False),
]


def load_from_cli(config: list[str] | None, sets: list[str] | None, overrides: list[str] | None) -> GymConfig:
    """The validated config named by a verb's --config / --set / +overrides."""
    args = [*(overrides or []), *(sets or [])]
    return load_config(list(config or []), args, cwd=Path.cwd())


def head_from_overrides(args: list[str]) -> str | None:
    """The head URL named by `+head_server.host=` / `+head_server.port=` overrides (NeMo Gym's way), or None."""
    from gymctl.config.model import DEFAULT_HEAD_HOST, DEFAULT_HEAD_PORT
    from gymctl.config.overrides import parse_overrides

    parsed = dict(parse_overrides(args).settings)
    if "head_server.host" in parsed or "head_server.port" in parsed:
        return f"http://{parsed.get('head_server.host', DEFAULT_HEAD_HOST)}:{parsed.get('head_server.port', DEFAULT_HEAD_PORT)}"
    return None


def default_head_url() -> str:
    """GYMCTL_HEAD_URL, else the head on this machine's default port."""
    import os

    from gymctl.config.model import DEFAULT_HEAD_HOST, DEFAULT_HEAD_PORT

    return os.environ.get("GYMCTL_HEAD_URL") or f"http://{DEFAULT_HEAD_HOST}:{DEFAULT_HEAD_PORT}"
