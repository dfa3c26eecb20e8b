"""Which images a config needs: one per server implementation, the head, the all-in-one (names only, pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gymctl.config.model import GymConfig, InstanceSpec
from gymctl.config.nemo_gym import nemo_gym_instances, runtime_of
from gymctl.errors import ConfigError

DEFAULT_PREFIX = "gymctl"
DEFAULT_TAG = "latest"
HEAD_UNIT = "head"
ALL_IN_ONE_UNIT = "all-in-one"
LABEL_SERVER_DIR = "io.gymctl.server-dir"
LABEL_SOURCE_HASH = "io.gymctl.source-hash"
NEMO_GYM = "nemo_gym"


@dataclass(frozen=True)
class ImageUnit:
    """One image to build: its tag, the build arg naming it, and the server dirs it holds."""

    name: str  # SERVER_DIR build arg: "<server_type>/<impl>", "head" or "all-in-one"
    image: str
    server_dirs: tuple[Path, ...] = field(default_factory=tuple)  # absolute impl dirs
    rel_dirs: tuple[str, ...] = field(default_factory=tuple)  # "<server_type>/<impl>" for each
    runtime: str = "gymctl"  # nemo_gym: a NeMo Gym server's image (images/nemo_gym.Dockerfile, on Python 3.13)


def _component(text: str) -> str:
    """A valid image name component (lowercase alnum with single separators)."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("._-")
    return re.sub(r"[._-]{2,}", "-", s) or "server"


def image_of_impl(spec: InstanceSpec, prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG, runtime: str = "gymctl") -> str:
    """`<prefix>/<impl>:<tag>`; a NeMo Gym server's `<prefix>/nemo-gym-<impl>:<tag>` (NeMo Gym's simple_agent is not gymctl's)."""
    kind = "nemo-gym-" if runtime == NEMO_GYM else ""
    return f"{prefix}/{kind}{_component(spec.impl)}:{tag}"


def head_image(prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    return f"{prefix}/{HEAD_UNIT}:{tag}"


def all_in_one_image(prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    return f"{prefix}/{ALL_IN_ONE_UNIT}:{tag}"


def image_for(cfg: GymConfig, name: str, prefix: str = DEFAULT_PREFIX, tag: str = DEFAULT_TAG) -> str:
    """The image an instance runs in: `gymctl.instances.<name>.image` if set, else its implementation's."""
    spec = cfg.instances[name]
    if spec.alias_of:
        return image_for(cfg, spec.alias_of, prefix, tag)
    return cfg.deployment_of(name).image or image_of_impl(spec, prefix, tag, runtime_of(cfg, name))


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
                runtime = runtime_of(cfg, spec.name)
                units[rel] = ImageUnit(rel, image_of_impl(spec, prefix, tag, runtime), (spec.dir_path,), (rel,), runtime)
    nemo = nemo_gym_instances(cfg)
    if nemo and topology == "all-in-one":
        raise ConfigError(f"{', '.join(nemo)}: NeMo Gym servers run in images of their own (Python 3.13), not in the all-in-one image; "
                          "use --topology separated (gymctl build -t separated, gymctl up -t separated)", key_path=nemo[0])
    if topology in (None, "all-in-one") and not nemo:
        dirs = {f"{s.server_type}/{s.impl}": s.dir_path for s in cfg.instances.values() if not s.alias_of and s.dir_path}
        rels = tuple(sorted(dirs))
        units[ALL_IN_ONE_UNIT] = ImageUnit(ALL_IN_ONE_UNIT, all_in_one_image(prefix, tag), tuple(dirs[r] for r in rels), rels)
    return list(units.values())
