"""`gymctl check`: the production checklist over a config and the stack it would render; exit 1 on any error."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from gymctl.cli.options import ConfigOpt, JsonOpt, OverridesArg, SetOpt, load_from_cli, print_json

if TYPE_CHECKING:
    from gymctl.checks import Finding
    from gymctl.compose.model import Stack
    from gymctl.config.model import GymConfig

CheckTopology = Literal["processes", "all-in-one", "separated"]
STYLE = {"ok": "green", "warn": "yellow", "error": "bold red"}


def findings_for(cfg: GymConfig, topology: str, *, publish_host: str = "127.0.0.1", tls: bool = False, monitoring: bool = False) -> list[Finding]:
    """The checklist for `cfg` as `gymctl run` (processes) or `gymctl up --topology T` would deploy it."""
    from gymctl.checks import CheckContext, run_checks
    from gymctl.server.settings import ServerSettings

    stack = None
    if topology != "processes":
        from gymctl.cli.render_cmd import render_config

        stack = render_config(cfg, topology, "gymctl", publish_host=publish_host, check_gpus=False, monitoring=monitoring).stack
    context = CheckContext(token_set=bool(ServerSettings.from_env().auth_token), tls=tls, monitoring=monitoring)
    return run_checks(cfg, stack, context)


def warn_checklist(cfg: GymConfig, stack: Stack, *, monitoring: bool = False, token_set: bool = False, tls: bool = False) -> None:
    """`gymctl up`: the checklist's warnings and errors for the stack being started (it starts anyway)."""
    from gymctl.checks import CheckContext, run_checks

    context = CheckContext(token_set=token_set, tls=tls, monitoring=monitoring)
    problems = [f for f in run_checks(cfg, stack, context) if f.level == "error"]
    for f in problems:
        print(f"warning: gymctl check: {f.check}: {f.where}: {f.message}", file=sys.stderr)
    if problems:
        print("warning: run `gymctl check` with the same arguments for the whole checklist", file=sys.stderr)


def print_findings(findings: list[Finding], *, only_problems: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = [f for f in findings if f.level != "ok"] if only_problems else findings
    if not shown:
        return
    table = Table(title="gymctl check", title_justify="left")
    for column in ("level", "check", "where", "what to do"):
        table.add_column(column, overflow="fold")
    for f in shown:
        table.add_row(f"[{STYLE[f.level]}]{f.level}[/]", f.check, f.where, f.message)
    con = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)
    con.print(table)


def check(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: Annotated[CheckTopology, typer.Option("--topology", "-t", help=(
        "processes: as `gymctl run` deploys it; all-in-one / separated: as `gymctl up` would (the rendered stack is checked too).")
    )] = "separated",
    publish_host: Annotated[str, typer.Option("--publish-host", help="The address `up` would publish on.")] = "127.0.0.1",
    tls: Annotated[bool, typer.Option("--tls", help="A TLS reverse proxy is in front of the published ports.")] = False,
    monitoring: Annotated[bool, typer.Option("--monitoring", help="`up --monitoring` would add Prometheus.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a config against the production checklist: literal secrets, auth, exposed ports, monitoring, logs, limits.

    Names each problem's key path or service, never a secret's value. Exit 1 when anything is at "error".

    \b
    Examples:
      gymctl check -c resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml \\
                   -c responses_api_models/openai_model/configs/openai_model.yaml
      gymctl check -c my.yaml --topology processes
    """
    from gymctl.checks.model import worst

    cfg = load_from_cli(config, sets, overrides)
    findings = findings_for(cfg, topology, publish_host=publish_host, tls=tls, monitoring=monitoring)
    if as_json:
        print_json([f.as_dict() for f in findings])
    else:
        print_findings(findings)
    level = worst(findings)
    if not as_json:
        print({"ok": "check: passed", "warn": "check: passed with warnings", "error": "check: failed"}[level], file=sys.stderr)
    sys.exit(1 if level == "error" else 0)


def register(app: typer.Typer) -> None:
    app.command("check")(check)
