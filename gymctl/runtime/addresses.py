"""Which address a server binds and which it advertises (never 0.0.0.0, never loopback across hosts)."""

from __future__ import annotations

import socket

WILDCARDS = {"0.0.0.0", "::", ""}


def routable_ip() -> str:
    """This host's address on its default route (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect only picks a route; nothing leaves the host
            return str(s.getsockname()[0])  # (host, port) for AF_INET
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def bind_and_advertise(config_host: str | None, bind_host: str | None, advertise_host: str | None) -> tuple[str, str]:
    """(bind address, advertised address) from the config's host and GYMCTL_BIND_HOST / GYMCTL_ADVERTISE_HOST."""
    bind = bind_host or config_host or "127.0.0.1"
    if advertise_host:
        return bind, advertise_host
    if config_host and config_host not in WILDCARDS:
        return bind, config_host
    if bind in WILDCARDS:
        return bind, routable_ip()
    return bind, bind
