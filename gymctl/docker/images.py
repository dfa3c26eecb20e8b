"""Build server images with the engine's classic builder through the Docker SDK; skip those already up to date."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gymctl.compose.images import LABEL_SOURCE_HASH, NEMO_GYM, ImageUnit
from gymctl.docker.base_image import DEFAULT_BASE, NEMO_GYM_BASE, NEMO_GYM_SUITE
from gymctl.docker.cli import engine_client
from gymctl.docker.context import BuildContext
from gymctl.errors import DockerError

LABEL_IMAGE = "io.gymctl.image"
NEMO_GYM_RUNTIME_UNIT = "nemo-gym-runtime"


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


def _stream_build(client: Any, ctx: BuildContext, unit: ImageUnit, dockerfile: str, buildargs: dict[str, str], nocache: bool,
                  progress: Progress) -> None:
    step = ""
    tail: list[str] = []
    stream = client.api.build(path=str(ctx.root), dockerfile=dockerfile, tag=unit.image, rm=True, forcerm=True, decode=True, nocache=nocache,
                              buildargs=buildargs)
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            err = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error") or "unknown error"
            out = "\n".join(tail[-12:])
            raise DockerError(
                f"building {unit.image} ({unit.name}) failed at {step or 'the first step'}:\n{out}\n{err.strip()}",
                argv=["docker", "build", "-f", dockerfile, "--build-arg", f"SERVER_DIR={unit.name}", str(ctx.root)], stderr=err,
            )
        text = chunk.get("stream") or ""
        for line in text.splitlines():
            if line.startswith("Step "):
                step = line.strip()
                progress(f"{unit.image}: {step}")
                tail = []
            elif line.strip():
                tail.append(line.rstrip())


def _up_to_date(client: Any, unit: ImageUnit, source_hash: str, t0: float, progress: Progress) -> BuiltImage | None:
    current = _image_labels(client, unit.image)
    if current is None or current.get(LABEL_SOURCE_HASH) != source_hash:
        return None
    progress(f"{unit.image}: up to date")
    return BuiltImage(unit.name, unit.image, time.monotonic() - t0, False, int(client.images.get(unit.image).attrs.get("Size", 0)))


def _built(client: Any, unit: ImageUnit, t0: float, progress: Progress) -> BuiltImage:
    size = int(client.images.get(unit.image).attrs.get("Size", 0))
    progress(f"{unit.image}: built in {time.monotonic() - t0:.1f} s")
    return BuiltImage(unit.name, unit.image, time.monotonic() - t0, True, size)


def nemo_gym_runtime_unit(units: list[ImageUnit]) -> ImageUnit:
    """The image NeMo Gym server images start from: `<prefix>/nemo-gym-runtime:<tag>` of their prefix and tag."""
    repo, _, tag = units[0].image.rpartition(":")
    return ImageUnit(NEMO_GYM_RUNTIME_UNIT, f"{repo.rsplit('/', 1)[0]}/{NEMO_GYM_RUNTIME_UNIT}:{tag}", runtime=NEMO_GYM_RUNTIME_UNIT.replace("-", "_"))


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
    nemo = [u for u in units if u.runtime == NEMO_GYM]
    nemo_base_id = ""
    if nemo:
        try:
            nemo_base_id = client.images.get(NEMO_GYM_BASE).id
        except ImageNotFound:
            raise DockerError(
                f"{', '.join(u.name for u in nemo)} are NeMo Gym servers, whose images start from {NEMO_GYM_BASE} (Python 3.13), "
                f"which is not in the engine; build it offline: gymctl images base --suite {NEMO_GYM_SUITE} --tag {NEMO_GYM_BASE}"
            ) from None
    ctx = context or BuildContext()
    progress("preparing the build context (wheelhouse, sources)")
    shared = ctx.prepare_shared()
    results = []
    runtime_id = ""
    if nemo:
        from gymctl.docker import nemo_gym_context as ng

        progress("fetching the Python 3.13 wheels of nemo-gym and gymctl's server set (pip download)")
        runtime = nemo_gym_runtime_unit(nemo)
        t0 = time.monotonic()
        runtime_hash = f"{ctx.prepare_nemo_gym()}-{nemo_base_id.split(':')[-1][:12]}"
        done = None if force or nocache else _up_to_date(client, runtime, runtime_hash, t0, progress)
        if done is None:
            ctx.select(runtime)
            _stream_build(client, ctx, runtime, ng.RUNTIME_RECIPE, {"BASE_IMAGE": NEMO_GYM_BASE, "SOURCE_HASH": runtime_hash}, nocache, progress)
            done = _built(client, runtime, t0, progress)
        results.append(done)
        runtime_id = client.images.get(runtime.image).id
    for unit in units:
        t0 = time.monotonic()
        if unit.runtime == NEMO_GYM:
            recipe = hashlib.sha256((ctx.root / ng.RECIPE).read_bytes()).hexdigest()[:12]
            source_hash = f"{shared}-{recipe}-{ctx.prepare_unit(unit)}-{runtime_id.split(':')[-1][:12]}"
            dockerfile, args = ng.RECIPE, {"RUNTIME_IMAGE": runtime.image}
        else:
            source_hash = f"{shared}-{ctx.prepare_unit(unit)}-{base_id.split(':')[-1][:12]}"
            dockerfile, args = "Dockerfile", {"BASE_IMAGE": base_image}
        done = None if force or nocache else _up_to_date(client, unit, source_hash, t0, progress)
        if done is None:
            ctx.select(unit)
            _stream_build(client, ctx, unit, dockerfile, {**args, "SERVER_DIR": unit.name, "SOURCE_HASH": source_hash}, nocache, progress)
            done = _built(client, unit, t0, progress)
        results.append(done)
    if any(r.built for r in results):  # the images these tags pointed at before are dead weight now
        client.images.prune(filters={"dangling": True, "label": LABEL_IMAGE})
    return results

