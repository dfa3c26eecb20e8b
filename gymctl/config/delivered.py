"""The merged config a container is handed: GYMCTL_CONFIG_YAML (its text) or GYMCTL_CONFIG_FILE (a mounted file).

A container with a read-only root filesystem cannot take Compose's inline `configs:` (Compose copies them in),
so compose stacks pass the config's text in the environment (it holds no secret: only `${oc.env:VAR}` references);
it is written once to a private file under the temporary directory (a tmpfs in gymctl's containers) and loaded
from there like any config file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gymctl.server.settings import ServerSettings


def delivered_config_file(settings: ServerSettings) -> str | None:
    """The path of the config this container was handed (GYMCTL_CONFIG_YAML written out first), or None."""
    if not settings.config_yaml:
        return settings.config_file
    fd, path = tempfile.mkstemp(prefix="gymctl-config-", suffix=".yaml")  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(settings.config_yaml)
    return str(Path(path))
