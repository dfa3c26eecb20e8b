"""Stream the input JSONL one task at a time (never loaded whole); a bad line becomes a task that carries its error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gymctl.errors import InputError

RESPONSES_CREATE_PARAMS = "responses_create_params"


@dataclass(slots=True)
class Task:
    """One non-blank input line: its task index, its file line, and either the row or what is wrong with it."""

    index: int
    line: int
    row: dict[str, Any] | None
    error: str | None = None


def _check_row(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"the line is a JSON {type(data).__name__}, not an object with responses_create_params"
    params = data.get(RESPONSES_CREATE_PARAMS)
    if params is None:
        keys = ", ".join(sorted(data)[:8]) or "none"
        return f"row has no {RESPONSES_CREATE_PARAMS} (keys: {keys}); each task needs {RESPONSES_CREATE_PARAMS} with its input"
    if not isinstance(params, dict):
        return f"{RESPONSES_CREATE_PARAMS} is a {type(params).__name__}, not an object"
    return None


def iter_tasks(path: Path, limit: int | None = None) -> Iterator[Task]:
    """Yield each non-blank line as a Task (task index counts non-blank lines, from 0), up to `limit` tasks."""
    index = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if limit is not None and index >= limit:
                return
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw.rstrip(b"\r\n"))  # so a cut line reads "unexpected end", not "control character"
            except orjson.JSONDecodeError as e:
                yield Task(index, line_no, None, str(InputError(f"not valid JSON ({e})", source=str(path), line=line_no)))
            else:
                problem = _check_row(data)
                if problem:
                    yield Task(index, line_no, None, str(InputError(problem, source=str(path), line=line_no)))
                else:
                    yield Task(index, line_no, data)
            index += 1


def count_tasks(path: Path, limit: int | None = None) -> int:
    """The number of non-blank lines (streamed), capped at `limit`."""
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                n += 1
                if limit is not None and n >= limit:
                    break
    return n
