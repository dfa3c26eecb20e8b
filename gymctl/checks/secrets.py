"""Literal secrets in config files: an API key written into a YAML file instead of `${oc.env:VAR}`."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from gymctl.checks.model import Finding
from gymctl.config.model import GymConfig
from gymctl.config.redact import secret_paths

CHECK = "secrets in config files"
# Where a literal secret is expected: NeMo Gym's gitignored env.yaml, and the command line of whoever runs it.
SECRET_HOMES = ("env.yaml", "command line")


def _literal(tree: Any, path: str) -> bool:
    """True when the value at a dotted/indexed key path is written out (not an `${...}` reference)."""
    node = tree
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return node not in (None, "") and not (isinstance(node, str) and "${" in node)


def literal_secrets(cfg: GymConfig) -> list[Finding]:
    """An error per secret written into a config file (its key path and file; never the value)."""
    raw = OmegaConf.to_container(cfg.tree, resolve=False)
    assert isinstance(raw, dict)
    findings = []
    for path in secret_paths(raw):
        if not _literal(raw, path):
            continue
        origin = cfg.origins.get(path.split(".")[0].split("[")[0], "")
        if origin == "command line" or origin.endswith(SECRET_HOMES[0]):
            continue
        findings.append(Finding(CHECK, "error", path, f"a literal secret in {origin or 'the config'}; write ${{oc.env:VAR}} and export VAR "
                                                      "(or keep it in the gitignored env.yaml)"))
    return findings or [Finding(CHECK, "ok", "config", "no literal secret in the config files (keys by name, URLs by value)")]
