"""vllm_model as served: the official openai SDK against it, a real Chat Completions double on 127.0.0.1 behind it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from gymctl.server import ServerClient, ServerKit
from gymctl.server.loader import load_module
from tests.conftest import REPO, free_port

VLLM_DIR = REPO / "servers/responses_api_models/vllm_model"
app_module = load_module(VLLM_DIR, "app.py", "responses_api_models", "vllm_model")


def _load_stub():
    spec = importlib.util.spec_from_file_location("vllm_chat_stub", VLLM_DIR / "tests/chat_stub.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chat_stub = _load_stub()
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
async def stub() -> AsyncIterator:
    s = await chat_stub.ChatStub().start()
    yield s
    await s.stop()


@asynccontextmanager
async def vllm_app(base_url, **config) -> AsyncIterator:
    kit = ServerKit(instance="policy_model", server_type="responses_api_models", impl="vllm_model", client=ServerClient(None))
    settings = {"base_url": base_url, "api_key": "test-key", "model": "stub-model", "retry_backoff_s": 0.01, **config}
    app = app_module.create_app(app_module.Config(**settings), kit)
    try:
        yield app
    finally:
        await kit.client.close()


def http(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vllm-model")


def sdk(app) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url="http://vllm-model/v1", api_key="unused", http_client=http(app), max_retries=0)


# ---- the official SDK ----

async def test_sdk_responses_create_with_a_function_tool_without_strict(stub):
    async with vllm_app(stub.base_url) as app:
        resp = await sdk(app).responses.create(model="anything", input="weather in sf?", tools=[WEATHER])
    assert isinstance(resp, Response) and resp.status == "completed" and resp.model == "stub-model"
    assert [i.type for i in resp.output] == ["reasoning", "function_call"]
    call = resp.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "sf"} and call.call_id
    sent = stub.chat_requests()[0]
    assert sent["model"] == "stub-model" and "strict" not in sent["tools"][0]["function"]
    assert stub.requests[0][2]["Authorization"] == "Bearer test-key"


async def test_sdk_strict_tools_content_parts_and_a_whole_tool_loop(stub):
    async with vllm_app(stub.base_url) as app:
        client = sdk(app)
        first = await client.responses.create(
            model="m", instructions="be brief", tools=[{**WEATHER, "strict": True}], max_output_tokens=50,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "weather in sf?"}]}])
        call = first.output[-1]
        second = await client.responses.create(model="m", instructions="be brief", tools=[{**WEATHER, "strict": True}], input=[
            {"role": "user", "content": [{"type": "input_text", "text": "weather in sf?"}]},
            *[i.to_dict() for i in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"weather": "sunny"}'}])
    assert second.output_text == "It is sunny in sf." and second.output[0].type == "reasoning"
    messages = stub.chat_requests()[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["reasoning_content"] == "I should call get_weather." and messages[2]["tool_calls"][0]["id"] == call.call_id
    assert messages[3] == {"role": "tool", "content": '{"weather": "sunny"}', "tool_call_id": call.call_id}
    assert stub.chat_requests()[0]["max_tokens"] == 50


async def test_sdk_chat_completions_pass_through(stub):
    async with vllm_app(stub.base_url) as app:
        cc = await sdk(app).chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": "weather?"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["parameters"]}}])
    assert isinstance(cc, ChatCompletion) and cc.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert stub.chat_requests()[0]["model"] == "stub-model"


async def test_sdk_sees_a_cut_off_reply_as_incomplete(stub):
    stub.finish_reason = "length"
    async with vllm_app(stub.base_url) as app:
        resp = await sdk(app).responses.create(model="m", input="hi")
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type: 'web_search' tools are not supported"),
    ({"previous_response_id": "resp_123"}, "previous_response_id: server-side conversation state is not kept"),
    ({"stream": True}, "stream: streaming is not supported"),
])
async def test_sdk_gets_a_clear_400_for_unsupported_features(stub, kwargs, words):
    async with vllm_app(stub.base_url) as app:
        with pytest.raises(openai.BadRequestError) as e:
            await sdk(app).responses.create(model="m", input="hi", **kwargs)
    assert words in str(e.value) and stub.requests == []


async def test_bodies_that_are_not_json_objects_get_400(stub):
    async with vllm_app(stub.base_url) as app, http(app) as c:
        r = await c.post("/v1/responses", content=b"{nope")
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        r = await c.post("/v1/responses", json=[1, 2])
        assert r.status_code == 400 and "must be a JSON object, not list" in r.json()["detail"]
        r = await c.post("/v1/chat/completions", json={"messages": [], "stream": True})
        assert r.status_code == 400 and "streaming is not supported" in r.json()["detail"]


# ---- training mode ----

@pytest.mark.parametrize("inline", [False, True])
async def test_training_mode_puts_token_ids_on_the_last_item_and_carries_them_back(inline):
    stub = await chat_stub.ChatStub(inline_token_ids=inline).start()
    try:
        async with vllm_app(stub.base_url, return_token_id_information=True) as app, http(app) as c:
            first = (await c.post("/v1/responses", json={"input": "weather?", "tools": [WEATHER]})).json()
            items = first["output"]
            second = (await c.post("/v1/responses", json={"tools": [WEATHER], "input": [
                {"role": "user", "content": "weather?"}, *items,
                {"type": "function_call_output", "call_id": items[-1]["call_id"], "output": "sunny"}]})).json()
    finally:
        await stub.stop()
    chats = stub.chat_requests()
    assert all(c["logprobs"] is True and c["top_logprobs"] == 0 and c["return_tokens_as_token_ids"] is True for c in chats)
    assert "prompt_token_ids" not in items[0]  # the reasoning item; the function call closes the turn
    assert items[-1]["generation_token_ids"] == chat_stub.generation_ids(1)
    assert items[-1]["prompt_token_ids"] == chat_stub.prompt_ids(chats[0]["messages"])
    assert items[-1]["generation_log_probs"] == [-0.5 / t for t in chat_stub.generation_ids(1)]
    assert second["output"][-1]["generation_token_ids"] == chat_stub.generation_ids(2)
    carried = chats[1]["messages"][1]
    assert carried["role"] == "assistant" and carried["generation_token_ids"] == chat_stub.generation_ids(1)
    assert carried["prompt_token_ids"] == items[-1]["prompt_token_ids"]
    assert ("/tokenize" in stub.paths()) is (not inline)


# ---- several upstreams, retries, failures ----

async def test_sessions_stick_to_one_upstream_and_new_ones_spread():
    a, b = await chat_stub.ChatStub().start(), await chat_stub.ChatStub().start()
    served: list[tuple[int, int]] = []

    def seen() -> tuple[int, int]:
        return len(a.chat_requests()), len(b.chat_requests())

    try:
        async with vllm_app([a.base_url, b.base_url]) as app:
            for _ in range(2):
                before = seen()
                async with http(app) as session:  # one client = one rollout; the cookie keeps it on its upstream
                    for _ in range(3):
                        assert (await session.post("/v1/responses", json={"input": "hi"})).status_code == 200
                served.append((seen()[0] - before[0], seen()[1] - before[1]))
            before = seen()
            for _ in range(3):  # no cookie: the request's metadata.session_id keeps it on one upstream
                async with http(app) as fresh:
                    await fresh.post("/v1/responses", json={"input": "hi", "metadata": {"session_id": "rollout-7"}})
            served.append((seen()[0] - before[0], seen()[1] - before[1]))
    finally:
        await a.stop()
        await b.stop()
    assert served[0] == (3, 0) and served[1] == (0, 3)  # new sessions go round-robin, each stays put
    assert served[2] in ((3, 0), (0, 3))


async def test_failover_when_an_upstream_is_down(stub):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with vllm_app([dead, stub.base_url]) as app, http(app) as c:
        for _ in range(4):
            c.cookies.clear()
            r = await c.post("/v1/responses", json={"input": "hi"})
            assert r.status_code == 200, r.text
    assert len(stub.chat_requests()) == 4


async def test_429_and_5xx_are_retried_with_a_bound(stub):
    async with vllm_app(stub.base_url, max_retries=2) as app, http(app) as c:
        stub.fail_next((503, {"error": "busy"}), (429, {"error": "slow down"}))
        assert (await c.post("/v1/responses", json={"input": "hi"})).status_code == 200
        assert len(stub.chat_requests()) == 3
        stub.fail_next(*[(429, {"error": "slow down"})] * 3)
        r = await c.post("/v1/responses", json={"input": "hi"})
    assert r.status_code == 502 and "after 3 attempts" in r.json()["detail"] and "HTTP 429" in r.json()["detail"]
    assert len(stub.chat_requests()) == 6


async def test_401_is_reported_at_once(stub):
    stub.fail_next((401, {"error": {"message": "Incorrect API key"}}))
    async with vllm_app(stub.base_url) as app, http(app) as c:
        r = await c.post("/v1/responses", json={"input": "hi"})
    assert r.status_code == 502 and len(stub.requests) == 1
    assert "refused the API key (HTTP 401)" in r.json()["detail"] and "check policy_api_key" in r.json()["detail"]


async def test_malformed_json_and_closed_connections(stub):
    async with vllm_app(stub.base_url, max_retries=1) as app, http(app) as c:
        stub.fail_next((200, b"<html>oops"), (200, b"<html>oops"))
        r = await c.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 502 and "not JSON" in r.json()["detail"]
        stub.fail_next((200, "close"))
        assert (await c.post("/v1/responses", json={"input": "hi"})).status_code == 200
        stub.fail_next((200, {"object": "list"}))
        r = await c.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 502 and "could not be converted" in r.json()["detail"] and "no `choices`" in r.json()["detail"]


async def test_timeouts_are_reported(stub):
    stub.delay_s = 1.0
    async with vllm_app(stub.base_url, timeout_s=0.2) as app, http(app) as c:
        r = await c.post("/v1/responses", json={"input": "hi"})
    assert r.status_code == 504 and "did not answer within 0.2 s" in r.json()["detail"]


async def test_context_overflow_ends_the_rollout_incomplete_and_other_400s_are_relayed(stub):
    async with vllm_app(stub.base_url) as app, http(app) as c:
        stub.fail_next((400, {"message": "This model's maximum context length is 32768 tokens."}))
        r = await c.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 200 and r.json()["status"] == "incomplete"
        stub.fail_next((400, {"message": "unknown field frobnicate"}))
        r = await c.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 400 and "unknown field frobnicate" in r.json()["detail"]
        stub.fail_next((400, {"message": "bad"}))
        r = await c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400 and r.json() == {"message": "bad"}  # chat passes the upstream reply through


def test_config_takes_one_url_a_list_or_none():
    assert app_module.Config(base_url="http://a/v1", model="m").base_url == ["http://a/v1"]
    assert app_module.Config(base_url=["http://a/v1", "http://b/v1"], model="m").base_url == ["http://a/v1", "http://b/v1"]
    with pytest.raises(ValueError, match="at least one upstream URL"):
        app_module.Config(base_url=[], model="m")


async def test_configured_and_per_sample_template_kwargs_and_extra_body(stub):
    async with vllm_app(stub.base_url, chat_template_kwargs={"enable_thinking": True, "a": 1},
                        extra_body={"top_k": 20, "seed": 1}) as app, http(app) as c:
        r = await c.post("/v1/responses", json={"input": "hi", "seed": 7, "metadata": {
            "chat_template_kwargs": '{"enable_thinking": false}', "extra_body": '{"min_p": 0.1}'}})
        assert r.status_code == 200
        r = await c.post("/v1/responses", json={"input": "hi", "metadata": {"chat_template_kwargs": "{oops"}})
    sent = stub.chat_requests()[0]
    assert sent["chat_template_kwargs"] == {"enable_thinking": False, "a": 1}
    assert (sent["top_k"], sent["seed"], sent["min_p"]) == (20, 7, 0.1) and "metadata" not in sent
    assert r.status_code == 400 and "metadata.chat_template_kwargs: must be a JSON object encoded as a string" in r.json()["detail"]
