"""The registry: instances that registered, their leases, and who the deployment still waits for."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


class RegistrationConflict(ValueError):
    """A registration whose URL another instance holds."""


@dataclass
class Entry:
    record: dict[str, Any]
    registered_at: float  # wall clock (shown to users as start_time when the server sent none)
    last_seen: float  # monotonic: leases never jump with the system clock


@dataclass
class Registry:
    """Leases renewed by heartbeat: past `lease_s` an instance is unhealthy, past `drop_s` it is gone.

    Leases run on the monotonic clock (`now` arguments are `time.monotonic()` values); the
    `start_time` / `uptime_seconds` shown to users are wall-clock.
    """

    expected: set[str] = field(default_factory=set)
    remote: dict[str, str] = field(default_factory=dict)  # expected from another host: name -> server type
    lease_s: float = 6.0
    drop_s: float = 60.0
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def register(self, record: dict[str, Any], now: float | None = None) -> bool:
        """Add or renew; True when this is a new registration. RegistrationConflict when another instance
        holds a current lease on the same URL (two hosts advertising one address and port)."""
        now = now or time.monotonic()
        key = (record["process_name"], record["url"])
        entry = self.entries.get(key)
        if entry is None:
            self._check_conflict(record, now)
            self.entries[key] = Entry(record, time.time(), now)
            return True
        entry.record = record
        entry.last_seen = now
        return False

    def _check_conflict(self, record: dict[str, Any], now: float) -> None:
        name, url = record["process_name"], record["url"]
        for (other, other_url), entry in self.entries.items():
            if other_url != url or other == name or self.status_of(entry, now) != "healthy":
                continue
            if record.get("alias_of") == other or entry.record.get("alias_of") == name:
                continue  # an alias rides on its agent's URL
            raise RegistrationConflict(
                f"{name} advertises {url}, which {other} (pid {entry.record.get('pid')}) already holds: two hosts advertise the "
                "same address and port. Give each host its own address (the instance's host, or GYMCTL_ADVERTISE_HOST)"
            )

    def deregister(self, process_name: str, url: str | None) -> bool:
        keys = [k for k in self.entries if k[0] == process_name and (url is None or k[1] == url)]
        for k in keys:
            del self.entries[k]
        return bool(keys)

    def sweep(self, now: float | None = None) -> None:
        now = now or time.monotonic()
        for k in [k for k, e in self.entries.items() if now - e.last_seen > self.drop_s]:
            del self.entries[k]

    def status_of(self, entry: Entry, now: float) -> str:
        return "healthy" if now - entry.last_seen <= self.lease_s else "unhealthy"

    def instances(self, now: float | None = None) -> list[dict[str, Any]]:
        """NeMo Gym's `/server_instances` items plus `host_url`, `status`, `last_seen_s`."""
        now = now or time.monotonic()
        wall = time.time()
        self.sweep(now)
        out = []
        for entry in self.entries.values():
            item = dict(entry.record)
            start = item.get("start_time") or entry.registered_at
            item["start_time"] = start
            item["uptime_seconds"] = round(max(wall - start, 0.0), 3)
            item["status"] = self.status_of(entry, now)
            item["last_seen_s"] = round(now - entry.last_seen, 3)
            out.append(item)
        out.sort(key=lambda i: (i["process_name"], i["url"]))
        return out

    def missing(self, now: float | None = None) -> list[str]:
        """Expected instances with no healthy registration."""
        now = now or time.monotonic()
        healthy = {e.record["process_name"] for e in self.entries.values() if self.status_of(e, now) == "healthy"}
        return sorted(self.expected - healthy)
