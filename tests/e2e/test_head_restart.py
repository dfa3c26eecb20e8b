"""Self-healing: the head dies and comes back, rollouts keep flowing, a server started by hand joins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, http_json
from tests.e2e.test_separated_support import SERVED, cli, wait_until

HEARTBEAT_S = 1.0
REGISTERED = {*SERVED[1:], "example_single_tool_call_environment_server"}


def head_alive(url: str) -> bool:
    try:
        return http_json(url + "/livez", timeout=1)[0] == 200
    except OSError:
        return False


def test_head_killed_and_restarted_rollouts_keep_working_and_all_reregister_within_two_heartbeats(separated):
    run = separated("--restart", "on-failure", env={"GYMCTL_HEARTBEAT_S": str(HEARTBEAT_S)})
    agent = run.url_of(AGENT)
    rows = example_rows()
    assert http_json(agent + "/run", rows[0])[1]["reward"] == 1.0  # the agent has resolved its peers
    head_pid = run.pid_of("head")
    os.kill(head_pid, signal.SIGKILL)
    # During the outage: rollouts through the agent still succeed (peers cached in its ServerClient).
    rewards, during_outage = [], 0
    for row in rows[:5] * 2:
        down = not head_alive(run.head_url)
        code, body = http_json(agent + "/run", row, timeout=10)
        assert code == 200, body
        rewards.append(body["reward"])
        during_outage += down
    assert rewards == [1.0] * len(rewards)
    assert during_outage >= 1, "the head came back before any rollout was sent"
    wait_until(lambda: head_alive(run.head_url), 15, "head restarted")
    t_up = time.monotonic()
    wait_until(lambda: {i["process_name"] for i in run.instances() if i["status"] == "healthy"} == REGISTERED,
               2 * HEARTBEAT_S + 0.5, "every instance listed again")
    relisted_s = time.monotonic() - t_up
    assert relisted_s <= 2 * HEARTBEAT_S, relisted_s
    assert run.pid_of("head") != head_pid
    assert f"head (pid {head_pid}) exited with code -9 (killed by SIGKILL)" in run.output()
    assert http_json(run.head_url + "/health")[0] == 200
    st = cli("status", "--head", run.head_url)
    assert st.returncode == 0, st.stdout


def test_a_server_started_by_hand_joins_and_shows_in_status(separated, tmp_path):
    run = separated()
    st = cli("status", "--head", run.head_url, "--expect", "5")
    assert st.returncode == 1 and "4/5 expected healthy" in st.stdout
    env = {**os.environ, "GYMCTL_HEAD_URL": run.head_url}
    with open(tmp_path / "by-hand.log", "wb") as log:  # the child holds its own copy of the descriptor
        hand = subprocess.Popen([sys.executable, "-m", "gymctl", "serve", "policy_model", "--config", EXAMPLE_CONFIG, "--config", SCRIPTED_CONFIG],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: [i for i in run.instances() if i["process_name"] == "policy_model" and i["pid"] == hand.pid], 20, "hand-started server registered")
        st = cli("status", "--head", run.head_url, "--expect", "5")
        assert st.returncode == 0, st.stdout + st.stderr
        assert "5/5 expected healthy" in st.stdout and "5 servers found (5 healthy, 0 unhealthy)" in st.stdout
        assert sum(1 for line in st.stdout.splitlines() if "scripted_model" in line) == 2
        # The agent may now route to either replica; rollouts still score.
        for row in example_rows()[:4]:
            assert http_json(run.url_of(AGENT) + "/run", row)[1]["reward"] == 1.0
    finally:
        hand.send_signal(signal.SIGTERM)
        hand.wait(15)
    assert hand.returncode == 0
    # It deregistered on the way out: gone at once, not after a lease.
    assert [i["pid"] for i in run.instances() if i["process_name"] == "policy_model"] == [run.pid_of("policy_model")]
