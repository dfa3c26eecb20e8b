"""Which address a server binds and which it advertises (never 0.0.0.0, never loopback across hosts)."""

from __future__ import annotations

import errno
import socket

from gymctl.errors import ConfigError
from gymctl.hosts import WILDCARDS, is_local_only, is_loopback

__all__ = ["WILDCARDS", "bind_and_advertise", "check_advertised", "is_loopback", "is_own_address", "routable_ip", "route_to"]


def is_own_address(host: str, *, key_path: str = "head_server.host") -> bool:
    """Is `host` an address of this host (loopback, a wildcard, or bound on one of its interfaces)?

    Decided by binding a socket to it (port 0; nothing listens): the kernel knows its own addresses.
    An unresolvable name is a ConfigError naming `key_path`.
    """
    if is_local_only(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"{host!r} does not resolve ({e.strerror}); give an address or a name this host can resolve", key_path=key_path) from None
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((sockaddr[0], 0))
                return True
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    raise
    return False


def route_to(host: str, port: int = 1) -> str:
    """This host's address on the interface that routes to `host` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))  # UDP connect only picks a route; nothing leaves the host
            return str(s.getsockname()[0])
    except OSError:
        return routable_ip()


def routable_ip() -> str:
    """This host's address on its default route (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def bind_and_advertise(
    config_host: str | None, bind_host: str | None, advertise_host: str | None, *, head_host: str = "127.0.0.1", head_port: int = 11000,
) -> tuple[str, str]:
    """(bind address, advertised address).

    Advertised: the config's `host`, else GYMCTL_ADVERTISE_HOST, else the address of the interface that
    routes to the head. A loopback config `host` gives way to GYMCTL_ADVERTISE_HOST (a container's service
    name). Bound: GYMCTL_BIND_HOST, else the config's `host`, else 127.0.0.1 beside a loopback head and
    0.0.0.0 beside a head on the network.
    """
    specific = config_host if config_host and config_host not in WILDCARDS else None
    bind = bind_host or config_host or ("127.0.0.1" if is_loopback(head_host) else "0.0.0.0")
    if specific and not is_loopback(specific):
        return bind, specific
    if advertise_host:
        return bind, advertise_host
    if specific:
        return bind, specific
    if bind not in WILDCARDS:
        return bind, bind
    return bind, route_to(head_host, head_port)


def check_advertised(instance: str, key_path: str, advertised: str, head_url: str, head_host: str) -> None:
    """Refuse to advertise loopback to a head on another host: its peers there could never reach it."""
    if not is_loopback(advertised) or is_own_address(head_host):
        return
    here = route_to(head_host)
    raise ConfigError(
        f"{instance} would advertise {advertised} to the head at {head_url}, which is on another host: peers there cannot reach "
        f"{advertised}. Set {key_path}.host to this host's address on the head's network (e.g. {here}), or GYMCTL_ADVERTISE_HOST, "
        f"or remove host to advertise the address that routes to the head ({here})",
        key_path=f"{key_path}.host",
    )
