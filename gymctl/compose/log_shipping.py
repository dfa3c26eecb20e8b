"""`gymctl.logging: {driver, options}`: the Docker logging driver every container of a rendered stack uses (pure; checked at `up`)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from gymctl.errors import ConfigError

KEY = "gymctl.logging"
DRIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")  # json-file, gelf, fluentd, grafana/loki:latest ...


class LoggingSpec(BaseModel):
    """Compose's `logging:` block: a driver of the engine and its string options (fluentd-address, gelf-address, tag...)."""

    driver: str
    options: dict[str, str] = {}


def logging_spec(tree: Any) -> LoggingSpec | None:
    """The config's `gymctl.logging` (None when absent); ConfigError naming the key for anything else."""
    block = tree.get("gymctl") if hasattr(tree, "get") else None
    raw = block.get("logging") if block is not None and hasattr(block, "get") else None
    if raw is None:
        return None
    if not hasattr(raw, "get"):
        raise ConfigError(f"{raw!r} is not a mapping; write e.g. {{driver: fluentd, options: {{fluentd-address: 10.0.0.9:24224}}}}", key_path=KEY)
    unknown = [str(k) for k in raw if k not in ("driver", "options")]
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} (known: driver, options)", key_path=KEY)
    driver = raw.get("driver")
    if not isinstance(driver, str) or not DRIVER_NAME.match(driver):
        raise ConfigError(f"{driver!r} is not a logging driver name (e.g. json-file, local, fluentd, gelf, syslog, journald)", key_path=f"{KEY}.driver")
    options = raw.get("options") or {}
    if not hasattr(options, "items"):
        raise ConfigError(f"{options!r} is not a mapping of option names to values", key_path=f"{KEY}.options")
    out: dict[str, str] = {}
    for k, v in options.items():
        if not isinstance(v, str | int | float | bool):  # a mapping, a list (omegaconf's too) or null
            raise ConfigError(f"{v!r} is not a single value (Docker's log options are strings)", key_path=f"{KEY}.options.{k}")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return LoggingSpec(driver=driver, options=out)
