"""`gymctl up --monitoring`: the Prometheus image (built offline when missing) and its published port, checked before the stack starts."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gymctl.compose.monitoring import MonitoringSpec
    from gymctl.docker.state import ContainerState


def port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def prepare_monitoring(spec: MonitoringSpec, running: list[ContainerState]) -> None:
    """Refuse a taken Prometheus port (unless this stack's own Prometheus holds it); build the image when it is missing."""
    from gymctl.compose.monitoring import PROMETHEUS_SERVICE
    from gymctl.docker.prometheus_image import build_prometheus_image, prometheus_image_exists
    from gymctl.errors import PortInUseError

    ours = any(c.service == PROMETHEUS_SERVICE and c.state == "running" for c in running)
    if not ours and port_taken(spec.host_ip, spec.host_port):
        raise PortInUseError(spec.host_ip, spec.host_port, "prometheus (--monitoring-port)")
    if not prometheus_image_exists(spec.image):
        print(f"building {spec.image} from Debian's prometheus package (offline, about a minute, once) ...", file=sys.stderr, flush=True)
        result = build_prometheus_image(spec.image)
        print(f"{spec.image}: {result.size_bytes / 1e6:.0f} MB, built in {result.seconds:.0f} s", file=sys.stderr, flush=True)
