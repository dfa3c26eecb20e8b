"""The monitoring profile's Prometheus image, bootstrapped offline from Debian's `prometheus` package (like the base image)."""

from __future__ import annotations

from gymctl.docker.base_image import BaseImageResult, base_image_exists, build_base_image

PROMETHEUS_IMAGE = "gymctl/prometheus:latest"
PACKAGES = ("prometheus", "ca-certificates")
PROMETHEUS_PORT = 9090
# The package's web assets pull in libjs-moment-timezone (~220 MB of zone data): the API, the rules and the
# stock console pages work without it, so the image leaves it out.
SLIM = ("--dpkgopt=path-exclude=/usr/share/javascript/moment-timezone/*",)
CHANGES = (
    'ENTRYPOINT ["/usr/bin/prometheus"]',
    "USER prometheus",
    "WORKDIR /var/lib/prometheus",
    f"EXPOSE {PROMETHEUS_PORT}",
    "LABEL io.gymctl.image=prometheus",
)


def prometheus_image_exists(tag: str = PROMETHEUS_IMAGE) -> bool:
    return base_image_exists(tag)


def build_prometheus_image(tag: str = PROMETHEUS_IMAGE, *, force: bool = False) -> BaseImageResult:
    """`mmdebstrap --include=prometheus | docker import`: Prometheus 2.42 (and promtool) with no registry; its service is not started."""
    return build_base_image(tag, force=force, packages=PACKAGES, changes=CHANGES, slim=SLIM)
