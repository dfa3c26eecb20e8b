"""A TCP connector that opens at most a few connections to one upstream at a time (the rest wait their turn).

A burst of thousands of new connections to one server at once (a collection starting 10,000 rollouts: the
model server then opens ~9,500 to its LLM together) overflows the server's listen backlog (`somaxconn`, 4,096
here); the SYNs the kernel drops are retransmitted after 1, 3, 7, 15 s and the connects pass their 10 s timeout
(measured: 9,500 of 20,000 rollouts failed with `ConnectionTimeoutError` on a loaded machine). Opening at most
CONNECTS_PER_HOST at once per upstream keeps the backlog short; each connect then takes a round trip, and
connections already open are reused as before. The wait is outside the socket-connect timeout. It also keeps
the connections open, idle ones included, within `limit` (see `_evict_idle`).

Source addresses: one (source address, destination address:port) pair holds at most as many connections as
there are ephemeral ports (28,232 here), whatever the number of processes. A process given `source_address`
(a loopback address of its own, 127.x.y.z: the separated runtime gives each worker process one, the collector
each of its processes) opens its connections to loopback servers from it, so N processes calling one
loopback port use N pairs. Connections to other addresses leave from the host's own address as before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import aiohttp

CONNECTS_PER_HOST = 256  # new connections being opened at once to one host:port
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux: pick the port at connect (per 4-tuple), not at bind


def _is_loopback_v4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def source_socket_factory(source_address: str) -> Any:
    """aiohttp's socket_factory: a socket to a loopback IPv4 destination is bound to `source_address` first."""

    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        if family == socket.AF_INET and _is_loopback_v4(str(sockaddr[0])):
            try:
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source_address, 0))
            except OSError:
                sock.close()
                raise
        return sock

    return make


def check_source_address(address: str) -> str:
    """`address` if it is an IPv4 loopback address (what a source address for loopback connections must be), else ValueError."""
    if not _is_loopback_v4(address):
        raise ValueError(f"{address!r} is not an IPv4 loopback address (127.0.0.0/8)")
    return address


class PacedConnector(aiohttp.TCPConnector):
    """aiohttp's TCPConnector with at most `connects_per_host` connection attempts in progress per host:port."""

    def __init__(self, *args: Any, connects_per_host: int = CONNECTS_PER_HOST, source_address: str | None = None, **kwargs: Any) -> None:
        if source_address is None:
            from gymctl.server.settings import ServerSettings

            source_address = ServerSettings.from_env().source_address  # GYMCTL_SOURCE_ADDRESS: set per worker process
        if source_address:
            kwargs["socket_factory"] = source_socket_factory(check_source_address(source_address))
        super().__init__(*args, **kwargs)
        self.source_address = source_address
        self._connects_per_host = connects_per_host
        self._connecting: dict[tuple[str, int | None], asyncio.Semaphore] = {}

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        key = (req.host, req.port)
        gate = self._connecting.get(key)
        if gate is None:
            gate = self._connecting[key] = asyncio.Semaphore(self._connects_per_host)
        async with gate:
            self._evict_idle()
            return await super()._create_connection(req, traces, timeout)

    def _evict_idle(self) -> None:
        """Close pooled idle connections (to any host, oldest first) while the open ones would pass `limit`.

        aiohttp's `limit` counts connections in use only; idle ones kept for another host come on top. A server
        calling two upstreams (an agent: model and resources) would hold its limit in use plus a pool of idle
        ones, past its open-files budget (measured: 34 of 2,500 rollouts reset at 2,000 in flight, separated).
        """
        if not self._limit:
            return
        excess = len(self._acquired) + sum(len(conns) for conns in self._conns.values()) - self._limit
        while excess > 0:
            key = next((k for k, conns in self._conns.items() if conns), None)
            if key is None:
                return
            conns = self._conns[key]
            proto, _ = conns.popleft()
            proto.close()
            if not conns:
                del self._conns[key]
            excess -= 1
