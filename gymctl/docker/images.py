"""Build server images with the engine's classic builder through the Docker SDK; skip those already up to date."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gymctl.compose.images import LABEL_SOURCE_HASH, ImageUnit
from gymctl.docker.base_image import DEFAULT_BASE
from gymctl.docker.cli import engine_client
from gymctl.docker.context import BuildContext
from gymctl.errors import DockerError

LABEL_IMAGE = "io.gymctl.image"


@dataclass
class BuiltImage:
    unit: str
    image: str
    seconds: float
    built: bool  # False: up to date, nothing rebuilt
    size_bytes: int = 0


Progress = Callable[[str], None]


def _image_labels(client: Any, tag: str) -> dict[str, str] | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag).labels or {}
    except ImageNotFound:
        return None


def _stream_build(client: Any, ctx: BuildContext, unit: ImageUnit, base_image: str, source_hash: str, nocache: bool, progress: Progress) -> None:
    step = ""
    tail: list[str] = []
    stream = client.api.build(
        path=str(ctx.root), dockerfile="Dockerfile", tag=unit.image, rm=True, forcerm=True, decode=True, nocache=nocache,
        buildargs={"SERVER_DIR": unit.name, "BASE_IMAGE": base_image, "SOURCE_HASH": source_hash},
    )
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            err = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error") or "unknown error"
            out = "\n".join(tail[-12:])
            raise DockerError(
                f"building {unit.image} ({unit.name}) failed at {step or 'the first step'}:\n{out}\n{err.strip()}",
                argv=["docker", "build", "--build-arg", f"SERVER_DIR={unit.name}", str(ctx.root)], stderr=err,
            )
        text = chunk.get("stream") or ""
        for line in text.splitlines():
            if line.startswith("Step "):
                step = line.strip()
                progress(f"{unit.image}: {step}")
                tail = []
            elif line.strip():
                tail.append(line.rstrip())


def build_images(
    units: list[ImageUnit],
    *,
    base_image: str = DEFAULT_BASE,
    context: BuildContext | None = None,
    force: bool = False,
    nocache: bool = False,
    progress: Progress = lambda _msg: None,
) -> list[BuiltImage]:
    """Build each unit's image; one whose sources (wheels, gymctl, its server dir, the base) did not change is skipped."""
    from docker.errors import ImageNotFound

    client = engine_client()
    try:
        base_id = client.images.get(base_image).id
    except ImageNotFound:
        raise DockerError(
            f"base image {base_image} is not in the engine; build it offline with `gymctl images base`, "
            "or pass --base-image python:3.11-slim where a registry can be reached"
        ) from None
    ctx = context or BuildContext()
    progress("preparing the build context (wheelhouse, sources)")
    shared = ctx.prepare_shared()
    results = []
    for unit in units:
        t0 = time.monotonic()
        source_hash = f"{shared}-{ctx.prepare_unit(unit)}-{base_id.split(':')[-1][:12]}"
        current = _image_labels(client, unit.image)
        if not force and not nocache and current is not None and current.get(LABEL_SOURCE_HASH) == source_hash:
            progress(f"{unit.image}: up to date")
            results.append(BuiltImage(unit.name, unit.image, time.monotonic() - t0, False, int(client.images.get(unit.image).attrs.get("Size", 0))))
            continue
        ctx.select(unit)
        _stream_build(client, ctx, unit, base_image, source_hash, nocache, progress)
        size = int(client.images.get(unit.image).attrs.get("Size", 0))
        results.append(BuiltImage(unit.name, unit.image, time.monotonic() - t0, True, size))
        progress(f"{unit.image}: built in {time.monotonic() - t0:.1f} s")
    if any(r.built for r in results):  # the images these tags pointed at before are dead weight now
        client.images.prune(filters={"dangling": True, "label": LABEL_IMAGE})
    return results

