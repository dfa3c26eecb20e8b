"""`gymctl build`: the server images of a config (classic builder, wheelhouse from the host; unchanged ones skipped)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from gymctl.cli.options import ComposeTopology, ConfigOpt, ContextOpt, JsonOpt, OverridesArg, SetOpt, load_from_cli, print_json
from gymctl.cli.render_cmd import PrefixOpt, TagOpt

if TYPE_CHECKING:
    from gymctl.config.model import GymConfig
    from gymctl.docker.images import BuiltImage

DEFAULT_BASE_IMAGE = "gymctl/base:bookworm"
BaseImageOpt = Annotated[str | None, typer.Option("--base-image", show_default=False, help=(
    f"Base image; default: GYMCTL_BASE_IMAGE, else {DEFAULT_BASE_IMAGE} (gymctl images base builds it offline; python:3.11-slim where you can pull)."))]


def base_image_of(base_image: str | None) -> str:
    """--base-image, else GYMCTL_BASE_IMAGE, else the offline default."""
    from gymctl.server.settings import ServerSettings

    return base_image or ServerSettings.from_env().base_image or DEFAULT_BASE_IMAGE


def build_for(cfg: GymConfig, topology: str | None, *, base_image: str, prefix: str, tag: str, force: bool = False, nocache: bool = False,
              quiet: bool = False) -> list[BuiltImage]:
    from gymctl.compose.images import image_units
    from gymctl.docker.images import build_images

    def progress(msg: str) -> None:
        if not quiet:
            print(f"  {msg}", file=sys.stderr, flush=True)

    return build_images(image_units(cfg, topology, prefix, tag), base_image=base_image, force=force, nocache=nocache, progress=progress)


def build(
    overrides: OverridesArg = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: Annotated[ComposeTopology | None, typer.Option("--topology", "-t", help="Only the images of this topology (default: both).", show_default=False)] = None,
    base_image: BaseImageOpt = None,
    image_prefix: PrefixOpt = "gymctl",
    tag: TagOpt = "latest",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even images whose sources did not change.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the engine's layer cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
    as_json: JsonOpt = False,
    context: ContextOpt = None,
) -> None:
    """Build one image per server implementation of a config (plus the head's and the all-in-one image).

    Python packages come from a wheelhouse built here (pip wheel, pinned to this environment's versions);
    an image whose inputs did not change is not rebuilt.
    """
    cfg = load_from_cli(config, sets, overrides)
    t0 = time.monotonic()
    results = build_for(cfg, topology, base_image=base_image_of(base_image), prefix=image_prefix, tag=tag, force=force, nocache=no_cache, quiet=quiet)
    for r in results:
        what = f"built in {r.seconds:.1f} s" if r.built else "up to date"
        print(f"{r.image:48} {r.size_bytes / 1e6:7.1f} MB  {what}", file=sys.stderr)
    print(f"{sum(r.built for r in results)} built, {sum(not r.built for r in results)} up to date in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if as_json:
        print_json(results)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
