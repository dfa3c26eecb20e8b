"""ServerSettings: every GYMCTL_* environment variable gymctl reads, declared once (servers import it: keep it light)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


class ServerSettings(BaseSettings):
    """The GYMCTL_* environment of a gymctl process (a server, the head, a runtime, the CLI).

    Precedence, for every field, once: an explicit argument (`ServerSettings(port=8000)`, a CLI flag)
    > the environment (`GYMCTL_PORT=8000`) > the config file (e.g. head_server, an instance's port;
    applied by the code that holds the config, only where the field is None) > the default here.
    An empty variable counts as unset. Only entry points build this from the environment; the
    library takes it as an argument.
    """

    model_config = SettingsConfigDict(env_prefix="GYMCTL_", extra="ignore", env_ignore_empty=True)

    head_url: str | None = None  # where to register / which head to ask; default: the config's head_server
    auth_token: str | None = None  # GYMCTL_AUTH_TOKEN: bearer token between gymctl components
    tls_ca_file: str | None = None  # clients: a CA to trust for https:// servers (a `gymctl up --tls` stack's; gymctl.server.tls)
    registration_token: str | None = None  # local runtimes with auth off: the head's token for /register (gymctl.head.registration_token)
    heartbeat_s: float = 2.0
    lease_s: float = 6.0  # no heartbeat for this long -> unhealthy
    drop_s: float = 60.0  # ... and for this long -> dropped from the registry
    head_wait_s: float = 120.0  # a process whose head lives on another host waits this long for it at start
    drain_s: float = Field(default=0.0, ge=0, le=300, allow_inf_nan=False)  # at stop: serve this long after deregistering (swarm replicas)
    advertise_host: str | None = None  # the address peers use (a compose service name, a routable IP)
    bind_host: str | None = None  # the address to listen on (0.0.0.0 in containers)
    port: int | None = None  # fixed listening port (containers: 8000)
    host_url: str | None = None  # the published URL, for clients outside the network
    log_level: str = "warning"
    config_file: str | None = None  # containers: the merged config, mounted (`gymctl serve` reads it)
    config_yaml: str | None = None  # containers: the merged config itself (read-only roots: nothing to mount; gymctl.config.delivered)
    ready_fd: int | None = None  # separated runtime: the pipe a child writes its {"url", "pid"} line to
    telemetry: bool = False  # keep FastAPI's per-request OpenTelemetry hooks
    separated_start: str = "fork"  # `exec`: the separated runtime execs its first children too
    servers_dir: str | None = None  # the directory holding <server_type>/<impl>/ trees (gymctl.config.paths)
    project: str | None = None  # the CLI's compose project (stack) name when -p is not given
    base_image: str | None = None  # `gymctl build` / `up --build`: the base image when --base-image is not given
    metrics: bool = True  # GYMCTL_METRICS=0: no /metrics middleware (gymctl.server.metrics)
    monitoring_public: bool = True  # /metrics, /prometheus_targets and /ui need no token (gymctl.monitoring.public)
    log_format: str = "text"  # `json`: one JSON object per line (gymctl.server.logformat)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1)  # larger request bodies are answered 413 unread
    request_timeout_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)  # a request not whole by then: connection closed
    max_concurrency: int | None = Field(default=None, ge=1)  # requests in flight per server before 503 + Retry-After (gymctl.server.capacity)
    upstream_connections: int | None = Field(default=None, ge=1)  # a server's outbound connections per upstream; more calls wait
    retry_after_s: int = Field(default=1, ge=0, le=3600)  # the Retry-After a busy server sends
    workers: int = Field(default=1, ge=1)  # separated runtime: this process is one of N on its port (SO_REUSEPORT; gymctl.runtime.workers)
    source_address: str | None = None  # a loopback address this process's connections to loopback servers come from (gymctl.server.connector)
    collect_processes: int | None = Field(default=None, ge=1)  # `gymctl collect`: processes holding its connections (default: as many as needed)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; choose one of: {', '.join(LOG_LEVELS)}")
        if level == "trace":  # uvicorn's level below DEBUG: name it for the logging module too
            import logging

            logging.addLevelName(5, "TRACE")
        return level

    @field_validator("auth_token")
    @classmethod
    def _one_line_token(cls, value: str | None) -> str | None:
        if value and any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("the token holds a newline, a space or a control character; a bearer token is one line of "
                             "visible characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from gymctl.server.logformat import check_log_format  # here: importing settings stays light

        return check_log_format(value)

    @classmethod
    def from_env(cls, **explicit: Any) -> ServerSettings:
        """The environment under `explicit` arguments; a malformed GYMCTL_* value is a ConfigError, not a traceback.

        Without arguments, one parse per distinct GYMCTL_* environment (each a copy): a served app's kit, metrics,
        limits, admission and log format each ask, and a parse costs milliseconds at start-up.
        """
        key = None
        if not explicit:
            key = (cls, tuple(sorted((k, v) for k, v in os.environ.items() if k[:7].upper() == "GYMCTL_")))
            cached = _PARSED.get(key)
            if cached is not None:
                return cached.model_copy()
        try:
            parsed = cls(**explicit)
        except ValidationError as e:
            from gymctl.errors import ConfigError

            problems = "; ".join(f"GYMCTL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors())
            raise ConfigError(f"{problems} (unset it or give a valid value)", source="environment") from None
        if key is not None:
            if len(_PARSED) >= 32:  # tests change the environment often: keep the few latest
                _PARSED.clear()
            _PARSED[key] = parsed.model_copy()
        return parsed


_PARSED: dict[tuple[type, tuple[tuple[str, str], ...]], ServerSettings] = {}
