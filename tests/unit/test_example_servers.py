"""The example environment in one process: tools, verify, the agent loop, the scripted policy."""

from __future__ import annotations

import pytest

from gymctl.config import load_config
from gymctl.runtime import inprocess
from gymctl.server.client import ServerClient
from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, free_port


@pytest.fixture
def deployment(example_deployment):
    return example_deployment


async def test_run_returns_reward_one_for_every_example_row(deployment):
    client = deployment.client
    for row in example_rows():
        r = await client.post(AGENT, "/run", json=row)
        assert r.status == 200, r.body
        out = r.json()
        assert out["reward"] == 1.0
        kinds = [i["type"] for i in out["response"]["output"]]
        assert kinds == ["function_call", "function_call_output", "message"]
        assert out["responses_create_params"] == row["responses_create_params"]  # the row passes through to verify


async def test_task_without_get_weather_gets_reward_zero(deployment):
    row = {"responses_create_params": {"input": [{"role": "user", "content": "hi"}], "tools": []}, "extra_key": 7}
    r = await deployment.client.post(AGENT, "/run", json=row)
    out = r.json()
    assert out["reward"] == 0.0 and out["extra_key"] == 7


async def test_same_results_in_process_and_over_http(deployment):
    row = example_rows()[0]
    local = (await deployment.client.post(AGENT, "/run", json=row)).json()
    remote_client = ServerClient(deployment.head_url)  # no local apps: every call is real HTTP
    try:
        remote = (await remote_client.post(AGENT, "/run", json=row)).json()
    finally:
        await remote_client.close()
    strip = lambda o: [{k: v for k, v in i.items() if k not in ("id", "call_id")} for i in o["response"]["output"]]  # noqa: E731
    assert strip(local) == strip(remote) and local["reward"] == remote["reward"] == 1.0


async def test_tool_errors_go_back_to_the_model_as_output(deployment):
    client = deployment.client
    # A tool the resources server does not have: the loop returns the 404 to the model and carries on.
    row = {"responses_create_params": {"input": "hello", "tools": [{"type": "function", "name": "no_such_tool", "parameters": {"type": "object", "properties": {}}}]}}
    out = (await client.post(AGENT, "/run", json=row)).json()
    outputs = [i for i in out["response"]["output"] if i["type"] == "function_call_output"]
    assert outputs and "404" in outputs[0]["output"]
    assert out["reward"] == 0.0
    # Arguments that do not fit the tool: 422 from the tool, returned to the model as well.
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"town": {"type": "string"}}}}
    row = {"responses_create_params": {"input": "x", "tools": [tool]}}
    out = (await client.post(AGENT, "/run", json=row)).json()
    outputs = [i for i in out["response"]["output"] if i["type"] == "function_call_output"]
    assert "422" in outputs[0]["output"] and out["reward"] == 1.0


async def test_get_weather_tool_and_session_cookie(deployment):
    client = deployment.client
    seed = await client.post("example_single_tool_call", "/seed_session", json={})
    assert seed.ok and "gymctl_session" in seed.cookies
    r = await client.post("example_single_tool_call", "/get_weather", json={"city": "Paris"})
    assert r.json() == {"city": "Paris", "weather_description": "The weather in Paris is cold."}


async def test_health_and_unknown_server_hint(deployment):
    from gymctl.errors import UnknownServerError

    r = await deployment.client.get("policy_model", "/health")
    assert r.json()["status"] == "ok"
    with pytest.raises(UnknownServerError, match="did you mean 'policy_model'"):
        await deployment.client.post("policy_modle", "/v1/responses", json={})


async def test_bad_json_body_is_a_400_not_a_crash(deployment):
    url = deployment.servers[AGENT].url
    async with deployment.client.session.post(url + "/v1/responses", data=b"{not json") as r:
        assert r.status == 400 and "not valid JSON" in await r.text()
    async with deployment.client.session.post(url + "/run", json={"no_params": 1}) as r:
        assert r.status == 422 and "responses_create_params" in await r.text()


async def test_a_crashing_endpoint_in_process_is_a_500_like_over_http():
    from gymctl.server.asgi_dispatch import asgi_request
    from gymctl.server.kit import new_app

    app = new_app("x")

    @app.post("/boom")
    async def boom() -> dict:
        raise RuntimeError("tool crashed")

    status, _, body = await asgi_request(app, "POST", "/boom", b"{}")
    assert status == 500 and body == b"Internal Server Error"


async def test_in_process_calls_honour_the_timeout():
    import asyncio

    from gymctl.errors import ServerError
    from gymctl.server.kit import new_app

    app = new_app("x")

    @app.post("/slow")
    async def slow() -> dict:
        await asyncio.sleep(5)
        return {}

    client = ServerClient(None, local={"slow": app})
    with pytest.raises(ServerError, match=r"timed out after 0.2 s"):
        await client.post("slow", "/slow", json={}, timeout=0.2)


async def test_a_failed_start_leaves_no_port_bound():
    import socket as socketlib

    from gymctl.errors import PortInUseError

    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    cfg.head_port = free_port()
    with socketlib.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg.instances["policy_model"].port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match="policy_model"):
            await inprocess.start(cfg)
    with socketlib.socket() as again:  # the head's port was released when the start failed
        again.bind(("127.0.0.1", cfg.head_port))


async def test_a_server_config_error_is_reported_before_any_port_is_bound(tmp_path):
    from gymctl.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("policy_model:\n  responses_api_models:\n    scripted_model: {entrypoint: app.py, model_name: [not, a, string]}\n")
    cfg = load_config([str(bad)], cwd=REPO)
    cfg.head_port = free_port()
    with pytest.raises(ConfigError, match=r"policy_model.responses_api_models.scripted_model.model_name"):
        await inprocess.start(cfg)
    import socket as socketlib

    with socketlib.socket() as again:
        again.bind(("127.0.0.1", cfg.head_port))
