"""Secrets in a rendered stack: every `${oc.env:VAR}` stays a reference; literal secrets become env variable names."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gymctl.config.model import SECRET_KEY

ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")
# Always passed through by name: the bearer token between gymctl components.
ALWAYS_PASSED = ("GYMCTL_AUTH_TOKEN",)


def env_var_for(key_path: str) -> str:
    """The variable a literal secret at `key_path` travels in: GYMCTL_SECRET_<PATH>."""
    return "GYMCTL_SECRET_" + re.sub(r"[^A-Za-z0-9]+", "_", key_path).strip("_").upper()


def externalize_secrets(tree: DictConfig) -> tuple[DictConfig, dict[str, str]]:
    """A copy of `tree` whose literal secret values are `${oc.env:GYMCTL_SECRET_...}` references.

    Returns the copy and {variable: value}; the values are never written anywhere: `gymctl up` passes
    them to compose through its own environment and the compose file names the variables only.
    """
    raw = OmegaConf.to_container(tree, resolve=False)
    values: dict[str, str] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                sub = f"{path}.{k}" if path else str(k)
                if SECRET_KEY.search(str(k)) and isinstance(v, (str, int)) and not isinstance(v, bool) and v != "" and "${" not in str(v):
                    var = env_var_for(sub)
                    values[var] = str(v)
                    out[k] = f"${{oc.env:{var}}}"
                else:
                    out[k] = walk(v, sub)
            return out
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return OmegaConf.create(walk(raw, "")), values


def referenced_env(yaml_text: str) -> list[str]:
    """Every variable the config reads with `${oc.env:VAR}` (to be passed into the containers by name)."""
    return sorted({*ENV_REF.findall(yaml_text)} | set(ALWAYS_PASSED))
