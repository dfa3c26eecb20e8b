"""One swarm config per service of a swarm stack, holding what that service needs (pure: config text in, text out).

Swarm rolls a service whose spec changed, and a service's config is part of its spec: one config shared by every
service would roll them all for any change. So each server gets the settings outside any instance, its own
block(s) (its aliases' too) and, for every other instance, a stub that names it and its type only (enough for
references to it and for NeMo Gym's per-server config, whose addresses come from the registry anyway); of
`gymctl.instances` only what a running server reads (`runtime`), never replicas or placement, which `docker
service scale` and the stack's `deploy:` handle. The head serves the whole config (`/global_config_dict_yaml`),
without `gymctl.instances` and `gymctl.nodes`, so scaling or placing servers leaves it alone too.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from gymctl.config.model import GYMCTL_KEY, GymConfig, to_yaml

PLACEMENT_ONLY = ("instances", "nodes")  # gymctl.* read by gymctl on the deploying machine, never by a server
SERVER_READS = ("runtime",)  # of gymctl.instances.NAME: what `gymctl serve` reads inside the container


def _tree(config_yaml: str) -> dict[str, Any]:
    tree = OmegaConf.to_container(OmegaConf.create(config_yaml), resolve=False)
    assert isinstance(tree, dict)
    return {str(k): v for k, v in tree.items()}


def _stub(cfg: GymConfig, name: str, block: dict[str, Any]) -> dict[str, Any]:
    """Another instance as a server needs to know it: its type and implementation (an alias: the agent it stands for)."""
    spec = cfg.instances[name]
    own = block[spec.server_type][spec.impl] or {}
    kept = {k: own[k] for k in ("entrypoint", "agent_server") if k in own}
    return {spec.server_type: {spec.impl: kept}}


def head_config(cfg: GymConfig, config_yaml: str) -> str:
    """The head's: the whole container config less gymctl's placement settings."""
    tree = _tree(config_yaml)
    gym = {k: v for k, v in (tree.get(GYMCTL_KEY) or {}).items() if k not in PLACEMENT_ONLY}
    if GYMCTL_KEY in tree:
        tree[GYMCTL_KEY] = gym
    return to_yaml(tree)


def service_config(cfg: GymConfig, config_yaml: str, instance: str) -> str:
    """What the service of `instance` reads: the global settings, its own block and its aliases', stubs for the rest."""
    tree = _tree(config_yaml)
    own = {instance, *(n for n, s in cfg.instances.items() if s.alias_of == instance)}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if key == GYMCTL_KEY:
            gym = {k: v for k, v in (value or {}).items() if k not in PLACEMENT_ONLY}
            reads = {n: {k: v for k, v in (s or {}).items() if k in SERVER_READS}
                     for n, s in ((value or {}).get("instances") or {}).items() if n in own}
            reads = {n: r for n, r in reads.items() if r}
            out[key] = {**gym, **({"instances": reads} if reads else {})}
        elif key in cfg.instances:
            out[key] = value if key in own else _stub(cfg, key, value)
        else:
            out[key] = value
    return to_yaml(out)
