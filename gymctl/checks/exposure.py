"""Who can reach the stack: auth, ports published beyond loopback without TLS, the head's address."""

from __future__ import annotations

import ipaddress

from gymctl.checks.model import Finding
from gymctl.compose.model import Stack
from gymctl.config.model import GymConfig


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth(cfg: GymConfig, *, token_set: bool, containers: bool) -> Finding:
    """Auth off on a head reachable from other hosts is the seed's trusted-network mode: an error for production."""
    if token_set:
        return Finding("auth", "ok", "GYMCTL_AUTH_TOKEN", "a token is set: registration, calls and reads need it")
    if containers:  # gymctl up generates one (kept in .gymctl/stacks/<project>/auth_token) unless --no-auth
        return Finding("auth", "ok", "GYMCTL_AUTH_TOKEN", "none set: `gymctl up` generates the stack's token (gymctl status and "
                                                          "collect find it; plain `docker compose up` needs GYMCTL_AUTH_TOKEN exported)")
    if is_loopback(cfg.head_host):
        return Finding("auth", "ok", "head_server.host", f"head on loopback ({cfg.head_host}): only this host reaches it")
    return Finding("auth", "error", "head_server.host", f"head on {cfg.head_host} with no GYMCTL_AUTH_TOKEN: anyone who reaches it can "
                                                        "register any URL; set GYMCTL_AUTH_TOKEN or bind the head to 127.0.0.1")


def published_ports(stack: Stack | None, *, tls: bool) -> list[Finding]:
    """Ports published on all interfaces (or a routable address) speak plain HTTP unless TLS is in front."""
    if stack is None:
        return []
    wide = [f"{s.name}:{p.host_port}" for s in stack.services for p in s.ports if not is_loopback(p.host_ip or "0.0.0.0")]
    if not wide:
        return [Finding("published ports", "ok", "stack", "every published port is bound to loopback")]
    if tls:
        return [Finding("published ports", "ok", ", ".join(wide), "published beyond loopback behind TLS")]
    return [Finding("published ports", "error", ", ".join(wide), "published beyond loopback in plain HTTP: bind them to 127.0.0.1 "
                                                                 "(--publish-host 127.0.0.1) or put a TLS reverse proxy in front")]
