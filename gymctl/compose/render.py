"""Render a compose model to YAML with Jinja (StrictUndefined); the templates are the shipped compose_templates/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from gymctl.compose.model import RenderSettings, Stack, build_stack
from gymctl.config.model import GymConfig
from gymctl.config.paths import shipped_dir
from gymctl.errors import GymctlError

# The checkout's compose_templates/, or the copy packaged in the wheel.
TEMPLATES = shipped_dir("compose_templates")
TEMPLATE_OF = {"separated": "separated.yml.j2", "all-in-one": "all-in-one.yml.j2", "multi-host": "multi-host.yml.j2"}


def _escape(value: str) -> str:
    """Compose interpolates `$`: a literal one is written `$$`."""
    return value.replace("$", "$$")


def _quote(value: object) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML), `$` escaped for compose."""
    return _escape(json.dumps(str(value)))


def _flow(values: list[str]) -> str:
    return "[" + ", ".join(_quote(v) for v in values) + "]"


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "\n".join((pad + line) if line else "" for line in _escape(text).rstrip("\n").splitlines())


def environment(templates: Path = TEMPLATES) -> Environment:
    if not templates.is_dir():
        raise GymctlError(f"the compose templates are missing ({templates} is not a folder); reinstall gymctl")
    env = Environment(loader=FileSystemLoader(str(templates)), undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters.update(q=_quote, flow=_flow, block=_block)
    return env


@dataclass
class RenderedStack:
    """The compose file's text plus what is not in it: warnings, and secret values for `up`'s environment."""

    stack: Stack
    compose_yaml: str
    warnings: list[str] = field(default_factory=list)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)


def render_stack(stack: Stack, templates: Path = TEMPLATES) -> str:
    return environment(templates).get_template(TEMPLATE_OF[stack.topology]).render(stack=stack)


def render(cfg: GymConfig, topology: str, settings: RenderSettings | None = None) -> RenderedStack:
    """Config + topology -> compose YAML (pure: no Docker, nothing written)."""
    stack = build_stack(cfg, topology, settings)
    return RenderedStack(stack, render_stack(stack), list(stack.warnings), dict(stack.secret_env))
