"""Facts about an address string that config and runtime both need: loopback, wildcard."""

from __future__ import annotations

import ipaddress

WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or `localhost`."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_only(host: str) -> bool:
    """Loopback or a wildcard: a head here is reachable only from this host's own processes (or listens everywhere)."""
    return host in WILDCARDS or is_loopback(host)


def url_host(host: str) -> str:
    """`host` as it goes into a URL's authority: an IPv6 literal in brackets (`[::1]`), anything else as it is."""
    return f"[{host}]" if ":" in host else host
