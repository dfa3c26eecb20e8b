"""Console output shared by verbs: the deployment table printed when servers are up."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

err = Console(stderr=True)


def print_deployment(dep: Any, elapsed_s: float) -> None:
    table = Table(title=f"gymctl: ready in {elapsed_s:.2f} s", title_justify="left")
    table.add_column("instance")
    table.add_column("type")
    table.add_column("impl")
    table.add_column("url")
    if dep.head is not None:
        table.add_row("head", "head", "registry", dep.head_url)
    else:
        table.add_row("head", "head", "on another host", dep.head_url)
    for name, s in dep.servers.items():
        spec = dep.config.instances[name]
        impl = spec.impl + (f" (alias of {spec.alias_of})" if spec.alias_of else "")
        table.add_row(name, spec.server_type, impl, s.url)
    for child in getattr(dep.nemo_gym, "children", []):  # NeMo Gym's own servers, child processes of this one
        for record in child.spec.records:
            alias = f" (alias of {record['alias_of']})" if record.get("alias_of") else ""
            table.add_row(record["process_name"], record["server_type"], f"{record['name']}{alias} [NeMo Gym, pid {child.pid}]", child.spec.url)
    if dep.head is not None:
        for name, server_type in dep.config.remote.items():
            table.add_row(name, server_type, "[yellow]expected from another host[/]", "-")
    con = err if err.is_terminal else Console(stderr=True, width=200)  # a log file gets whole URLs
    con.print(table)
    if dep.head is not None and dep.config.remote:
        con.print(f"Waiting for {', '.join(dep.config.remote)} to register from another host: the head's /health answers 503 until then.")
    con.print("Ctrl-C to stop.  Status: gymctl status --head " + dep.head_url)
    sys.stderr.flush()


def print_joining(head_url: str, wait_s: float) -> None:
    """A worker: no head here; its instances register with the one on another host."""
    err.print(f"gymctl: the head is on another host ({head_url}); registering there (waiting up to {wait_s:.0f} s for it, GYMCTL_HEAD_WAIT_S) ...",
              highlight=False)
    sys.stderr.flush()


def print_joined(name: str, event: str, urls: list[str]) -> None:
    """An instance expected from another host registered with the head here (or lost its last healthy registration)."""
    if event == "joined":
        err.print(f"gymctl: {name} joined from another host ({', '.join(urls)})", highlight=False)
    else:
        err.print(f"gymctl: {name} left" + (f"; still serving it: {', '.join(urls)}" if urls else "; none of it is healthy now"), highlight=False)
    sys.stderr.flush()


def print_processes(head_url: str, rows: list[Any], elapsed_s: float) -> None:
    """The separated runtime's ready table: the head and each registered instance, with the process serving it."""
    workers = any(getattr(r, "workers", 1) > 1 for r in rows)  # a column when an instance runs several processes on its port
    shape = "one process per instance" + (", `workers` processes on one port" if workers else "")
    table = Table(title=f"gymctl: ready in {elapsed_s:.2f} s ({shape})", title_justify="left")
    for col in ("instance", "type", "impl", "url", *(("workers",) if workers else ()), "pid"):
        table.add_column(col)
    for r in rows:
        pids = getattr(r, "pids", None)
        pid = ", ".join(map(str, pids)) if pids and len(pids) > 1 else str(r.pid or "")
        table.add_row(r.instance, r.server_type, r.impl, r.url, *((str(getattr(r, "workers", 1)),) if workers else ()), pid)
    con = err if err.is_terminal else Console(stderr=True, width=200)  # a log file gets whole URLs
    con.print(table)
    con.print("Ctrl-C to stop.  Status: gymctl status --head " + head_url)
    sys.stderr.flush()
