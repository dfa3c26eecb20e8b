"""How a NeMo Gym server is started as NeMo Gym starts it: its interpreter, its NEMO_GYM_CONFIG_DICT, its environment.

NeMo Gym 0.7.0's orchestrator (`ng_run`) runs `<server dir>/.venv/bin/python app.py` in the server's directory
with the server directory on PYTHONPATH, `NEMO_GYM_CONFIG_DICT` (the merged config as YAML, every instance with
its host and port) and `NEMO_GYM_CONFIG_PATH` (the instance's name). gymctl does the same without the
orchestrator, without the per-start venv work, and with the real address of every instance (gymctl's too).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from gymctl.config.model import GYMCTL_KEY, GymConfig, redact
from gymctl.config.nemo_gym import NemoGymSettings
from gymctl.errors import ConfigError, StartupError
from gymctl.server.registration import registration_record
from gymctl.server.serving import free_port

CONFIG_DICT_ENV = "NEMO_GYM_CONFIG_DICT"
CONFIG_PATH_ENV = "NEMO_GYM_CONFIG_PATH"
# Where a NeMo Gym server's peers are when gymctl does not run them beside it (a container stack names each
# service's address: `name=host:port,...`); NEMO_GYM_CONFIG_DICT carries these.
PEERS_ENV = "GYMCTL_NEMO_GYM_PEERS"
# Variables of the calling shell that describe gymctl's own Python or one gymctl server, not a NeMo Gym server.
_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GYMCTL_PORT", "GYMCTL_HOST_URL", "GYMCTL_CONFIG_FILE", "GYMCTL_READY_FD",
             "GYMCTL_AUTH_TOKEN", "GYMCTL_REGISTRATION_TOKEN")  # gymctl registers it: the server never needs a token
# What NeMo Gym's parser fills in and its servers read without a default.
_NEMO_DEFAULTS: dict[str, Any] = {"dry_run": False, "skip_venv_if_present": True}

Address = tuple[str, int]  # (host, port) as peers reach an instance


@dataclass
class NemoGymLaunch:
    """Everything needed to start one NeMo Gym server and register it on its behalf."""

    name: str
    argv: list[str]  # [interpreter, absolute path of app.py]: the pid is the server itself
    cwd: Path  # the server's directory, as ng_run starts it
    env: dict[str, str]
    url: str  # where its GET / answers and peers reach it
    records: list[dict[str, Any]] = field(default_factory=list)  # its registration, then one per alias


def interpreter(cfg: GymConfig, name: str, settings: NemoGymSettings) -> Path:
    """The server's own Python: gymctl.nemo_gym.python, else its venv (NeMo Gym's uv_venv_dir, else `<dir>/.venv`)."""
    spec = cfg.instances[name]
    assert spec.dir_path is not None
    rel = f"{spec.server_type}/{spec.impl}"
    if settings.python:
        candidates = [Path(settings.python).expanduser()]
    else:
        candidates = []
        venv_root = cfg.tree.get("uv_venv_dir")
        if venv_root:
            candidates.append(Path(str(venv_root)).expanduser() / rel / ".venv/bin/python")
        candidates.append(spec.dir_path / ".venv/bin/python")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.absolute()  # not resolved: a venv's python is a symlink whose path says which venv
    looked = ", ".join(str(p) for p in candidates)
    how = (f"create it: cd {spec.dir_path} && uv venv --seed --python 3.13 .venv && "
           f"uv pip install --python .venv/bin/python -r requirements.txt (nemo-gym needs Python 3.13); "
           f"or set gymctl.nemo_gym.python to an interpreter that has nemo_gym and this server's requirements")
    raise StartupError(f"{name} is a NeMo Gym server ({rel}) and its Python is missing; looked for: {looked}; {how}", instance=name)


def peer_addresses(value: str | None) -> dict[str, Address]:
    """GYMCTL_NEMO_GYM_PEERS (`name=host:port,...`) as {name: (host, port)}; ConfigError naming a malformed entry."""
    out: dict[str, Address] = {}
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        name, _, where = entry.strip().partition("=")
        host, _, port = where.rpartition(":")
        if not name or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{PEERS_ENV}: {entry.strip()!r} is not name=host:port (e.g. policy_model=policy_model:8000)")
        out[name] = (host.strip("[]"), int(port))
    return out


def set_port(cfg: GymConfig, name: str, port: int) -> None:
    """The port `name` listens on, in the config itself (the spec and its block): a NeMo Gym server binds the port its config names."""
    spec = cfg.instances[name]
    spec.port = port
    cfg.tree[name][spec.server_type][spec.impl]["port"] = port


def assign_ports(cfg: GymConfig, names: list[str]) -> None:
    """Give each of `names` that has no port a free one."""
    for name in names:
        spec = cfg.instances[name]
        if not spec.port:
            set_port(cfg, name, free_port(spec.host or "127.0.0.1", "NeMo Gym server"))


def config_dict(cfg: GymConfig, name: str, addresses: dict[str, Address], head: Address, *,
                bind_host: str | None = None, ray_address: str | None = None) -> dict[str, Any]:
    """NEMO_GYM_CONFIG_DICT for `name`: the merged config, resolved for this server only (every other instance's
    secrets redacted), each instance with the host and port peers reach it at (this one: where it binds)."""
    tree = cfg.resolve(required=[name])
    tree.pop(GYMCTL_KEY, None)
    for other, spec in cfg.instances.items():
        if other not in tree:
            continue
        target = spec.alias_of or other
        if other != name:
            tree[other] = redact(tree[other])
        block = tree[other][spec.server_type][spec.impl]
        if target in addresses:
            block["host"], block["port"] = addresses[target]
    if bind_host:
        spec = cfg.instances[name]
        tree[name][spec.server_type][spec.impl]["host"] = bind_host
    tree["head_server"] = {**(tree.get("head_server") or {}), "host": head[0], "port": head[1]}
    for key, value in _NEMO_DEFAULTS.items():
        tree.setdefault(key, value)
    if ray_address:
        tree["ray_head_node_address"] = ray_address
    return tree


def server_env(cfg: GymConfig, name: str, config: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the caller's (less gymctl's own Python and one-server variables) plus NeMo Gym's."""
    spec = cfg.instances[name]
    assert spec.dir_path is not None
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _ENV_DROP}
    root = spec.dir_path.parent.parent  # the checkout: `resources_servers.<impl>...` imports resolve there
    env.update({
        CONFIG_DICT_ENV: OmegaConf.to_yaml(OmegaConf.create(config)),
        CONFIG_PATH_ENV: name,
        "PYTHONPATH": f"{spec.dir_path}{os.pathsep}{root}",
        "PYTHONUNBUFFERED": "1",
        "RAY_USAGE_STATS_ENABLED": env.get("RAY_USAGE_STATS_ENABLED", "0"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": env.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    })
    return env


def launch(cfg: GymConfig, name: str, settings: NemoGymSettings, *, addresses: dict[str, Address], head: Address,
           advertise: str, bind_host: str | None = None, ray_address: str | None = None, host_url: str | None = None) -> NemoGymLaunch:
    """How to start NeMo Gym server `name` and what to register for it (itself and the aliases it serves)."""
    spec = cfg.instances[name]
    assert spec.dir_path is not None
    python = interpreter(cfg, name, settings)
    port = addresses[name][1]
    config = config_dict(cfg, name, addresses, head, bind_host=bind_host, ray_address=ray_address)
    url = f"http://{advertise}:{port}"
    records = [registration_record(instance=name, server_type=spec.server_type, impl=spec.impl, url=url, host=advertise, port=port,
                                   host_url=host_url, entrypoint=spec.entrypoint, dir_path=str(spec.dir_path))]
    for alias, other in cfg.instances.items():
        if other.alias_of == name:
            records.append({**records[0], "process_name": alias, "config_path": alias, "server_type": other.server_type,
                            "name": other.impl, "alias_of": name})
    return NemoGymLaunch(name, [str(python), str((spec.dir_path / spec.entrypoint).absolute())], spec.dir_path,
                         server_env(cfg, name, config), url, records)
