"""`gymctl up --monitoring`: the Prometheus image (built offline when missing) and its published port, checked before the stack starts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gymctl.compose.monitoring import MonitoringSpec
    from gymctl.docker.state import ContainerState


def prepare_monitoring(spec: MonitoringSpec, running: list[ContainerState], port_free: Callable[[str, int], bool]) -> None:
    """Refuse a taken Prometheus port (unless this stack's own Prometheus holds it); build the image when it is missing.

    `port_free` is the stack's backend's check (a remote engine's ports are not probed on this machine)."""
    from gymctl.compose.monitoring import PROMETHEUS_SERVICE
    from gymctl.docker.prometheus_image import build_prometheus_image, prometheus_image_exists
    from gymctl.errors import PortInUseError

    ours = any(c.service == PROMETHEUS_SERVICE and c.state == "running" for c in running)
    if not ours and not port_free(spec.host_ip, spec.host_port):
        raise PortInUseError(spec.host_ip, spec.host_port, "prometheus (--monitoring-port)")
    if not prometheus_image_exists(spec.image):
        print(f"building {spec.image} from Debian's prometheus package (offline, about a minute, once) ...", file=sys.stderr, flush=True)
        result = build_prometheus_image(spec.image)
        print(f"{spec.image}: {result.size_bytes / 1e6:.0f} MB, built in {result.seconds:.0f} s", file=sys.stderr, flush=True)
