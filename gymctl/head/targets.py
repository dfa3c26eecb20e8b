"""The head's `/prometheus_targets`: every registered instance (and the head) in Prometheus' `http_sd` format."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gymctl.head.registry import Registry
from gymctl.hosts import url_host


def target_of(url: str) -> str | None:
    """`host:port` of a registered URL (Prometheus' target form), None when it has no host."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return f"{url_host(parts.hostname)}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def prometheus_targets(registry: Registry, head_address: str | None) -> list[dict[str, Any]]:
    """One target group per served URL (aliases ride on their agent's), labelled with the instance; the head first.

    `head_address` is `host:port` as the scraper reached the head (its Host header): the one name of
    the head that is sure to work from where Prometheus runs.
    """
    groups: list[dict[str, Any]] = []
    if head_address:
        groups.append({"targets": [head_address], "labels": {"gymctl_instance": "head", "gymctl_server_type": "head", "gymctl_impl": "head"}})
    seen: set[str] = set()
    for item in registry.instances():
        target = target_of(item["url"])
        if target is None or target in seen or item.get("alias_of"):
            continue
        seen.add(target)
        labels = {
            "gymctl_instance": item["process_name"], "gymctl_server_type": str(item.get("server_type", "")),
            "gymctl_impl": str(item.get("name", "")), "gymctl_status": item["status"],
        }
        groups.append({"targets": [target], "labels": labels})
    return groups
