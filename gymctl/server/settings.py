"""ServerSettings: what a server process reads from its environment (GYMCTL_*), declared once."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    """Environment of one server process. Containers set these; the local runtime passes arguments."""

    model_config = SettingsConfigDict(env_prefix="GYMCTL_", extra="ignore")

    head_url: str | None = None  # where to register; default: the config's head_server
    auth_token: str | None = None  # GYMCTL_AUTH_TOKEN: bearer token between gymctl components
    heartbeat_s: float = 2.0
    lease_s: float = 6.0  # no heartbeat for this long -> unhealthy
    drop_s: float = 60.0  # ... and for this long -> dropped from the registry
    advertise_host: str | None = None  # the address peers use (a compose service name, a routable IP)
    bind_host: str | None = None  # the address to listen on (0.0.0.0 in containers)
    port: int | None = None  # fixed listening port (containers: 8000)
    host_url: str | None = None  # the published URL, for clients outside the network
    log_level: str = "warning"
