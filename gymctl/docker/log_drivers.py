"""The logging drivers a Docker engine has (built in, and enabled plugins): `gymctl up` refuses a `gymctl.logging.driver` it lacks."""

from __future__ import annotations

from gymctl.docker.cli import engine_client
from gymctl.errors import DockerError


def engine_log_drivers() -> list[str]:
    """`docker info`'s logging drivers plus enabled logging plugins (as `name` and `name:tag`)."""
    client = engine_client()
    drivers = list((client.info().get("Plugins") or {}).get("Log") or [])
    for plugin in client.plugins.list():
        caps = {str(t.get("Capability")) for t in plugin.attrs.get("Config", {}).get("Interface", {}).get("Types", [])}
        if plugin.enabled and "logdriver" in caps:
            drivers += [plugin.name, plugin.name.rsplit(":", 1)[0]]
    return drivers


def check_log_driver(driver: str) -> None:
    """DockerError naming what the engine has, when it lacks `driver`."""
    have = engine_log_drivers()
    if driver not in have:
        raise DockerError(f"gymctl.logging.driver: {driver!r} is not a logging driver of this Docker engine (it has: {', '.join(sorted(set(have)))}); "
                          "install its plugin (docker plugin install ...) or choose one of those")
