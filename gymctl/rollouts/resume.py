"""Read back an existing output: which (task, repeat) pairs are done; cut away a line torn by a crash mid-write."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"


@dataclass
class ResumeState:
    """What an earlier run left in the output."""

    done: set[tuple[int, int]] = field(default_factory=set)
    rows: int = 0
    torn_bytes: int = 0  # bytes of an incomplete last line that were cut away
    bad_lines: list[int] = field(default_factory=list)  # complete lines that are not rollouts (left in place)
    duplicates: int = 0


def truncate_torn_tail(path: Path) -> int:
    """If the file ends in a torn line (no newline, not a whole JSON object), cut it away; return the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Walk back in blocks to the last newline (a torn line can be long).
        pos = size
        block = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.seek(keep)
        tail = f.read()
        if _is_object(tail):  # a whole row that only lacks its newline (a hand-made file): keep it
            f.seek(size)
            f.write(b"\n")
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, row or None when the line is not a JSON object) for each non-blank line."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                yield line_no, None
                continue
            yield line_no, row if isinstance(row, dict) else None


def scan_output(path: Path) -> ResumeState:
    """The resume state of `path` (absent file: nothing done). Truncates a torn last line first."""
    state = ResumeState()
    if not path.exists():
        return state
    state.torn_bytes = truncate_torn_tail(path)
    for line_no, row in iter_rows(path):
        key = _key(row)
        if key is None:
            state.bad_lines.append(line_no)
            continue
        if key in state.done:
            state.duplicates += 1
        state.done.add(key)
        state.rows += 1
    return state


def _key(row: dict[str, Any] | None) -> tuple[int, int] | None:
    if row is None:
        return None
    t, r = row.get(TASK_INDEX), row.get(ROLLOUT_INDEX)
    if isinstance(t, int) and isinstance(r, int):
        return (t, r)
    return None
