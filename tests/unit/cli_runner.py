"""Run the CLI in-process as a user's shell would (through run_app, so errors read as they do on a terminal)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def invoke(*args: str, command: Any = None, prog: str = "gymctl", env: dict[str, str] | None = None) -> Outcome:
    """`gymctl ARGS` (or `command`, e.g. an ng_* command) in typer's CliRunner isolation: exit code, stdout, stderr."""
    from gymctl.cli.errors import run_app
    from gymctl.cli.main import app

    with CliRunner().isolation(env=env) as streams:
        try:
            run_app(command if command is not None else app, list(args), prog_name=prog)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Outcome(code, streams[0].getvalue().decode(), streams[1].getvalue().decode())
