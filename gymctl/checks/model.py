"""What a check reports: one finding per item of the checklist, at ok / warn / error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["ok", "warn", "error"]
LEVELS: tuple[Level, ...] = ("ok", "warn", "error")


@dataclass(frozen=True)
class Finding:
    """One line of the report: which check, how bad, where (a key path or a service, never a secret value), what to do."""

    check: str
    level: Level
    where: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "where": self.where, "message": self.message}


def worst(findings: list[Finding]) -> Level:
    return max((f.level for f in findings), key=LEVELS.index, default="ok")
