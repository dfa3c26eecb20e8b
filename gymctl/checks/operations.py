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
    if stack is not None and stack.logging is not None and stack.logging.driver not in ("json-file", "local"):
        return Finding("log shipping", "ok", "gymctl.logging", f"every container logs through the {stack.logging.driver} driver")
    if stack is None:
        return Finding("log shipping", "warn", "--log-format json", "logs stay on this host; ship them centrally "
                                                                    "(--log-format json --log-dir DIR, and a collector on those files)")
    return Finding("log shipping", "warn", "gymctl.logging", "logs stay on this host (Docker's local files); ship them centrally: "
                                                             "gymctl.logging: {driver: syslog|fluentd|gelf|..., options: {...}}")


def resource_limits(stack: Stack | None) -> Finding:
    if stack is None:
        return Finding("resource limits", "warn", "processes", "local processes run without CPU or memory limits")
    names = ", ".join(s.name for s in stack.services)
    return Finding("resource limits", "warn", names, "no CPU or memory limit on any container: one runaway server can starve the host; "
                                                     "add deploy.resources.limits in a compose override file")
