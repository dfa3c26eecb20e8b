"""The upstream stub (the LLM test double): the official openai SDK parses its replies, and it decides like a policy."""

from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest

from bench.upstream_stub import ANSWER, PLAIN_ANSWER, StubProcess, StubThread

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_TOOL["parameters"]}}


@pytest.fixture(scope="module")
def stub():
    with StubThread() as s:
        yield s


@pytest.fixture
def client(stub):
    return openai.OpenAI(base_url=stub.url + "/v1", api_key="dummy-key", max_retries=0)


def test_responses_calls_the_offered_tool(client):
    r = client.responses.create(model="stub", input="what's it like in sf?", tools=[WEATHER_TOOL])
    assert r.status == "completed"
    [call] = r.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "San Francisco"}
    assert call.call_id and r.usage.total_tokens > 0


def test_responses_answers_after_a_function_call_output(client):
    first = client.responses.create(model="stub", input="weather?", tools=[WEATHER_TOOL]).output[0]
    r = client.responses.create(model="stub", tools=[WEATHER_TOOL], input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": first.call_id, "name": first.name, "arguments": first.arguments},
        {"type": "function_call_output", "call_id": first.call_id, "output": '{"weather_description": "cold"}'},
    ])
    assert [item.type for item in r.output] == ["message"]
    assert r.output_text == ANSWER


def test_responses_without_tools_is_a_plain_message(client):
    assert client.responses.create(model="stub", input="hi").output_text == PLAIN_ANSWER


def test_responses_calls_the_first_tool_when_get_weather_is_not_offered(client):
    other = {**WEATHER_TOOL, "name": "lookup"}
    assert client.responses.create(model="stub", input="x", tools=[other]).output[0].name == "lookup"


def test_chat_completions_tool_call_then_answer(client):
    r = client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "weather?"}],
                                       tools=[CHAT_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "San Francisco"}
    r2 = client.chat.completions.create(model="stub", tools=[CHAT_TOOL], messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "cold"},
    ])
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content == ANSWER


def test_chat_completions_token_ids_and_logprobs_when_asked(client):
    r = client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}], logprobs=True,
                                       extra_body={"return_token_ids": True})
    tokens = [t.token for t in r.choices[0].logprobs.content]
    assert tokens and all(t.startswith("token_id:") and t.split(":")[1].isdigit() for t in tokens)
    assert r.model_extra["prompt_token_ids"] and r.choices[0].model_extra["token_ids"]
    plain = client.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].logprobs is None and "prompt_token_ids" not in (plain.model_extra or {})


def test_reasoning_content_when_switched_on():
    with StubThread(reasoning=True) as s:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        r = c.chat.completions.create(model="stub", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.model_extra["reasoning_content"]


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == ["stub"]


def test_records_what_it_was_sent(stub, client):
    urllib.request.urlopen(urllib.request.Request(stub.url + "/_stub/requests", method="DELETE")).read()
    client.responses.create(model="stub", input="recorded?", tools=[WEATHER_TOOL])
    seen = json.loads(urllib.request.urlopen(stub.url + "/_stub/requests").read())
    assert seen["count"] == 1 and seen["by_path"] == {"/v1/responses": 1}
    [last] = seen["last"]
    assert last["body"]["input"] == "recorded?" and last["authorization"] == "Bearer dummy-key"


def test_delay_applies_to_every_model_reply():
    with StubThread(delay_s=0.2) as s:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        t0 = time.monotonic()
        c.responses.create(model="stub", input="slow")
        assert time.monotonic() - t0 >= 0.2


def test_runs_as_a_process_from_the_command_line():
    with StubProcess() as s:
        body = json.loads(urllib.request.urlopen(s.url + "/v1/models", timeout=5).read())
        assert body["data"][0]["id"] == "stub"
    assert s.proc is not None and s.proc.poll() is not None  # stopped on exit
