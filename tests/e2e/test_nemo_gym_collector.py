"""NeMo Gym 0.7.0's own, unmodified `ng_collect_rollouts` against a gymctl deployment: every rollout rewarded 1.0.

NeMo Gym lives in its own venv (see ../shared/NEMO_GYM.md; scripts/install_nemo_gym.sh); the test skips, saying
so, when that venv is absent. Its collector reads the head's /global_config_dict_yaml, finds the environment
server that fronts the agent (gymctl serves `environment_servers/legacy_agent` as an alias of the agent: same
host and port, no extra hop) and POSTs each row to its /run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, OPENAI_CONFIG, http_json, start_deployment, stop_deployment

NEMO_GYM_VENV = Path(os.environ.get("GYMCTL_NEMO_GYM_VENV", Path.home() / ".cache/gymctl-bench/nemo-gym-0.7.0"))
NG_COLLECT = NEMO_GYM_VENV / "bin/ng_collect_rollouts"

pytestmark = [
    pytest.mark.nemo_gym,
    pytest.mark.skipif(not NG_COLLECT.exists(), reason=f"NeMo Gym 0.7.0 is not installed at {NEMO_GYM_VENV} (scripts/install_nemo_gym.sh, or set GYMCTL_NEMO_GYM_VENV)"),
]


def test_nemo_gym_collector_collects_every_rollout_with_reward_one(tmp_path):
    from bench.upstream_stub import StubThread

    with StubThread() as stub:  # the LLM double: calls get_weather, then answers
        dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={stub.url}/v1",
                                "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"], tmp_path)
        try:
            port = dep.head_url.rsplit(":", 1)[1]
            instances = {i["process_name"]: i for i in dep.instances()}
            # The environment server NeMo Gym posts to is the agent itself: same address, no relay.
            env_server = instances["example_single_tool_call_environment_server"]
            assert env_server["url"] == instances[AGENT]["url"]
            out = tmp_path / "ng_out.jsonl"
            res = subprocess.run(
                [str(NG_COLLECT), f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE_DATA}", f"+output_jsonl_fpath={out}",
                 "+num_repeats=3", "+num_samples_in_parallel=8", "+head_server.host=127.0.0.1", f"+head_server.port={port}"],
                cwd=tmp_path, capture_output=True, text=True, timeout=300,
                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": ""},
            )
            stub_calls = stub.requests()["count"]
        finally:
            stop_deployment(dep)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 15
    assert {(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows} == {(t, r) for t in range(5) for r in range(3)}
    assert [r["reward"] for r in rows] == [1.0] * 15
    assert all(any(i["type"] == "function_call" and i["name"] == "get_weather" for i in r["response"]["output"]) for r in rows)
    assert stub_calls == 30  # two model calls per rollout went to the upstream
    assert "Finished rollout collection" in res.stdout
    metrics = json.loads((tmp_path / "ng_out_aggregate_metrics.json").read_text())
    assert metrics[0]["agent_ref"]["name"] == AGENT


def test_nemo_gym_collector_with_its_default_head_on_11000(tmp_path):
    """No head override at all: NeMo Gym looks for its head at 127.0.0.1:11000, where `gymctl run` puts it by default."""
    import socket
    import sys
    import time

    from tests.conftest import REPO, SCRIPTED_CONFIG, Deployment

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 11000))
        except OSError:
            pytest.skip("port 11000 is taken on this machine (NeMo Gym's default head port); the free-port test above covers the collector")
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:  # the child holds its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "gymctl", "run", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    dep = Deployment(proc, "http://127.0.0.1:11000", log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                if "already in use" in dep.log():
                    pytest.skip("port 11000 was taken while the deployment started")
                raise AssertionError(dep.log())
            try:
                if http_json(dep.head_url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, dep.log()
            time.sleep(0.1)
        out = tmp_path / "ng_out.jsonl"
        res = subprocess.run([str(NG_COLLECT), f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE_DATA}", f"+output_jsonl_fpath={out}", "+num_repeats=2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": ""})
    finally:
        stop_deployment(dep)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and all(r["reward"] == 1.0 for r in rows)
