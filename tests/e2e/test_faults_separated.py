"""Faults during a real collection (`gymctl run --topology separated --restart on-failure`, `gymctl collect`):
kill -9 each server type in turn; the run completes or stops with typed failures, a rerun leaves exactly one row per
(task, repeat), nothing doubled; an agent restarted by its supervisor loses no rollout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import AGENT, EXAMPLE_DATA, example_rows
from tests.e2e.test_separated_support import FAST_LEASES, GYMCTL, SeparatedRun, cli

ROWS = 2000


def write_tasks(path: Path, repeats: int) -> Path:
    rows = example_rows()
    path.write_text("".join(json.dumps(rows[i % len(rows)]) + "\n" for i in range(repeats)))
    return path


def pairs(out: Path) -> list[tuple[int, int]]:
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in map(json.loads, out.read_text().splitlines())]


def start_collect(run: SeparatedRun, src: Path, out: Path, log: Path, concurrency: int = 16) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen([*GYMCTL, "collect", "--head", run.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out),
                                 "--concurrency", str(concurrency), "--json"], stdout=subprocess.PIPE, stderr=f, text=True)


def wait_rows(out: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (out.exists() and out.read_text().count("\n") >= n):
        assert time.monotonic() < deadline, f"fewer than {n} rows after {timeout} s"
        time.sleep(0.05)


def wait_back(run: SeparatedRun, name: str, old_pid: int, timeout: float = 15) -> float:
    """Seconds until a new process of `name` is registered healthy."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if any(i["process_name"] == name and i["pid"] != old_pid and i["status"] == "healthy" for i in run.instances()):
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{name} not back within {timeout} s")


def test_agent_killed_mid_collection_is_restarted_and_no_rollout_is_lost(separated, tmp_path):
    run = separated("--restart", "on-failure", env=FAST_LEASES)
    src, out = write_tasks(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
    proc = start_collect(run, src, out, tmp_path / "collect.log")
    wait_rows(out, ROWS // 5)
    old = run.pid_of(AGENT)
    os.kill(old, signal.SIGKILL)
    recovery_s = wait_back(run, AGENT, old)
    stdout, _ = proc.communicate(timeout=180)
    summary = json.loads(stdout)
    log = (tmp_path / "collect.log").read_text()
    assert proc.returncode == 0, log[-2000:]
    assert summary["failed"] == 0 and summary["written"] == ROWS
    got = pairs(out)
    assert len(got) == len(set(got)) == ROWS
    print(f"agent kill -9: back in {recovery_s:.2f} s, {ROWS} rollouts, 0 lost")


def test_each_server_killed_in_turn_then_the_rerun_leaves_one_row_per_pair(separated, tmp_path):
    run = separated("--restart", "on-failure", env=FAST_LEASES)
    src, out = write_tasks(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
    proc = start_collect(run, src, out, tmp_path / "collect.log")
    recovery: dict[str, float] = {}
    for i, name in enumerate(["example_single_tool_call", "policy_model", AGENT]):
        wait_rows(out, (i + 1) * ROWS // 5)
        old = run.pid_of(name)
        os.kill(old, signal.SIGKILL)
        recovery[name] = wait_back(run, name, old)
    stdout, _ = proc.communicate(timeout=180)
    first = json.loads(stdout)
    assert proc.returncode in (0, 1), (tmp_path / "collect.log").read_text()[-2000:]
    failures = tmp_path / "out_failures.jsonl"
    kinds = {json.loads(line)["_ng_failure_class"] for line in failures.read_text().splitlines()} if failures.exists() else set()
    assert kinds <= {"agent_run_error"}, kinds  # typed: the agent's 502 naming the peer that died
    rerun = cli("collect", "--head", run.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out), "--json", timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    second = json.loads(rerun.stdout)
    assert second["written"] == first["failed"]
    got = pairs(out)
    assert len(got) == len(set(got)) == ROWS
    metrics = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
    assert metrics[0]["num_rollouts"] == ROWS  # counted once
    print(f"kill -9 in turn: recovery {', '.join(f'{k} {v:.2f} s' for k, v in recovery.items())}; "
          f"{first['failed']} failed in the first run, filled by the rerun")
    assert EXAMPLE_DATA.exists()
