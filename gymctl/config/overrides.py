"""Command-line overrides in NeMo Gym's (Hydra) syntax: `+config_paths=[a,b]`, `+k=v`, `++k=v`, `k=v`."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from gymctl.errors import UsageError


@dataclass
class Overrides:
    """Config files named on the command line, and the dotted key=value settings that override them."""

    config_paths: list[str] = field(default_factory=list)
    settings: list[tuple[str, object]] = field(default_factory=list)


def parse_value(text: str) -> object:
    """Parse a value the way Hydra does: YAML scalars and flow lists/maps; bare words stay strings."""
    if text == "":
        return ""
    if "${" in text:
        return text  # an interpolation, resolved later by OmegaConf
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(args: list[str]) -> Overrides:
    """Split Hydra-style arguments into config paths and key=value settings."""
    out = Overrides()
    for arg in args:
        body = arg.lstrip("+")
        if "=" not in body or body.startswith("="):
            raise UsageError(
                f"argument {arg!r} is not an override; write key=value, +key=value or "
                "\"+config_paths=[a.yaml,b.yaml]\""
            )
        key, _, raw = body.partition("=")
        key = key.strip()
        value = parse_value(raw)
        if key == "config_paths":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{arg!r}: config_paths must be a list of file paths, e.g. \"+config_paths=[a.yaml,b.yaml]\"")
            out.config_paths.extend(value)
        else:
            out.settings.append((key, value))
    return out
