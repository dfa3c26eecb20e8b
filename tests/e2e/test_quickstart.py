"""The seed's quick-start verbatim (`ng_run` with openai_model against an OpenAI-compatible upstream), and
NeMo Gym 0.7.0's own, unmodified `ng_status` against a gymctl head."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from bench.upstream_stub import StubThread
from tests.conftest import AGENT, example_rows, http_json, start_deployment, stop_deployment
from tests.nemo_gym_env import VENV, nemo_gym_bin

SECRET = "sk-e2e-SECRET-4242"
QUICKSTART = ("+config_paths=[resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml,"
              "responses_api_models/openai_model/configs/openai_model.yaml]")


@pytest.fixture
def stub():
    with StubThread() as s:
        yield s


@pytest.fixture
def quickstart(tmp_path, stub):
    dep = start_deployment([QUICKSTART, f"+policy_base_url={stub.url}/v1", f"+policy_api_key={SECRET}", "+policy_model_name=stub-model"], tmp_path)
    yield dep
    stop_deployment(dep)


def test_quickstart_verbatim_against_an_openai_compatible_upstream(quickstart, stub):
    items = quickstart.instances()
    assert {i["process_name"] for i in items} >= {"example_single_tool_call", AGENT, "policy_model"}
    for row in example_rows():
        status, out = http_json(quickstart.url_of(AGENT) + "/run", row)
        assert status == 200 and out["reward"] == 1.0
    seen = stub.requests()
    assert seen["by_path"].get("/v1/responses", 0) >= 2 * len(example_rows())
    last = seen["last"][-1]
    assert last["authorization"] == f"Bearer {SECRET}" and last["body"]["model"] == "stub-model"
    # The API key appears nowhere in what the head serves.
    for path in ("/server_instances", "/global_config_dict_yaml", "/health"):
        with urllib.request.urlopen(quickstart.head_url + path) as r:
            assert SECRET not in r.read().decode()
    assert SECRET not in quickstart.log()


@pytest.mark.nemo_gym
def test_nemo_gyms_own_ng_status_sees_every_instance_healthy(quickstart):
    ng_status = nemo_gym_bin("ng_status")
    port = quickstart.head_url.rsplit(":", 1)[1]
    res = subprocess.run([str(ng_status), f"+head_server.port={port}", "+head_server.host=127.0.0.1"],
                         capture_output=True, text=True, timeout=120, cwd=VENV / "work")
    out = res.stdout + res.stderr
    n = len(quickstart.instances())
    assert f"{n} servers found ({n} healthy, 0 unhealthy)" in out, out


def test_global_config_is_what_nemo_gym_clients_parse(quickstart):
    from omegaconf import OmegaConf

    with urllib.request.urlopen(quickstart.head_url + "/global_config_dict_yaml") as r:
        cfg = OmegaConf.create(json.loads(r.read()))
    agent = cfg[AGENT]["responses_api_agents"]["simple_agent"]
    assert f"http://{agent.host}:{agent.port}" == quickstart.url_of(AGENT)
    assert cfg.head_server.port == int(quickstart.head_url.rsplit(":", 1)[1])
    assert cfg.policy_model.responses_api_models.openai_model.openai_api_key != SECRET
