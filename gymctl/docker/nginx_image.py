"""The --tls proxy's image, bootstrapped offline from Debian's `nginx` package (1.22), like the base and Prometheus images."""

from __future__ import annotations

import contextlib

from gymctl.docker.base_image import BaseImageResult, base_image_exists, build_base_image
from gymctl.docker.cli import engine_client
from gymctl.errors import DockerError

NGINX_IMAGE = "gymctl/nginx:latest"
PACKAGES = ("nginx", "ca-certificates")
CHANGES = (
    'CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]',
    "USER www-data",  # non-root: it listens on unprivileged ports and writes only its tmpfs
    "WORKDIR /tmp",
    "LABEL io.gymctl.image=nginx",
)
SLIM: tuple[str, ...] = ()  # nginx-common installs /usr/share/nginx/html/index.html: keep it


def nginx_image_exists(tag: str = NGINX_IMAGE) -> bool:
    return base_image_exists(tag)


def build_nginx_image(tag: str = NGINX_IMAGE, *, force: bool = False) -> BaseImageResult:
    """`mmdebstrap --include=nginx | docker import`: nginx with no registry; its service is not started.

    A failed bootstrap can leave `docker import`'s empty image under the tag: it is removed, so the next `up` builds again."""
    try:
        return build_base_image(tag, force=force, packages=PACKAGES, changes=CHANGES, slim=SLIM)
    except DockerError:
        from docker.errors import DockerException

        with contextlib.suppress(DockerException):
            engine_client().images.remove(tag)
        raise
