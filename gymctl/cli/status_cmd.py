"""`gymctl status` (= `ng_status`): every registered instance, its health and round trip; exit 0 only when all are healthy."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from gymctl.cli.options import ConfigOpt, OverridesArg, SetOpt

DEFAULT_HEAD = "http://127.0.0.1:11000"


def head_url_from(head: str | None, config: list[str] | None, sets: list[str] | None, overrides: list[str] | None) -> str:
    """--head, else the config's head_server (files or +head_server.* overrides), else GYMCTL_HEAD_URL, else :11000."""
    if head:
        return head
    if config or any("config_paths" in o for o in overrides or []):
        from gymctl.cli.options import load_from_cli

        return load_from_cli(config, sets, overrides).head_url
    from gymctl.config.overrides import parse_overrides

    parsed = dict(parse_overrides([*(overrides or []), *(sets or [])]).settings)
    if "head_server.host" in parsed or "head_server.port" in parsed:
        return f"http://{parsed.get('head_server.host', '127.0.0.1')}:{parsed.get('head_server.port', 11000)}"
    return os.environ.get("GYMCTL_HEAD_URL") or DEFAULT_HEAD


def _fmt_uptime(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _table(st):
    from rich.table import Table

    ready = "[green]ready[/]" if st.head_ready else "[yellow]starting[/]" + (f" (waiting for {', '.join(st.waiting_for)})" if st.waiting_for else "")
    table = Table(title=f"head {st.head_url}: {ready}", title_justify="left")
    for col in ("instance", "type", "impl", "url", "health", "uptime", "rtt ms"):
        table.add_column(col, justify="right" if col == "rtt ms" else "left")
    for i in st.instances:
        color = "green" if i.ok else "red"
        health = i.health if i.registered == "healthy" else f"{i.health}, lease expired"
        impl = i.impl + (f" -> {i.alias_of}" if i.alias_of else "")
        table.add_row(i.instance, i.server_type, impl, i.url, f"[{color}]{health}[/]", _fmt_uptime(i.uptime_s), f"{i.rtt_ms:.1f}" if i.rtt_ms is not None else "-")
    return table


def status(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    head: Annotated[str | None, typer.Option("--head", help="Head URL (default: the config's head_server, GYMCTL_HEAD_URL, or http://127.0.0.1:11000).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    expect: Annotated[int | None, typer.Option("--expect", help="Also require at least N healthy instances.")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh the table every second until Ctrl-C.")] = False,
) -> None:
    """Show every instance registered with the head: health, URL, uptime, head->server round trip.

    Exit code 0 only when the head is ready and every instance is healthy.
    """
    from gymctl.runtime.loop import run as run_loop
    from gymctl.server.auth import auth_token
    from gymctl.status import fetch_status

    url = head_url_from(head, config, sets, overrides)
    token = auth_token()
    if watch:
        from rich.live import Live

        with Live(refresh_per_second=4, redirect_stderr=False) as live:
            try:
                while True:
                    st = run_loop(fetch_status(url, token=token, expect=expect))
                    live.update(_table(st))
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return
    st = run_loop(fetch_status(url, token=token, expect=expect))
    if as_json:
        import json

        print(json.dumps(st.to_dict(), indent=2))
    else:
        from rich.console import Console

        con = Console() if sys.stdout.isatty() else Console(width=200)
        con.print(_table(st))
        healthy = sum(1 for i in st.instances if i.ok)
        con.print(f"{len(st.instances)} instances ({healthy} healthy, {len(st.instances) - healthy} unhealthy)")
    sys.exit(0 if st.ok else 1)


def register(app: typer.Typer) -> None:
    app.command("status", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(status)
