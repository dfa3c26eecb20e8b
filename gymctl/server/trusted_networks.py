"""Callers that need no token: the stack's private network (GYMCTL_AUTH_TRUSTED_NETWORKS), for peers of NeMo Gym servers.

NeMo Gym's servers call their peers without a token (NeMo Gym has no auth). A gymctl server they call is given
GYMCTL_AUTH_TRUSTED_NETWORKS (the compose stack sets it on exactly those): `private` trusts the networks this
container is attached to (its interfaces' subnets, read from /proc/net/route), less their gateways, through which
the host and every published port reach a container; a comma-separated list of CIDRs trusts those. Everyone else
still needs the token.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from gymctl.errors import ConfigError

TRUSTED_NETWORKS_ENV = "GYMCTL_AUTH_TRUSTED_NETWORKS"
PRIVATE = "private"
ROUTES = Path("/proc/net/route")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedNetworks:
    networks: tuple[Network, ...]
    excluded: frozenset[str] = frozenset()  # gateways: callers from outside the network come through them

    def trusts(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return str(addr) not in self.excluded and any(addr in net for net in self.networks)


def _hex_ip(value: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(socket.inet_ntoa(struct.pack("<I", int(value, 16))))


def attached_networks(routes: Path = ROUTES) -> TrustedNetworks:
    """The IPv4 networks this host is directly attached to (not loopback), without their gateways."""
    networks: list[Network] = []
    gateways: set[str] = set()
    lines = routes.read_text().splitlines()[1:] if routes.is_file() else []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[0] == "lo":
            continue
        dest, gateway, mask = _hex_ip(fields[1]), _hex_ip(fields[2]), _hex_ip(fields[7])
        if int(dest) == 0:
            gateways.add(str(gateway))
        elif int(gateway) == 0:
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
            networks.append(net)
            gateways.add(str(next(net.hosts(), net.network_address)))  # Docker's gateway of a network is its first address
    return TrustedNetworks(tuple(networks), frozenset(gateways))


def trusted_networks(value: str | None = None) -> TrustedNetworks | None:
    """GYMCTL_AUTH_TRUSTED_NETWORKS (or `value`) read: None when unset; ConfigError for a malformed CIDR."""
    value = os.environ.get(TRUSTED_NETWORKS_ENV) if value is None else value
    if not value or not value.strip():
        return None
    parts = [part for part in value.split(",") if part.strip()]
    private = attached_networks() if any(part.strip() == PRIVATE for part in parts) else TrustedNetworks(())
    nets = list(private.networks)
    for part in parts:
        if part.strip() == PRIVATE:
            continue
        try:
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{TRUSTED_NETWORKS_ENV}: {part.strip()!r} is not a network; write `{PRIVATE}` or CIDRs (10.0.0.0/8,...)") from None
    return TrustedNetworks(tuple(nets), private.excluded)  # `private,CIDR,...`: both
