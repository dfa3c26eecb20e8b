"""`gymctl.instances.NAME.workers`: which servers may run as several processes on one port, checked with the config.

A server with `workers: N` runs N processes on one port (SO_REUSEPORT: the kernel spreads connections
over them), so consecutive calls of one rollout may reach different processes. That is only right for a
server whose session state travels with the request (cookies, the request body): gymctl's own servers
declare it with `SESSION_STATE = "request"` in their app.py. A server that keeps sessions in its
process's memory scales by replicas instead (gymctl.instances.NAME.replicas), which keep a session on one
replica. NeMo Gym's own servers start their workers themselves from `num_workers` in their block (the
counterpart of this key); a NeMo Gym resources server keeps its sessions in memory, so gymctl refuses
`workers` for it and NeMo Gym servers in general (they run once, on the port their peers are told).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from gymctl.config.model import GYMCTL_KEY, GymConfig
from gymctl.errors import ConfigError

NEMO_GYM_WORKERS_KEY = "num_workers"  # NeMo Gym's name for it, in a server's own block
_REQUEST_STATE = re.compile(r"""^SESSION_STATE\s*(:\s*\w+\s*)?=\s*["']request["']""", re.MULTILINE)


@functools.lru_cache(maxsize=256)
def _declares_request_state(path: Path, mtime_ns: int) -> bool:
    return _REQUEST_STATE.search(path.read_text(errors="replace")) is not None


def session_state_travels(cfg: GymConfig, name: str) -> bool:
    """Does the server of instance `name` say its session state travels with the request (`SESSION_STATE = "request"`)?"""
    spec = cfg.instances[name]
    if spec.dir_path is None:
        return False
    path = spec.dir_path / spec.entrypoint
    return path.is_file() and _declares_request_state(path, path.stat().st_mtime_ns)


def workers_of(cfg: GymConfig, name: str) -> int:
    """How many worker processes serve instance `name`'s port (1 unless `gymctl.instances.NAME.workers` says more)."""
    return cfg.deployment_of(name).workers


def check_workers(cfg: GymConfig) -> None:
    """ConfigError for `workers > 1` on a server that cannot have them, naming the key and what to do instead."""
    from gymctl.config.nemo_gym import runtime_of

    for name, dep in cfg.deployment.items():
        if dep.workers <= 1 or name not in cfg.instances:
            continue
        spec = cfg.instances[name]
        key_path = f"{GYMCTL_KEY}.instances.{name}.workers"
        where = cfg.origins.get(GYMCTL_KEY)
        if spec.alias_of:
            raise ConfigError(f"{name} is an alias of {spec.alias_of} and is served by its process; set workers on "
                              f"{GYMCTL_KEY}.instances.{spec.alias_of} instead", source=where, key_path=key_path)
        if runtime_of(cfg, name) == "nemo_gym":
            if spec.server_type == "resources_servers":
                raise ConfigError(
                    f"{dep.workers}: {name} is a NeMo Gym resources server, which keeps its sessions in its process's memory: "
                    "calls of one rollout spread over worker processes would miss them; drop workers (it runs as one process)",
                    source=where, key_path=key_path)
            raise ConfigError(
                f"{dep.workers}: {name} is a NeMo Gym server, which starts its own worker processes: set NeMo Gym's "
                f"{spec.key_path}.{NEMO_GYM_WORKERS_KEY}: {dep.workers} instead and drop workers", source=where, key_path=key_path)
        if not session_state_travels(cfg, name):
            raise ConfigError(
                f"{dep.workers}: {name}'s server ({spec.server_type}/{spec.impl}) does not declare that its session state travels "
                f"with the request (SESSION_STATE = \"request\" in its {spec.entrypoint}), so calls of one rollout spread over "
                f"worker processes could miss it; scale it with {GYMCTL_KEY}.instances.{name}.replicas (a session stays on one "
                "replica), or declare SESSION_STATE if its state is in cookies or the request",
                source=where, key_path=key_path)


def refuse_in_one_process(cfg: GymConfig, what: str = "the all-in-one topology") -> None:
    """ConfigError when an instance asks for workers where every server shares one process (all-in-one, an embedded collection)."""
    for name, dep in cfg.deployment.items():
        if dep.workers > 1:
            raise ConfigError(
                f"{dep.workers}: {what} runs every server in this one process, so it cannot give {name} worker processes; "
                "run with --topology separated (each instance its own processes), or drop workers",
                source=cfg.origins.get(GYMCTL_KEY), key_path=f"{GYMCTL_KEY}.instances.{name}.workers")
