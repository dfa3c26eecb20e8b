"""NeMo Gym's command names, verbatim: `ng_run`, `ng_status`, `ng_collect_rollouts` (Hydra-style `+key=value` args)."""

from __future__ import annotations

import sys


def _run(verb: str) -> None:
    from gymctl.cli.errors import run_app
    from gymctl.cli.main import app

    run_app(app, [verb, *sys.argv[1:]], prog_name=f"ng_{verb}")


def ng_run() -> None:
    _run("run")


def ng_status() -> None:
    _run("status")


def ng_collect_rollouts() -> None:
    from gymctl.cli.errors import run_app
    from gymctl.cli.main import app

    run_app(app, ["collect", "--ng", *sys.argv[1:]], prog_name="ng_collect_rollouts")
