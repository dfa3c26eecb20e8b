"""`gymctl run --topology separated` as a user drives it: processes, status, a rollout, crashes, restarts, stop."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import psutil

from tests.conftest import AGENT, example_rows, http_json
from tests.e2e.test_separated_support import FAST_LEASES, SERVED, cli, stop_separated, wait_until


def test_one_process_per_instance_status_green_and_a_run_scores_1(separated, tmp_path):
    logs = tmp_path / "logs"
    run = separated("--log-dir", str(logs))
    out = run.output()
    assert re.search(r"gymctl: ready in \d+\.\d+ s", out)
    for name in SERVED:  # one OS process each, in its own process group, visible in ps
        pid = run.pid_of(name)
        assert os.getpgid(pid) == pid and os.getpgid(pid) != os.getpgid(run.proc.pid)
    assert len({run.pid_of(n) for n in SERVED}) == 4
    # In ps, each forked process is named after its instance (comm holds 15 bytes: head~tail).
    comms = {Path(f"/proc/{run.pid_of(n)}/comm").read_text().strip() for n in SERVED}
    assert comms == {"head", "example~ol_call", "example~e_agent", "policy_model"}
    # The alias is registered by the agent's process: same pid, same URL.
    items = {i["process_name"]: i for i in run.instances()}
    assert items["example_single_tool_call_environment_server"]["pid"] == items[AGENT]["pid"] == run.pid_of(AGENT)
    st = cli("status", "--head", run.head_url)
    assert st.returncode == 0, st.stdout + st.stderr
    assert "4 servers found (4 healthy, 0 unhealthy)" in st.stdout
    code, body = http_json(run.url_of(AGENT) + "/run", example_rows()[0])
    assert code == 200 and body["reward"] == 1.0
    # Output: prefixed by instance on the console, and one log file per process.
    assert re.search(r"^policy_model +\| policy_model: serving at http://127\.0\.0\.1:\d+", out, re.M)
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"{n}.log" for n in SERVED)
    assert "serving at" in (logs / "policy_model.log").read_text()
    assert stop_separated(run) == 0
    assert not run.leftovers()
    assert re.search(r"stopped; exit codes: head code 0, .*policy_model code 0", run.output())


def test_exec_start_shows_gymctl_serve_in_ps_and_serves(separated):
    """GYMCTL_SEPARATED_START=exec: every child is a fresh `python -m gymctl serve NAME ...` (as restarts always are)."""
    run = separated(env={"GYMCTL_SEPARATED_START": "exec"})
    for name in SERVED:
        cmd = psutil.Process(run.pid_of(name)).cmdline()
        assert cmd[1:5] == ["-m", "gymctl", "serve", name] and "--config" in cmd
    code, body = http_json(run.url_of(AGENT) + "/run", example_rows()[0])
    assert code == 200 and body["reward"] == 1.0
    assert stop_separated(run) == 0 and not run.leftovers()


def test_kill_9_with_restart_on_failure_comes_back_registered(separated):
    run = separated("--restart", "on-failure")
    old_pid = run.pid_of("example_single_tool_call")
    old_url = run.url_of("example_single_tool_call")
    t0 = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)

    def back() -> bool:
        items = [i for i in run.instances() if i["process_name"] == "example_single_tool_call"]
        return any(i["pid"] != old_pid and i["status"] == "healthy" for i in items)

    wait_until(back, 8, "restarted instance registered")
    back_in = time.monotonic() - t0
    assert back_in < 8
    out = run.output()
    assert f"example_single_tool_call (pid {old_pid}) exited with code -9 (killed by SIGKILL)" in out
    assert "restarting example_single_tool_call in 0.5 s (restart 1)" in out
    assert run.url_of("example_single_tool_call") == old_url  # same port again: peers' cached routes stay right
    code, body = http_json(run.url_of(AGENT) + "/run", example_rows()[1])
    assert code == 200 and body["reward"] == 1.0
    st = cli("status", "--head", run.head_url)
    assert st.returncode == 0, st.stdout
    # A second crash soon after: the backoff doubles.
    os.kill(run.pid_of("example_single_tool_call"), signal.SIGKILL)
    wait_until(lambda: "restarting example_single_tool_call in 1.0 s (restart 2)" in run.output(), 5, "second restart with backoff")


def test_kill_9_without_restart_reports_exit_code_and_status_shows_unhealthy_then_dropped(separated):
    run = separated(env={**FAST_LEASES, "GYMCTL_DROP_S": "10"})
    pid = run.pid_of("policy_model")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: f"policy_model (pid {pid}) exited with code -9 (killed by SIGKILL)" in run.output(), 5, "exit reported")
    assert "restarting policy_model" not in run.output()
    time.sleep(2)  # past the 1.5 s lease
    st = cli("status", "--head", run.head_url)
    assert st.returncode == 1
    assert "starting (waiting for policy_model)" in st.stdout  # the head's readiness noticed too
    row = next(line for line in st.stdout.splitlines() if re.match(r"\W*policy_model\b", line))
    assert "unreachable, lease expired" in row
    assert "1 unhealthy" in st.stdout
    wait_until(lambda: "policy_model" not in {i["process_name"] for i in run.instances()}, 12, "dropped after GYMCTL_DROP_S")  # 10 s after the last heartbeat
    assert run.proc.poll() is None  # the others keep serving


def test_ctrl_c_prints_no_traceback_from_any_process(separated):
    run = separated()
    assert stop_separated(run) == 0
    assert "Traceback" not in run.output()
