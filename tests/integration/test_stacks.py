"""Both topologies on real Docker: up from a rendered file, status, rollouts end to end, restart one server, down leaves nothing."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import example_rows, http_json
from tests.integration.conftest import AGENT, StackUnderTest, collect, gymctl

pytestmark = pytest.mark.docker


def status_json(st: StackUnderTest) -> dict:
    r = gymctl("status", "--head", st.head_url, "--json")
    return json.loads(r.stdout)


def assert_registered_and_agents_healthy(st: StackUnderTest) -> None:
    status = status_json(st)
    assert status["head_ready"] is True
    by_name = {i["instance"]: i for i in status["instances"]}
    assert set(by_name) == {"example_single_tool_call", AGENT, "example_single_tool_call_environment_server", "policy_model"}
    assert all(i["registered"] == "healthy" for i in by_name.values()), by_name
    # the published agent (and its alias) answer from the host, at their host URL
    assert by_name[AGENT]["url"] == st.agent_url and by_name[AGENT]["health"] == "healthy"


def one_run(st: StackUnderTest) -> dict:
    code, body = http_json(st.agent_url + "/run", example_rows()[0], timeout=30, headers=st.headers)
    assert code == 200, body
    return body  # type: ignore[return-value]


def comparable(rows: list[dict]) -> list[tuple]:
    """What must not depend on the topology: which task, which repeat, the reward, the tool calls made."""
    out = []
    for r in rows:
        calls = tuple(o.get("name") for o in r["response"]["output"] if o.get("type") == "function_call")
        out.append((r["_ng_task_index"], r["_ng_rollout_index"], r["reward"], calls))
    return sorted(out)


def test_separated_stack_end_to_end(example_images, stack_ut, tmp_path):
    t0 = time.monotonic()
    r = gymctl("up", "--topology", "separated", "--wait", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    up_s = time.monotonic() - t0
    assert f"stack '{stack_ut.project}' (separated, 4 containers) ready" in r.stderr
    print(f"separated: gymctl up --wait {up_s:.1f} s")

    assert_registered_and_agents_healthy(stack_ut)
    assert one_run(stack_ut)["reward"] == 1.0
    rows = collect(stack_ut, tmp_path / "separated.jsonl")
    assert len(rows) == 2 * len(example_rows()) and {r["reward"] for r in rows} == {1.0}
    (tmp_path / "comparable.json").write_text(json.dumps(comparable(rows)))

    ps = gymctl("ps", "-p", stack_ut.project)
    assert ps.returncode == 0 and "healthy" in ps.stdout

    before = stack_ut.instances()["example_single_tool_call"]
    r = gymctl("restart", "example_single_tool_call", "-p", stack_ut.project)
    assert r.returncode == 0, r.stderr
    assert "example_single_tool_call: restarted, healthy" in r.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # re-registered: a new start time, healthy again
        after = stack_ut.instances()["example_single_tool_call"]
        if after["start_time"] != before["start_time"] and after["status"] == "healthy":
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"example_single_tool_call did not re-register after restart: {after}")
    assert one_run(stack_ut)["reward"] == 1.0

    logs = gymctl("logs", "example_single_tool_call_environment_server", "-p", stack_ut.project, *stack_ut.config_args()[:4], "-n", "5")
    assert logs.returncode == 0 and "example_single_tool_call_simple_agent: serving at" in logs.stdout

    r = gymctl("down", "-p", stack_ut.project)
    assert r.returncode == 0, r.stderr
    assert f"stack '{stack_ut.project}' down: 4 container(s), 1 network(s) removed" in r.stderr
    assert stack_ut.labelled() == {"containers": [], "networks": [], "volumes": []}


def test_all_in_one_stack_gives_the_same_rollouts(example_images, stack_ut, tmp_path):
    r = gymctl("up", "--topology", "all-in-one", "--wait", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    assert f"stack '{stack_ut.project}' (all-in-one, 1 containers) ready" in r.stderr
    status = status_json(stack_ut)
    assert status["head_ready"] and {i["instance"] for i in status["instances"] if i["registered"] == "healthy"} >= {AGENT, "policy_model"}
    assert one_run(stack_ut)["reward"] == 1.0
    rows = collect(stack_ut, tmp_path / "aio.jsonl")
    assert {r["reward"] for r in rows} == {1.0}

    # the same collection through the separated topology (real HTTP between containers) gives the same rollouts
    r = gymctl("down", "-p", stack_ut.project)
    assert r.returncode == 0 and stack_ut.labelled()["containers"] == []
    r = gymctl("up", "--topology", "separated", "--wait", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    separated = collect(stack_ut, tmp_path / "sep.jsonl")
    assert comparable(rows) == comparable(separated)
    gymctl("down", "-p", stack_ut.project)
    assert stack_ut.labelled() == {"containers": [], "networks": [], "volumes": []}


def test_status_is_green_with_internal_servers(example_images, stack_ut):
    r = gymctl("up", "--topology", "separated", "--wait", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    assert gymctl("status", "--head", stack_ut.head_url).returncode == 0


def test_rendered_file_runs_under_plain_docker_compose(example_images, stack_ut, tmp_path):
    """What `docker compose up -d` on the root docker-compose.yml does, on free ports: no gymctl in the loop."""
    from testcontainers.compose import DockerCompose

    r = gymctl("render", "-t", "separated", "-o", str(tmp_path), "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    with DockerCompose(str(tmp_path), compose_file_name="docker-compose.yml", pull=False, wait=True):
        deadline = time.monotonic() + 30
        while http_json(stack_ut.head_url + "/health")[0] != 200:  # every instance registered
            assert time.monotonic() < deadline, "head not ready 30 s after the containers were healthy"
            time.sleep(0.2)
        assert_registered_and_agents_healthy(stack_ut)
        assert one_run(stack_ut)["reward"] == 1.0
    assert stack_ut.labelled() == {"containers": [], "networks": [], "volumes": []}


def test_restart_during_a_collection_loses_no_rollout(example_images, stack_ut, tmp_path):
    """600 rollouts while the resources server restarts: every (task, repeat) ends in the output (a rerun resumes the failed)."""
    import subprocess
    import sys

    from tests.conftest import EXAMPLE_DATA, REPO

    r = gymctl("up", "--topology", "separated", "--wait", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 0, r.stderr
    out = tmp_path / "r600.jsonl"
    argv = [sys.executable, "-m", "gymctl", "collect", "--head", stack_ut.head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA),
            "--output", str(out), "--num-repeats", str(600 // len(example_rows())), "--concurrency", "8"]
    collector = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_text().splitlines()) < 20) and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted = gymctl("restart", "example_single_tool_call", "-p", stack_ut.project)
    collector.wait(timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == 600 and len({(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows}) == 600
    assert {r["reward"] for r in rows} == {1.0}
