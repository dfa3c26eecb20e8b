"""The one place errors become `Type: message` on stderr and an exit code (no traceback for user mistakes)."""

from __future__ import annotations

import sys
from typing import Any

import click

from gymctl.errors import GymctlError


def report(e: GymctlError) -> int:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return e.exit_code


def run_app(app: Any, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a typer app; GymctlError -> message + exit code; Ctrl-C -> 130."""
    try:
        app(args=args, prog_name=prog_name, standalone_mode=False)
    except GymctlError as e:
        sys.exit(report(e))
    except click.exceptions.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
