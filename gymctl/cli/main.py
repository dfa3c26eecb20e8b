"""The `gymctl` command: one typer app; each verb lives in its own module under gymctl/cli/."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from gymctl.cli.errors import EXIT_CODES

EPILOG = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."

app = typer.Typer(
    name="gymctl",
    help=(
        "Deploy the servers of an RL environment (NeMo Gym configs, verbatim) as processes or containers,\n"
        "and collect rollouts through them.\n\n"
        "Local runtime: gymctl run / serve / status / collect.   Containers: gymctl build / render / up / down / ps / logs / restart."
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_text() -> str:
    """`gymctl <version>`: the installed distribution's version, else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"gymctl {version('gymctl')}"
    except PackageNotFoundError:
        from gymctl import __version__

        return f"gymctl {__version__}"


def _print_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool, typer.Option("--version", callback=_print_version, is_eager=True, expose_value=False, help="Print gymctl's version and exit.")
]


@app.callback()
def _root(version: VersionOpt = False) -> None:
    """Options given before the verb: --version, shell completion."""


# Each module defines `register(app)`; a verb whose module is absent is simply not offered.
VERB_MODULES = ("run", "serve", "status", "collect", "build", "images", "render", "up", "down", "ps", "logs", "restart", "push", "cluster", "scale", "check")


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
