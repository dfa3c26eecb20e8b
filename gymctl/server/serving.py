"""Run ASGI apps on sockets we bind ourselves (port 0 -> the port we got), many per event loop."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from gymctl.errors import PortInUseError
from gymctl.server.limits import http_protocol

KEEP_ALIVE_S = 75  # longer than any client pool's idle timeout, so the server never closes first


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the runtime (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int | None, owner: str, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind and listen on host:port (0 or None: any free port); PortInUseError names the owner.

    `reuse_port`: several processes of one server (its workers) each bind the port with SO_REUSEPORT and the
    kernel spreads new connections over them; a socket bound without it (another program) is still refused.
    `listen=False` only holds the port (the separated runtime keeps a worker group's port while workers restart);
    without SO_REUSEADDR, as Linux lets two SO_REUSEADDR sockets share a port while neither listens.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if listen:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port or 0))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port or 0, owner) from None
        raise PortInUseError(host, port or 0, f"{owner} ({e.strerror})") from None
    if listen:
        sock.listen(4096)
    sock.setblocking(False)
    return sock


def free_port(host: str = "127.0.0.1", owner: str = "a free port") -> int:
    """A port free on `host` now (for a server that must be told its port before it starts)."""
    sock = bind_socket(host, 0, owner)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def make_server(app: Any, *, log_level: str = "warning") -> QuietServer:
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=10,
        backlog=4096,
        http=http_protocol(),  # gymctl.server.limits: a whole-request deadline (slowloris)
        loop="none",
    )
    return QuietServer(config)
