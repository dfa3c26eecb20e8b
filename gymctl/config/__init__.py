"""NeMo-Gym-compatible configuration: load, merge, override, validate."""

from gymctl.config.model import (
    SERVER_TYPES,
    GymConfig,
    InstanceDeployment,
    InstanceSpec,
    load_config,
    redact,
)

__all__ = ["SERVER_TYPES", "GymConfig", "InstanceDeployment", "InstanceSpec", "load_config", "redact"]
