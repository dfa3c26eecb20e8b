"""The one place errors become `Type: message` on stderr and an exit code (no traceback for user mistakes)."""

from __future__ import annotations

import sys
from typing import Any

from gymctl.errors import GymctlError


def _classes(*paths: str) -> tuple[type[BaseException], ...]:
    """Exception classes by dotted path; typer >= 0.29 vendors click, older typer uses click itself."""
    import importlib

    found = []
    for path in paths:
        module, _, name = path.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


_CLICK_ERRORS = _classes("typer._click.exceptions.ClickException", "click.exceptions.ClickException")
_ABORTS = _classes("typer.exceptions.Abort", "click.exceptions.Abort")
_EXITS = _classes("typer.exceptions.Exit", "click.exceptions.Exit")


def report(e: GymctlError) -> int:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return e.exit_code


def run_app(app: Any, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a typer app; GymctlError -> message + exit code; a bad flag -> click's usage message; Ctrl-C -> 130."""
    try:
        app(args=args, prog_name=prog_name, standalone_mode=False)
    except GymctlError as e:
        sys.exit(report(e))
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as e:
        if _CLICK_ERRORS and isinstance(e, _CLICK_ERRORS):
            e.show()  # type: ignore[attr-defined]
            sys.exit(getattr(e, "exit_code", 2))
        if _ABORTS and isinstance(e, _ABORTS):
            print("Aborted.", file=sys.stderr)
            sys.exit(130)
        if _EXITS and isinstance(e, _EXITS):
            sys.exit(getattr(e, "exit_code", 0))
        raise
