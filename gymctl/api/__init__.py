"""gymctl's library front door for a training loop: start a deployment, run rollouts of rows, check health, stop.

    from gymctl.api import Deployment
    dep = await Deployment.start(config_paths, overrides, topology="all-in-one")   # or "separated", "ray"
    async for index, result in dep.run_rollouts(rows): ...
    await dep.stop()

`SyncDeployment` is the same for code without an event loop. Never imports Ray unless topology="ray".
Errors are gymctl's (gymctl.errors): ConfigError, InputError, UnknownServerError, ServerError, StartupError, RayError, ...
"""

from __future__ import annotations

from gymctl.api.deployment import TOPOLOGIES, Deployment, Topology, override_args
from gymctl.api.sync import SyncDeployment
from gymctl.errors import (
    ConfigError,
    GymctlError,
    InputError,
    NotReadyError,
    RayError,
    ServerError,
    StartupError,
    UnknownServerError,
)

__all__ = [
    "TOPOLOGIES", "ConfigError", "Deployment", "GymctlError", "InputError", "NotReadyError", "RayError", "ServerError",
    "StartupError", "SyncDeployment", "Topology", "UnknownServerError", "override_args",
]
