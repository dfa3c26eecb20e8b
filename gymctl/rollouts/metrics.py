"""After a collection: the agent's `/aggregate_metrics` over every row of the output, written beside it."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gymctl.rollouts.resume import iter_rows

# Heavy per-rollout keys NeMo Gym also leaves out of the metrics request (usage and incomplete_details are kept).
_HEAVY = ("response", "responses_create_params", "ng_agent_observations", "ng_model_call_capture", "ng_trajectory")


@dataclass
class OutputDigest:
    """One pass over the output: its row count, their mean reward, and the /aggregate_metrics body spooled to a file."""

    rows: int
    mean_reward: float | None
    body_path: Path | None = None  # {"verify_responses": [light rows]}; the caller deletes it


def _light(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in _HEAVY}
    response = row.get("response")
    if isinstance(response, dict):
        meta = {k: response[k] for k in ("usage", "incomplete_details") if response.get(k) is not None}
        if meta:
            out["response"] = meta
    return out


def digest_output(path: Path) -> OutputDigest:
    """Stream the output once; the metrics request body goes to a temporary file, so memory stays flat."""
    rows, total, rewarded = 0, 0.0, 0
    if not path.exists():
        return OutputDigest(0, None)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}_metrics_", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "wb") as body:
        body.write(b'{"verify_responses":[')
        for _, row in iter_rows(path):
            if row is None:
                continue
            reward = row.get("reward")
            if isinstance(reward, (int, float)) and not isinstance(reward, bool):
                total += float(reward)
                rewarded += 1
            body.write((b"," if rows else b"") + orjson.dumps(_light(row)))
            rows += 1
        body.write(b"]}")
    return OutputDigest(rows, total / rewarded if rewarded else None, Path(tmp))


async def fetch_aggregate_metrics(
    session: aiohttp.ClientSession, agent_url: str, agent: str, body_path: Path, *, headers: dict[str, str], timeout_s: float = 300.0
) -> dict[str, Any]:
    """POST NeMo Gym's AggregateMetricsRequest ({"verify_responses": rows}, streamed from `body_path`) to the agent."""
    try:
        with open(body_path, "rb") as body:  # noqa: ASYNC230 -- opening is one syscall; aiohttp reads the body in its executor
            async with session.post(agent_url + "/aggregate_metrics", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                data = await r.read()
                status = r.status
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise RuntimeError(f"{agent} /aggregate_metrics unreachable: {type(e).__name__}: {e}") from None
    if status != 200:
        raise RuntimeError(f"{agent} /aggregate_metrics answered {status}: {data[:300].decode(errors='replace')}")
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RuntimeError(f"{agent} /aggregate_metrics answered with something that is not JSON: {data[:200]!r}") from None
    entry: dict[str, Any] = {"agent_ref": {"type": "responses_api_agents", "name": agent}}
    entry.update(reply if isinstance(reply, dict) else {"metrics": reply})
    return entry


def write_aggregate_metrics(path: Path, entry: dict[str, Any]) -> None:
    """One entry per agent, as NeMo Gym lays the file out; written whole, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps([entry], option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)
