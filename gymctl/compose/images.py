"""Which images a config needs: one per server implementation, the head, the all-in-one (names only, pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gymctl.config.model import GymConfig, InstanceSpec

DEFAULT_PREFIX = "gymctl"
DEFAULT_TAG = "latest"
HEAD_UNIT = "head"
ALL_IN_ONE_UNIT = "all-in-one"
LABEL_SERVER_DIR = "io.gymctl.server-dir"
LABEL_SOURCE_HASH = "io.gymctl.source-hash"


@dataclass(frozen=True)
class ImageUnit:
    """One image to build: its tag, the build arg naming it, and the server dirs it holds."""

    name: str  # SERVER_DIR build arg: "<server_type>/<impl>", "head" or "all-in-one"
    image: str
    server_dirs: tuple[Path, ...] = field(default_factory=tuple)  # absolute impl dirs
    rel_dirs: tuple[str, ...] = field(default_factory=tuple)  # "<server_type>/<impl>" for each


def _component(text: str) -> str:
    """A valid image name component (lowercase alnum with single separators)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("._-")
    return re.sub(r"[._-]{2,}", "-", s) or "server"


def image_of_impl(spec: InstanceSpec, prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    return f"{prefix}/{_component(spec.impl)}:{tag}"


def head_image(prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    return f"{prefix}/{HEAD_UNIT}:{tag}"


def all_in_one_image(prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    return f"{prefix}/{ALL_IN_ONE_UNIT}:{tag}"


def image_for(cfg: GymConfig, name: str, prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    """The image an instance runs in: `gymctl.instances.<name>.image` if set, else its implementation's."""
    spec = cfg.instances[name]
    if spec.alias_of:
        return image_for(cfg, spec.alias_of, prefix, tag)
    return cfg.deployment_of(name).image or image_of_impl(spec, prefix, tag)


def image_units(cfg: GymConfig, topology: str | None = None, prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> list[ImageUnit]:
    """The images `gymctl build` makes for a config (topology None: both topologies' images)."""
    units: dict[str, ImageUnit] = {}
    served = [s for s in cfg.instances.values() if not s.alias_of and not cfg.deployment_of(s.name).image]
    if topology in (None, "separated", "multi-host", "swarm"):
        units[HEAD_UNIT] = ImageUnit(HEAD_UNIT, head_image(prefix, tag))
        for spec in served:
            rel = f"{spec.server_type}/{spec.impl}"
            if rel not in units:
                assert spec.dir_path is not None
                units[rel] = ImageUnit(rel, image_of_impl(spec, prefix, tag), (spec.dir_path,), (rel,))
    if topology in (None, "all-in-one"):
        dirs = {f"{s.server_type}/{s.impl}": s.dir_path for s in cfg.instances.values() if not s.alias_of and s.dir_path}
        rels = tuple(sorted(dirs))
        units[ALL_IN_ONE_UNIT] = ImageUnit(ALL_IN_ONE_UNIT, all_in_one_image(prefix, tag), tuple(dirs[r] for r in rels), rels)
    return list(units.values())
