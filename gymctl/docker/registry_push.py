"""`gymctl push`: tag the server images for a registry and push them (the engine pushes to a loopback registry without TLS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gymctl.errors import DockerError, UsageError


@dataclass
class PushedImage:
    image: str  # the local tag, gymctl/<impl>:latest
    remote: str  # REGISTRY/gymctl/<impl>:latest
    digest: str
    seconds: float


def remote_tag(registry: str, image: str) -> str:
    """`127.0.0.1:5000` + `gymctl/x:latest` -> `127.0.0.1:5000/gymctl/x:latest`."""
    if not registry or "/" in registry.strip("/") or registry.startswith(("http://", "https://")):
        raise UsageError(f"--registry {registry!r}: give HOST:PORT (e.g. 127.0.0.1:5000), no scheme or path")
    return f"{registry.strip('/')}/{image}"


def push_images(client: Any, images: list[str], registry: str, *, progress: Callable[[str], None] = lambda _m: None) -> list[PushedImage]:
    """Tag each local image under `registry` and push it; the digest the registry answered for each."""
    from docker.errors import APIError, ImageNotFound

    out = []
    for image in dict.fromkeys(images):
        t0 = time.monotonic()
        remote = remote_tag(registry, image)
        try:
            client.images.get(image).tag(remote)
        except ImageNotFound:
            raise DockerError(f"image {image} is not in the engine; build it first with `gymctl build -c ...`") from None
        repo, _, tag = remote.rpartition(":")
        progress(f"{remote}: pushing")
        digest, error = "", ""
        try:
            for chunk in client.api.push(repo, tag=tag, stream=True, decode=True):
                error = error or (chunk.get("errorDetail") or {}).get("message") or chunk.get("error") or ""
                digest = (chunk.get("aux") or {}).get("Digest") or digest
        except APIError as e:
            error = str(e.explanation or e)
        if error or not digest:
            raise DockerError(f"pushing {remote} failed: {error or 'the registry gave no digest'}; {_hint(error, registry)}",
                              argv=["docker", "push", remote], stderr=error)
        out.append(PushedImage(image, remote, digest, time.monotonic() - t0))
        progress(f"{remote}: {digest}")
    return out


UNREACHED = ("connection refused", "no such host", "dial tcp", "i/o timeout", "timeout", "eof", "no route to host", "server gave http response")


def _hint(error: str, registry: str) -> str:
    """What to do: a registry that was not reached, or one that answered no."""
    if not error or any(m in error.lower() for m in UNREACHED):
        return f"is the registry up (`curl http://{registry}/v2/`, `gymctl cluster ls`)?"
    return (f"the registry refused it (its answer above): `docker login {registry}` if it needs credentials, "
            "or push where this account may write (--registry HOST:PORT)")


def push_endpoint(registry: str) -> str:
    """Where this machine pushes images that hosts pull as `registry`: the lab's registry is reached by its
    nodes under its lab name and from here on loopback; any other registry is one address for all."""
    from gymctl.docker.contexts import origin_client
    from gymctl.docker.lab import LAB_REGISTRY, lab_registry_address

    if registry != LAB_REGISTRY:
        return registry
    return lab_registry_address(origin_client()) or registry  # the lab runs on this machine's engine, whatever --context says


def push_stack_images(images: list[str], registry: str, *, endpoint: str | None = None,
                      progress: Callable[[str], None] = lambda _m: None) -> dict[str, str]:
    """A rendered stack names its images REGISTRY/<image>: push each local <image> from this machine's engine there
    (to `endpoint`, default push_endpoint(registry); layers the registry has are skipped by the push itself), so the
    hosts that run the stack can pull them. {image as the stack names it: the digest pushed}."""
    from gymctl.docker.contexts import origin_client

    prefix = registry.strip("/") + "/"
    local = [i[len(prefix):] for i in images if i.startswith(prefix)]
    if not local:
        return {}
    pushed = push_images(origin_client(), local, endpoint or push_endpoint(registry), progress=progress)
    return {prefix + p.image: p.digest for p in pushed}
