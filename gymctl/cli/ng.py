"""NeMo Gym's command names, verbatim: `ng_run`, `ng_status`, `ng_collect_rollouts` (Hydra-style `+key=value` args)."""

from __future__ import annotations

import sys
from typing import Any


def ng_command(verb: str) -> Any:
    """gymctl's VERB as a command of its own (usage `ng_status [OPTIONS] ...`), with the root's --version."""
    import typer.main

    from gymctl.cli.main import app

    root = typer.main.get_command(app)
    command = root.commands[verb]  # type: ignore[attr-defined]
    command.params.extend(p for p in root.params if p.name == "version")
    return command


def _run(verb: str, prog_name: str, args: list[str]) -> None:
    from gymctl.cli.errors import run_app

    run_app(ng_command(verb), args, prog_name=prog_name)


def ng_run() -> None:
    _run("run", "ng_run", sys.argv[1:])


def ng_status() -> None:
    _run("status", "ng_status", sys.argv[1:])


def ng_collect_rollouts() -> None:
    _run("collect", "ng_collect_rollouts", ["--ng", *sys.argv[1:]])
