"""The operational items of the checklist: monitoring, log shipping, resource limits."""

from __future__ import annotations

from gymctl.checks.model import Finding
from gymctl.compose.model import Stack


def monitoring(stack: Stack | None, *, enabled: bool) -> Finding:
    if enabled:
        return Finding("monitoring", "ok", "--monitoring", "Prometheus scrapes every instance and loads the alert rules")
    where = "gymctl up --monitoring" if stack is not None else "gymctl.monitoring"
    return Finding("monitoring", "warn", where, "no monitoring: nothing alerts when a server stops answering; add --monitoring")


def log_shipping(stack: Stack | None) -> Finding:
    return Finding("log shipping", "warn", "docker logging driver" if stack is not None else "--log-dir",
                   "logs stay on this host; ship them centrally (a Docker logging driver in daemon.json, or a collector on the log files)")


def resource_limits(stack: Stack | None) -> Finding:
    if stack is None:
        return Finding("resource limits", "warn", "processes", "local processes run without CPU or memory limits")
    names = ", ".join(s.name for s in stack.services)
    return Finding("resource limits", "warn", names, "no CPU or memory limit on any container: one runaway server can starve the host; "
                                                     "add deploy.resources.limits in a compose override file")
