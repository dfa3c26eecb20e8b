"""gymctl.api as a training script uses it: the same rollouts as `gymctl collect` on the same input, the separated topology
stopping every process it started, and the shipped example running from another directory."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psutil

from gymctl.api import Deployment
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG, example_rows

CONFIGS = [EXAMPLE_CONFIG, SCRIPTED_CONFIG]
SCRIPT = """
import asyncio, json, sys
from gymctl.api import Deployment

async def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    dep = await Deployment.start(sys.argv[3:])
    try:
        out = {i: r async for i, r in dep.run_rollouts(rows, agent=sys.argv[2])}
    finally:
        await dep.stop()
    print(json.dumps([out[i] for i in range(len(rows))]))

asyncio.run(main())
"""


def _shape(result: dict) -> tuple:
    """What a rollout is, minus ids and timings: reward, and each output item's type, tool name, arguments and tool output."""
    items = tuple((i["type"], i.get("name"), i.get("arguments"), i.get("output")) for i in result["response"]["output"])
    return result["_ng_task_index"], result["reward"], items


def test_a_plain_asyncio_script_gets_the_same_rollouts_as_gymctl_collect(tmp_path):
    out = tmp_path / "collect.jsonl"
    collected = subprocess.run([sys.executable, "-m", "gymctl", "collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--agent", AGENT,
                                "--input", str(EXAMPLE_DATA), "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    by_collect = sorted(_shape(json.loads(line)) for line in out.read_text().splitlines())
    script = subprocess.run([sys.executable, "-c", SCRIPT, str(EXAMPLE_DATA), AGENT, *CONFIGS], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    by_api = [_shape(r) for r in json.loads(script.stdout)]
    assert by_api == by_collect and len(by_api) == len(example_rows())
    assert all(reward == 1.0 for _, reward, _ in by_api)


def test_separated_runs_one_process_per_instance_and_stop_leaves_none():
    async def run() -> tuple[list[int], list[float], bool]:
        dep = await Deployment.start(CONFIGS, topology="separated", cwd=REPO)
        try:
            pids = [c.pid for c in dep.runtime.supervisor.children]  # type: ignore[attr-defined]
            rewards = [r["reward"] for r in await dep.collect(example_rows(), agent=AGENT)]
            ok = (await dep.check_health()).ok
        finally:
            await dep.stop()
        return pids, rewards, ok

    pids, rewards, ok = asyncio.run(run())
    assert len(pids) == 4 and ok  # the head, the resources server, the agent, the model server
    assert rewards == [1.0] * len(example_rows())
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_the_trainer_example_runs_from_any_directory(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "examples/trainer/rollouts.py"), "--repeats", "2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(2 * len(example_rows())))
    assert "mean reward 1.000" in run.stderr
