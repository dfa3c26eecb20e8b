"""NeMo Gym's own servers in a config: which instances they are, the `gymctl.nemo_gym` block, the keys gymctl cannot honour.

An instance runs as a NeMo Gym server when its `app.py` builds its app through the `nemo_gym` package and
has no gymctl `create_app`, or when `gymctl.instances.NAME.runtime: nemo_gym` says so.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gymctl.config.model import GYMCTL_KEY, GymConfig
from gymctl.errors import ConfigError, did_you_mean

RUNTIMES = ("gymctl", "nemo_gym")
NEMO_GYM_KEY = "nemo_gym"
NEMO_GYM_FIELDS = ("python", "start_timeout_s")
SPINUP_KEY = "server_spinup_timeout_seconds"  # NeMo Gym's own bound on a server's start: honoured
DEFAULT_START_TIMEOUT_S = 180.0  # NeMo Gym's own default is 600 s; a cold start of several servers on 2 cores takes ~30-60 s

_CREATE_APP = re.compile(r"^(async\s+)?def\s+create_app\s*\(", re.MULTILINE)
_IMPORTS_NEMO_GYM = re.compile(r"^\s*(from|import)\s+nemo_gym\b", re.MULTILINE)
_RAY_OFF = re.compile(r"^\s+ray_enabled(\s*:\s*[\w\[\]|, ]+)?\s*=\s*False\b", re.MULTILINE)

# NeMo Gym settings that change what its orchestrator does and that gymctl cannot do: (key, when, what to do).
_UNHONOURED: tuple[tuple[str, str], ...] = (
    ("dry_run", "gymctl neither builds venvs nor has a dry run (NeMo Gym's dry_run only installs server venvs); "
                "build each server's .venv once (README: \"Deploying an existing NeMo Gym environment\") and drop dry_run"),
    ("use_absolute_ip", "gymctl advertises each server's `host` (or GYMCTL_ADVERTISE_HOST), never a guessed address; "
                        "set those instead and drop use_absolute_ip"),
)


@dataclass(frozen=True)
class NemoGymSettings:
    """The `gymctl.nemo_gym` block: how gymctl starts NeMo Gym servers."""

    python: str | None = None  # one interpreter for every NeMo Gym server (else each server's own .venv)
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S  # until its GET / answers; NeMo Gym's server_spinup_timeout_seconds wins


@functools.lru_cache(maxsize=256)
def _code_kind(path: Path, mtime_ns: int) -> tuple[bool, bool]:
    """(is a NeMo Gym server, declares ray_enabled = False) from the entrypoint's text."""
    text = path.read_text(errors="replace")
    nemo = _CREATE_APP.search(text) is None and _IMPORTS_NEMO_GYM.search(text) is not None
    return nemo, _RAY_OFF.search(text) is not None


def _entrypoint(cfg: GymConfig, name: str) -> Path | None:
    spec = cfg.instances[name]
    if spec.dir_path is None:
        return None
    path = spec.dir_path / spec.entrypoint
    return path if path.is_file() else None


def runtime_of(cfg: GymConfig, name: str) -> str:
    """`nemo_gym` or `gymctl` for one instance (an alias runs in its agent's process, whatever that is)."""
    spec = cfg.instances[name]
    if spec.alias_of:
        return runtime_of(cfg, spec.alias_of) if spec.alias_of in cfg.instances else "gymctl"
    explicit = cfg.deployment_of(name).runtime
    if explicit is not None:
        if explicit not in RUNTIMES:
            raise ConfigError(f"{explicit!r} is not a runtime; choose one of: {', '.join(RUNTIMES)}{did_you_mean(str(explicit), RUNTIMES)}",
                              source=cfg.origins.get(GYMCTL_KEY), key_path=f"{GYMCTL_KEY}.instances.{name}.runtime")
        return str(explicit)
    path = _entrypoint(cfg, name)
    return "nemo_gym" if path is not None and _code_kind(path, path.stat().st_mtime_ns)[0] else "gymctl"


def nemo_gym_instances(cfg: GymConfig, names: list[str] | None = None) -> list[str]:
    """The instances (of `names`, default all) that are NeMo Gym servers with a process of their own (no aliases)."""
    return [n for n in (cfg.instances if names is None else names) if not cfg.instances[n].alias_of and runtime_of(cfg, n) == "nemo_gym"]


def called_by_nemo_gym(cfg: GymConfig) -> list[str]:
    """gymctl's instances that a NeMo Gym server of `cfg` names as a peer ({type, name}); they cannot send it a token."""
    from gymctl.config.model import _references

    nemo = nemo_gym_instances(cfg)
    called: list[str] = []
    for name in nemo:
        spec = cfg.instances[name]
        block = OmegaConf.to_container(cfg.tree[name][spec.server_type][spec.impl], resolve=False)
        for _, ref in _references(block, name):
            peer = cfg.instances.get(str(ref["name"]))
            target = peer.alias_of or peer.name if peer else None
            if target and target not in nemo and target not in called:
                called.append(target)
    return called


def uses_ray(cfg: GymConfig, name: str) -> bool:
    """Will this NeMo Gym server call ray.init at start? (0.7.0: unless its class declares ray_enabled = False.)"""
    path = _entrypoint(cfg, name)
    return path is None or not _code_kind(path, path.stat().st_mtime_ns)[1]


def nemo_gym_settings(cfg: GymConfig) -> NemoGymSettings:
    """The `gymctl.nemo_gym` block, checked (unknown keys named), with NeMo Gym's server_spinup_timeout_seconds applied."""
    where = cfg.origins.get(GYMCTL_KEY, "config")
    gym = cfg.tree.get(GYMCTL_KEY)
    raw: Any = gym.get(NEMO_GYM_KEY) if isinstance(gym, DictConfig) else None
    block: dict[Any, Any] = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else {}  # type: ignore[assignment]
    if raw is not None and not isinstance(raw, DictConfig):
        raise ConfigError(f"{raw!r} is not a mapping; write e.g. nemo_gym: {{python: /opt/gym/.venv/bin/python}}",
                          source=where, key_path=f"{GYMCTL_KEY}.{NEMO_GYM_KEY}")
    unknown = [str(k) for k in block if k not in NEMO_GYM_FIELDS]
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{did_you_mean(unknown[0], NEMO_GYM_FIELDS)} (known: {', '.join(NEMO_GYM_FIELDS)})",
                          source=where, key_path=f"{GYMCTL_KEY}.{NEMO_GYM_KEY}")
    python = block.get("python")
    if python is not None and (not isinstance(python, str) or not python.strip()):
        raise ConfigError(f"{python!r} is not a path to a Python interpreter", source=where, key_path=f"{GYMCTL_KEY}.{NEMO_GYM_KEY}.python")
    timeout = cfg.tree.get(SPINUP_KEY)
    key = SPINUP_KEY
    if timeout is None:
        timeout, key = block.get("start_timeout_s", DEFAULT_START_TIMEOUT_S), f"{GYMCTL_KEY}.{NEMO_GYM_KEY}.start_timeout_s"
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError(f"{timeout!r} is not a number of seconds (> 0)", source=where, key_path=key)
    return NemoGymSettings(python=python.strip() if python else None, start_timeout_s=float(timeout))


def check_nemo_gym(cfg: GymConfig, names: list[str] | None = None) -> list[str]:
    """The NeMo Gym instances among `names`; ConfigError for what gymctl cannot honour with them in the deployment."""
    nemo = nemo_gym_instances(cfg, names)
    if not nemo:
        return nemo
    for key, what in _UNHONOURED:
        if cfg.tree.get(key):
            raise ConfigError(f"NeMo Gym's {key}={cfg.tree.get(key)!r} cannot be honoured: {what}", source=cfg.origins.get(key, "config"), key_path=key)
    for name in nemo:
        replicas = cfg.deployment_of(name).replicas
        if replicas > 1:
            raise ConfigError(f"{name} is a NeMo Gym server: it runs once (its peers find it at the one port NEMO_GYM_CONFIG_DICT names), "
                              f"not {replicas} times; drop replicas", source=cfg.origins.get(GYMCTL_KEY), key_path=f"{GYMCTL_KEY}.instances.{name}.replicas")
    nemo_gym_settings(cfg)
    return nemo
