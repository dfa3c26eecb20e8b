"""Faults during a real collection that are not a server's exit (`gymctl run --topology separated --restart on-failure`):
a server frozen with SIGSTOP past its lease leaves rotation within one lease and returns when resumed (meanwhile a second
collection on the same output refuses to start); the head killed -9 mid-collection is restarted by the supervisor and the
collection goes on, losing nothing. Either way the run completes or stops with typed failures, and a rerun of the same
command leaves exactly one row per (task, repeat), nothing doubled. The same faults at full size, with recovery times:
`python -m bench.faults --faults stop:resources,kill:head,twice:collect`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import AGENT, seconds_until
from tests.e2e.test_faults_separated import pairs, wait_rows, write_tasks
from tests.e2e.test_separated_support import FAST_LEASES, GYMCTL, SeparatedRun, cli

ROWS = 600
TIMEOUT_S = "5"  # the collector's --timeout: longer than the lease, so a rollout on the frozen server is cut by the lease
LEASE_S = float(FAST_LEASES["GYMCTL_LEASE_S"])
HEARTBEAT_S = float(FAST_LEASES["GYMCTL_HEARTBEAT_S"])


def status_of(run: SeparatedRun, name: str) -> set[str]:
    try:
        return {i["status"] for i in run.instances() if i["process_name"] == name}
    except OSError:  # the head is between processes
        return set()


def collect_argv(run: SeparatedRun, src: Path, out: Path) -> list[str]:
    return ["collect", "--head", run.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out),
            "--concurrency", "16", "--timeout", TIMEOUT_S, "--json"]


def finish_and_rerun(proc: subprocess.Popen, argv: list[str], out: Path, tmp_path: Path) -> dict:
    """The first run's summary once it ends; then the rerun fills exactly what failed: one row per (task, repeat)."""
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), (tmp_path / "collect.log").read_text()[-2000:]
    first = json.loads(stdout)
    failures = tmp_path / "out_failures.jsonl"
    failed = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    first["kinds"] = {f["_ng_failure_class"] for f in failed}
    first["reasons"] = sorted({f["reason"][:400] for f in failed})
    assert first["kinds"] <= {"timeout", "agent_run_error", "agent_request_failed"}, first["kinds"]  # typed
    rerun = cli(*argv, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout)["written"] == first["failed"]
    got = pairs(out)
    assert len(got) == len(set(got)) == ROWS
    assert json.loads((tmp_path / "out_aggregate_metrics.json").read_text())[0]["num_rollouts"] == ROWS  # counted once
    return first


def start(run: SeparatedRun, tmp_path: Path) -> tuple[subprocess.Popen, list[str], Path]:
    src, out = write_tasks(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
    argv = collect_argv(run, src, out)
    with open(tmp_path / "collect.log", "wb") as log:
        proc = subprocess.Popen([*GYMCTL, *argv], stdout=subprocess.PIPE, stderr=log, text=True)
    wait_rows(out, ROWS // 4)
    return proc, argv, out


def new_head(run: SeparatedRun, old: int) -> bool:
    try:
        return run.pid_of("head") != old
    except KeyError:  # none live yet
        return False


def test_a_server_frozen_past_its_lease_leaves_rotation_and_returns_when_resumed(separated, tmp_path):
    run = separated("--restart", "on-failure", env=FAST_LEASES)
    proc, argv, out = start(run, tmp_path)
    name = "example_single_tool_call"
    pid = run.pid_of(name)
    os.kill(pid, signal.SIGSTOP)
    try:
        left_s = seconds_until(lambda: status_of(run, name) == {"unhealthy"}, LEASE_S + 3 * HEARTBEAT_S)
        assert left_s <= LEASE_S + 2 * HEARTBEAT_S, left_s  # within one lease (and the head's next look)
        second = cli(*argv, timeout=60)  # meanwhile a second collection on the same output refuses to start
        assert second.returncode == 2 and "another collection is writing" in second.stderr and "Traceback" not in second.stderr, second.stderr
        time.sleep(float(TIMEOUT_S) + 0.5)  # frozen past the collector's --timeout too
        assert run.pid_of(name) == pid  # the supervisor restarts exits, not a frozen process: it waits
    finally:
        os.kill(pid, signal.SIGCONT)
    back_s = seconds_until(lambda: status_of(run, name) == {"healthy"}, 10)
    assert back_s <= 2 * HEARTBEAT_S + 1, back_s  # its next heartbeat
    assert run.pid_of(name) == pid  # the same process, back in rotation
    first = finish_and_rerun(proc, argv, out, tmp_path)
    # Out of rotation: rollouts in flight on it are cut when its lease expires, new ones are refused at once (both the
    # agent's typed error naming it), not left to hang until the collector's --timeout.
    assert first["failed"] > 0 and first["kinds"] == {"agent_run_error"}, (first["kinds"], first["reasons"])
    assert all("was lost mid-call (its lease at the head expired)" in r or f"no server instance named '{name}'" in r
               for r in first["reasons"]), first["reasons"]
    print(f"SIGSTOP of {name}: out of rotation in {left_s:.2f} s, back {back_s:.2f} s after SIGCONT; "
          f"{first['failed']} failed typed, filled by the rerun")


def test_head_killed_mid_collection_is_restarted_and_the_collection_goes_on(separated, tmp_path):
    run = separated("--restart", "on-failure", env=FAST_LEASES)
    proc, argv, out = start(run, tmp_path)
    head = run.pid_of("head")
    os.kill(head, signal.SIGKILL)
    at_kill = out.read_text().count("\n")
    back_s = seconds_until(lambda: new_head(run, head) and status_of(run, "example_single_tool_call") == {"healthy"}, 30)
    first = finish_and_rerun(proc, argv, out, tmp_path)
    # The collector and the agent hold their peers' addresses: no rollout waits for the head, none is lost.
    assert at_kill < ROWS and first["failed"] == 0 and first["written"] == ROWS, (at_kill, first)
    print(f"head kill -9: a new head lists the servers again in {back_s:.2f} s; {first['failed']} failed in the first run "
          f"({', '.join(sorted(first['kinds'])) or 'none'}), filled by the rerun")
