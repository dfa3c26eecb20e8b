"""Two collections on one output file: the second refuses to start (nothing doubled), the first finishes whole."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from gymctl.errors import UsageError
from gymctl.rollouts import CollectSpec
from tests.conftest import AGENT, EXAMPLE_DATA
from tests.unit.test_collect_run import collect, example, read_rows  # noqa: F401 (example: the fixture)

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"


async def test_two_collections_at_once_on_one_output_one_refuses(example, tmp_path):  # noqa: F811
    dep, session = example
    out = tmp_path / "out.jsonl"
    spec = lambda: CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, num_repeats=4, concurrency=2)  # noqa: E731
    results = await asyncio.gather(collect(session, dep, spec()), collect(session, dep, spec()), return_exceptions=True)
    refused = [r for r in results if isinstance(r, UsageError)]
    assert len(refused) == 1 and "another collection is writing" in str(refused[0])
    rows = read_rows(out)
    pairs = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == 20  # one row per (task, repeat), none twice
    metrics = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
    assert metrics[0]["num_rollouts"] == 20


async def test_a_collection_in_another_process_holds_the_output(example, tmp_path):  # noqa: F811
    dep, session = example
    out = tmp_path / "out.jsonl"
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD, str(out), stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"held"
        with pytest.raises(UsageError, match="wait for it to finish, or write to another --output"):
            await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out))
        assert out.read_text() == ""
    finally:
        holder.kill()  # kill -9 frees the lock: nothing is left behind
        await holder.wait()
    summary = await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out))
    assert summary.written == 5 and len(read_rows(out)) == 5
