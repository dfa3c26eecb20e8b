"""`gymctl push --registry HOST:PORT`: the per-server images (gymctl build's) tagged for a registry and pushed; prints digests."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gymctl.cli.options import ComposeTopology, ConfigOpt, ContextOpt, JsonOpt, OverridesArg, SetOpt, load_from_cli, print_json

# Not render_cmd's twins: that module is host-only and absent from server images, where this one is imported too.
PrefixOpt = Annotated[str, typer.Option("--image-prefix", help="Image names: PREFIX/<impl>:TAG.")]
TagOpt = Annotated[str, typer.Option("--tag", help="Image tag.")]
ImageOpt = Annotated[list[str] | None, typer.Option("--image", "-i", help="Push only this local image (repeatable), e.g. gymctl/head:latest.")]

NOT_SERVER_IMAGES = ("base", "lab-node", "lab-registry")


def _built_server_images(context: str | None) -> list[str]:
    from gymctl.docker.contexts import sdk_client
    from gymctl.docker.images import LABEL_IMAGE

    client = sdk_client(context)
    return sorted(t for img in client.images.list(filters={"label": LABEL_IMAGE})
                  if (img.labels or {}).get(LABEL_IMAGE) not in NOT_SERVER_IMAGES for t in img.tags if "/" in t and t.count("/") == 1)


def push(
    overrides: OverridesArg = None,
    registry: Annotated[str, typer.Option("--registry", "-r", help="HOST:PORT of the registry, e.g. 127.0.0.1:5000 (the lab's: `gymctl cluster ls`).")] = "",
    config: ConfigOpt = None,
    sets: SetOpt = None,
    topology: Annotated[ComposeTopology, typer.Option("--topology", "-t", help="Whose images: separated (the head and one per server) or all-in-one.")] = "separated",
    image_prefix: PrefixOpt = "gymctl",
    tag: TagOpt = "latest",
    image: ImageOpt = None,
    context: ContextOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tag and push the server images of a config (without --config: every server image gymctl built) to a registry.

    The engine pushes to a registry on loopback (127.0.0.1:PORT) without TLS; the lab's nodes pull the same
    images as gymctl-lab-registry:5000/<image>.
    """
    from gymctl.docker.contexts import sdk_client
    from gymctl.docker.registry_push import push_images, remote_tag
    from gymctl.errors import UsageError

    if not registry:
        raise UsageError("--registry HOST:PORT is required (the lab's registry: 127.0.0.1:5000, see `gymctl cluster ls`)")
    remote_tag(registry, "x")  # a malformed --registry is refused before anything is tagged
    if image:
        images = list(image)
    elif config or overrides or sets:
        from gymctl.compose.images import image_units

        images = [u.image for u in image_units(load_from_cli(config, sets, overrides), topology, image_prefix, tag)]
    else:
        images = _built_server_images(context)
        if not images:
            raise UsageError("no server images built yet: `gymctl build -c CONFIG` first, or name the config with -c")
    pushed = push_images(sdk_client(context), images, registry, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    print(f"{len(pushed)} image(s) pushed to {registry}", file=sys.stderr)
    if as_json:
        print_json(pushed)
        return
    for p in pushed:
        print(f"{p.remote:56} {p.digest}")


def register(app: typer.Typer) -> None:
    app.command("push")(push)
