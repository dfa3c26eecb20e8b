"""The `gymctl.nodes` map (host name -> address) and the checks on `gymctl.instances.NAME.node` placements."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from gymctl.errors import ConfigError, did_you_mean

NODES_KEY = "gymctl.nodes"
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # also a file name: DIR/<host>.compose.yml
NODE_FIELDS = ("address", "head")


@dataclass(frozen=True)
class NodeSpec:
    """One host of a multi-host deploy: its name, the address other hosts reach it at, whether it runs the head."""

    name: str
    address: str
    head: bool = False


def _address(value: Any, origin: str, key_path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{value!r} is not an address; write e.g. address: 10.0.0.2 (the host's address other hosts reach)",
                          source=origin, key_path=key_path)
    text = value.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", text):
            raise ConfigError(f"{text!r} is neither an IP address nor a host name", source=origin, key_path=key_path) from None
        return text
    if ip.is_unspecified:
        raise ConfigError(f"{text} is not an address other hosts can reach; give the host's own address", source=origin, key_path=key_path)
    return text


def parse_nodes(gymctl_block: Any, origin: str) -> dict[str, NodeSpec]:
    """`gymctl.nodes: {<host>: {address: A, head: bool}}` -> {host: NodeSpec} (empty when absent)."""
    raw = gymctl_block.get("nodes") if isinstance(gymctl_block, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("must map host names to {address: ...}", source=origin, key_path=NODES_KEY)
    nodes: dict[str, NodeSpec] = {}
    for name, value in raw.items():
        kp = f"{NODES_KEY}.{name}"
        if not NODE_NAME.match(str(name)):
            raise ConfigError(f"{name!r} is not a usable host name (letters, digits, '.', '-', '_')", source=origin, key_path=kp)
        if isinstance(value, str):
            value = {"address": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{value!r} is not a mapping; write e.g. {{address: 10.0.0.2}}", source=origin, key_path=kp)
        unknown = [str(k) for k in value if k not in NODE_FIELDS]
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}{did_you_mean(unknown[0], NODE_FIELDS)} (known: {', '.join(NODE_FIELDS)})",
                              source=origin, key_path=kp)
        head = value.get("head", False)
        if not isinstance(head, bool):
            raise ConfigError(f"{head!r} is not true or false", source=origin, key_path=f"{kp}.head")
        nodes[str(name)] = NodeSpec(str(name), _address(value.get("address"), origin, f"{kp}.address"), head)
    heads = [n for n in nodes.values() if n.head]
    if len(heads) > 1:
        raise ConfigError(f"more than one node runs the head ({', '.join(n.name for n in heads)}); mark one with head: true",
                          source=origin, key_path=NODES_KEY)
    return nodes


def check_placements(nodes: dict[str, NodeSpec], placements: dict[str, str | None], origin: str) -> None:
    """Every `gymctl.instances.NAME.node` names a host of the `gymctl.nodes` map (when the map is given)."""
    if not nodes:
        return
    for instance, node in placements.items():
        if node is not None and node not in nodes:
            raise ConfigError(f"places {instance!r} on node {node!r}, which the gymctl.nodes map lacks{did_you_mean(node, list(nodes))} "
                              f"(nodes: {', '.join(nodes)})", source=origin, key_path=f"gymctl.instances.{instance}.node")


def head_node(nodes: dict[str, NodeSpec], head_host: str) -> NodeSpec:
    """The node that runs the head: the one marked `head: true`, else the one whose address is head_server.host, else the first."""
    marked = [n for n in nodes.values() if n.head]
    if marked:
        return marked[0]
    by_address = [n for n in nodes.values() if n.address == head_host]
    return by_address[0] if by_address else next(iter(nodes.values()))
