"""Two replicas of the model server behind one name: a rollout's model calls all reach one replica, new rollouts reach both."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.upstream_stub import StubThread
from tests.conftest import AGENT, EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, free_port, http_json, start_deployment, stop_deployment

ROLLOUTS = 24  # 48 model calls: within the stubs' memory of their last 100 requests


def upstream_args(url: str) -> list[str]:
    return ["-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={url}/v1", "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"]


def healthy_replicas(head_url: str) -> int:
    items = http_json(head_url + "/server_instances")[1]
    return sum(1 for i in items if i["process_name"] == "policy_model" and i.get("status") == "healthy")  # type: ignore[union-attr]


def run_rollout(agent_url: str, i: int) -> int:
    row = example_rows()[0]
    row["responses_create_params"]["input"][-1]["content"] = f"rollout-{i}: what is the weather?"
    return http_json(agent_url + "/run", row, timeout=30)[0]


def rollouts_seen(stub: StubThread) -> dict[str, int]:
    """rollout tag -> how many model calls of it this upstream got."""
    seen: dict[str, int] = {}
    for req in stub.requests()["last"]:
        text = json.dumps(req["body"])
        for i in range(ROLLOUTS):
            if f'"rollout-{i}:' in text:
                seen[f"rollout-{i}"] = seen.get(f"rollout-{i}", 0) + 1
    return seen


def test_a_rollouts_model_calls_stay_on_one_replica_and_rollouts_spread_over_both(tmp_path):
    with StubThread() as one, StubThread() as two:
        dep = start_deployment([*upstream_args(one.url), "--topology", "separated"], tmp_path, env={"GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "2"})
        with open(tmp_path / "replica2.log", "wb") as log:  # the child keeps its own descriptor
            second = subprocess.Popen(
                [sys.executable, "-m", "gymctl", "serve", "policy_model", *upstream_args(two.url), "--head", dep.head_url, "--port", str(free_port())],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GYMCTL_HEARTBEAT_S": "0.5"}, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 30
            while healthy_replicas(dep.head_url) < 2:
                assert second.poll() is None and time.monotonic() < deadline, (tmp_path / "replica2.log").read_text()
                time.sleep(0.2)
            agent = dep.url_of(AGENT)
            assert run_rollout(agent, 10_000) == 200  # warm-up: the agent's client starts re-reading the head
            time.sleep(1.5)  # > its watch interval: it has seen the second replica join
            with ThreadPoolExecutor(8) as pool:
                assert list(pool.map(lambda i: run_rollout(agent, i), range(ROLLOUTS))) == [200] * ROLLOUTS
            on_one, on_two = rollouts_seen(one), rollouts_seen(two)
            assert set(on_one) | set(on_two) == {f"rollout-{i}" for i in range(ROLLOUTS)}
            assert not set(on_one) & set(on_two), f"rollouts split over replicas: {sorted(set(on_one) & set(on_two))}"
            assert all(n == 2 for n in [*on_one.values(), *on_two.values()])  # tool call, then the answer: both on one replica
            assert len(on_one) >= ROLLOUTS // 4 and len(on_two) >= ROLLOUTS // 4, (len(on_one), len(on_two))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(second.pid, signal.SIGTERM)
            try:
                second.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
            stop_deployment(dep)


def test_local_replicas_setting_starts_that_many_processes_under_one_name(tmp_path):
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--topology", "separated",
                            "--set", "gymctl.instances.policy_model.replicas=2"], tmp_path)
    try:
        deadline = time.monotonic() + 15  # the head is ready once each name registered; the second replica may follow
        while healthy_replicas(dep.head_url) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        replicas = [i for i in dep.instances() if i["process_name"] == "policy_model"]
        assert len({i["url"] for i in replicas}) == 2 and len({i["pid"] for i in replicas}) == 2, replicas
        assert all(i["status"] == "healthy" for i in replicas)
        assert "policy_model#2" in dep.log_path.read_text()  # its own output label
        agent = dep.url_of(AGENT)
        assert [run_rollout(agent, i) for i in range(6)] == [200] * 6
    finally:
        stop_deployment(dep)


def test_all_in_one_says_replicas_need_the_separated_topology(tmp_path):
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", "gymctl.instances.policy_model.replicas=2"], tmp_path)
    try:
        assert "replicas of policy_model need --topology separated" in dep.log_path.read_text()
        assert len([i for i in dep.instances() if i["process_name"] == "policy_model"]) == 1
    finally:
        stop_deployment(dep)
