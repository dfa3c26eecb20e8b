"""Append one complete JSON line per call with a single write to an O_APPEND file: a crash never splits two rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson


class JsonlAppender:
    """An append-only JSONL file; each `write` is one whole line, on disk (in the page cache) when it returns."""

    def __init__(self, path: Path, *, truncate: bool = False) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.path = path
        self._fd: int | None = os.open(path, flags, 0o644)
        self.lines = 0

    def write(self, row: dict[str, Any]) -> None:
        self.write_bytes(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def write_bytes(self, line: bytes) -> None:
        assert self._fd is not None, "writer is closed"
        view = memoryview(line)
        while view:  # a regular file takes it in one write; loop only for the pathological case
            n = os.write(self._fd, view)
            view = view[n:]
        self.lines += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
