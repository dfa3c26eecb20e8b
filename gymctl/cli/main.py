"""The `gymctl` command: one typer app; each verb lives in its own module under gymctl/cli/."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="gymctl",
    help=(
        "Deploy the servers of an RL environment (NeMo Gym configs, verbatim) as processes or containers,\n"
        "and collect rollouts through them.\n\n"
        "Local runtime: gymctl run / serve / status / collect.   Containers: gymctl build / render / up / down / ps / logs / restart."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines `register(app)`; a verb whose module is absent is simply not offered.
VERB_MODULES = ("run", "serve", "status", "collect", "build", "images", "render", "up", "down", "ps", "logs", "restart")


def _register_all() -> None:
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"gymctl.cli.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name == f"gymctl.cli.{name}_cmd":
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    from gymctl.cli.errors import run_app

    run_app(app)
