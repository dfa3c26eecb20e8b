"""Run every check over a config (and the stack it renders, for the container topologies)."""

from __future__ import annotations

from dataclasses import dataclass

from gymctl.checks import exposure, operations
from gymctl.checks.model import Finding
from gymctl.checks.secrets import literal_secrets
from gymctl.compose.model import Stack
from gymctl.config.model import GymConfig


@dataclass(frozen=True)
class CheckContext:
    """What the checks cannot read from the config: the environment and the flags of `up`."""

    token_set: bool = False
    tls: bool = False
    monitoring: bool = False


def run_checks(cfg: GymConfig, stack: Stack | None, context: CheckContext) -> list[Finding]:
    """Every finding, errors first; `stack` is None for the local runtime (processes)."""
    findings = [
        *literal_secrets(cfg),
        exposure.auth(cfg, token_set=context.token_set, containers=stack is not None),
        *exposure.published_ports(stack, tls=context.tls),
        operations.monitoring(stack, enabled=context.monitoring),
        operations.log_shipping(stack),
        operations.resource_limits(stack),
    ]
    order = {"error": 0, "warn": 1, "ok": 2}
    return sorted(findings, key=lambda f: order[f.level])
