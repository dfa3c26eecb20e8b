"""`gymctl images base|ls|clean`: the offline base image, the images gymctl built, removing them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gymctl.cli.options import ContextOpt, JsonOpt, print_json

images_app = typer.Typer(help="The offline base image and gymctl's images.", no_args_is_help=True)


@images_app.command("base")
def base(
    tag: Annotated[str, typer.Option("--tag", help="Tag of the base image.")] = "gymctl/base:bookworm",
    suite: Annotated[str, typer.Option("--suite", help="Debian suite.")] = "bookworm",
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if it exists.")] = False,
    context: ContextOpt = None,
) -> None:
    """Build a Debian + Python base with no registry: mmdebstrap --variant=minbase ... | docker import."""
    from gymctl.docker.base_image import build_base_image

    print(f"building {tag} from Debian {suite} (mmdebstrap | docker import) ...", file=sys.stderr, flush=True)
    r = build_base_image(tag, suite=suite, force=force)
    state = f"built in {r.seconds:.1f} s" if r.built else "already there (--force rebuilds)"
    print(f"{r.tag}: {r.size_bytes / 1e6:.1f} MB, {state}", file=sys.stderr)


@images_app.command("ls")
def ls(as_json: JsonOpt = False, context: ContextOpt = None) -> None:
    """The images gymctl built (label io.gymctl.image), with sizes."""
    from gymctl.docker.cleanup import gymctl_images

    images = gymctl_images()
    if as_json:
        print_json([{"image": tag, "size_bytes": size, "unit": unit} for tag, size, unit in images])
        return
    for tag, size, unit in images:
        print(f"{tag:48} {size / 1e6:7.1f} MB  {unit}")


@images_app.command("clean")
def clean(
    base_too: Annotated[bool, typer.Option("--base", help="Remove the base image too.")] = False,
    context: ContextOpt = None,
) -> None:
    """Remove gymctl's server images (and with --base the base image)."""
    from gymctl.docker.cleanup import remove_images

    removed = remove_images(include_base=base_too)
    print(f"removed {len(removed)} image(s)", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")
