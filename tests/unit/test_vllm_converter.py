"""vllm_model's converter: every Responses <-> Chat Completions mapping, both ways, and each unsupported field's 400 text."""

from __future__ import annotations

import copy
import json

import pytest

from gymctl.server.loader import load_module
from tests.conftest import REPO

VLLM_DIR = REPO / "servers/responses_api_models/vllm_model"
app_module = load_module(VLLM_DIR, "app.py", "responses_api_models", "vllm_model")
req = app_module.convert_request
rep = app_module.convert_reply
Opts = req.ConvertOptions

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def to_chat(body: dict, **opts) -> dict:
    return req.responses_to_chat(copy.deepcopy(body), Opts(**opts))


# ---- Responses request -> Chat Completions request ----

def test_plain_string_input_is_one_user_message():
    assert to_chat({"input": "hi"}) == {"messages": [{"role": "user", "content": "hi"}]}


def test_content_parts_become_chat_parts_and_images_image_url():
    body = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                                   {"type": "input_image", "image_url": "data:image/png;base64,AAA"}]}]}
    assert to_chat(body)["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "auto"}}]}]


def test_instructions_become_one_system_message_folding_the_leading_system_run():
    body = {"instructions": "be brief", "input": [{"role": "system", "content": "sys"},
                                                   {"role": "developer", "content": "dev"}, {"role": "user", "content": "q"}]}
    assert to_chat(body)["messages"] == [{"role": "system", "content": "be brief\n\nsys\n\ndev"}, {"role": "user", "content": "q"}]


def test_developer_role_is_kept_or_made_system_when_configured():
    body = {"input": [{"role": "developer", "content": "d"}, {"role": "user", "content": "u", "type": "message"}]}
    assert to_chat(body)["messages"][0] == {"role": "developer", "content": "d"}
    assert to_chat(body, developer_as_system=True)["messages"][0] == {"role": "system", "content": "d"}


@pytest.mark.parametrize("strict", [None, True, False])
def test_function_tools_with_or_without_strict_lose_strict(strict):
    tool = dict(WEATHER_TOOL) if strict is None else {**WEATHER_TOOL, "strict": strict}
    chat = to_chat({"input": "x", "tools": [tool]})
    assert chat["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                                              "parameters": WEATHER_TOOL["parameters"]}}]


def test_function_calls_and_outputs_become_tool_calls_and_tool_messages():
    body = {"input": [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "sf"}', "id": "fc1"},
        {"type": "function_call_output", "call_id": "c1", "output": '{"w": "sunny"}'},
    ]}
    assert to_chat(body)["messages"][1:] == [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "sf"}'}}]},
        {"role": "tool", "content": '{"w": "sunny"}', "tool_call_id": "c1"},
    ]


def test_consecutive_assistant_items_merge_into_one_message():
    body = {"input": [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs1", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
    ]}
    messages = to_chat(body)["messages"]
    assert len(messages) == 2
    assert messages[1]["content"] == "<think>think</think>calling"
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["a", "b"]


@pytest.mark.parametrize(("mode", "expected"), [
    ("think_tags", {"content": "<think>hmm</think>ok"}),
    ("reasoning_content", {"content": "ok", "reasoning_content": "hmm"}),
    ("reasoning", {"content": "ok", "reasoning": "hmm"}),
    ("both", {"content": "ok", "reasoning_content": "hmm", "reasoning": "hmm"}),
    ("drop", {"content": "ok"}),
])
def test_reasoning_items_go_upstream_as_configured(mode, expected):
    body = {"input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
                      {"role": "assistant", "content": "ok"}]}
    assert to_chat(body, reasoning=mode)["messages"] == [{"role": "assistant", **expected}]


def test_sampling_limits_formats_and_tool_choice():
    body = {"input": "x", "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False, "max_output_tokens": 64, "temperature": 0.3, "top_p": 0.9, "top_k": 5,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            "reasoning": {"effort": "low", "summary": "auto"}, "store": True, "metadata": {"a": "b"}, "user": "u1"}
    chat = to_chat(body)
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False and chat["max_tokens"] == 64
    assert (chat["temperature"], chat["top_p"], chat["top_k"], chat["user"]) == (0.3, 0.9, 5, "u1")
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}}
    assert chat["reasoning_effort"] == "low"
    assert not {"store", "metadata", "max_output_tokens", "text", "reasoning", "input"} & chat.keys()
    assert to_chat({"input": "x", "text": {"format": {"type": "json_object"}}})["response_format"] == {"type": "json_object"}
    assert "parallel_tool_calls" not in to_chat({"input": "x", "parallel_tool_calls": True})  # no tools: not sent


def test_token_ids_ride_back_on_the_assistant_message_only_in_training_mode():
    tokens = {"prompt_token_ids": [1, 2], "generation_token_ids": [3], "generation_log_probs": [-0.1]}
    body = {"input": [{"role": "user", "content": "q"},
                      {"type": "reasoning", "summary": [{"type": "summary_text", "text": "r"}]},
                      {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", **tokens},
                      {"type": "function_call_output", "call_id": "c", "output": "ok"}]}
    assert to_chat(body, token_ids=True)["messages"][1] == {
        "role": "assistant", "content": "<think>r</think>",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}], **tokens}
    assert "prompt_token_ids" not in to_chat(body)["messages"][1]


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search' tools are not supported"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "send the whole conversation"),
    ({"input": "x", "stream": True}, "stream", "streaming is not supported"),
    ({"input": "x", "background": True}, "background", "not supported"),
    ({"input": "x", "conversation": "conv_1"}, "conversation", "not kept"),
    ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt", "templates are not supported"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "'item_reference'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type", "'input_file'"),
    ({"input": "x", "tools": [WEATHER_TOOL], "tool_choice": {"type": "web_search_preview"}}, "tool_choice", "not supported"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice", "needs at least one tool"),
    ({"input": "x", "text": {"format": {"type": "grammar"}}}, "text.format.type", "'grammar' is not supported"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role", "unknown role 'wizard'"),
    ({"input": [{"foo": 1}]}, "input[0]", "neither `type` nor `role`"),
    ({}, "input", "is required"),
])
def test_unsupported_features_name_the_field(body, param, words):
    with pytest.raises(req.UnsupportedRequestError) as e:
        to_chat(body)
    assert e.value.param == param and e.value.message.startswith(param + ":") and words in e.value.message


# ---- Chat Completion -> Responses object ----

def completion(message: dict, finish: str = "stop", **extra) -> dict:
    return {"id": "c", "created": 5, "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 2}}, **extra}


def test_text_reply_becomes_a_message_and_usage_is_mapped():
    r = rep.chat_to_response(completion({"role": "assistant", "content": "hello"}), {"input": "x", "temperature": 0.5}, model="m")
    assert r["status"] == "completed" and r["model"] == "m" and r["object"] == "response" and r["temperature"] == 0.5
    [item] = r["output"]
    assert item["type"] == "message" and item["content"][0] == {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
    assert r["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}


def test_tool_calls_become_function_calls_with_call_ids_and_reasoning_becomes_an_item():
    msg = {"role": "assistant", "content": None, "reasoning_content": "plan",
           "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"sf"}'}},
                          {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "la"}}}]}
    out = rep.chat_to_response(completion(msg, "tool_calls"), {"input": "x"}, model="m")["output"]
    assert [i["type"] for i in out] == ["reasoning", "function_call", "function_call"]
    assert out[0]["summary"] == [{"type": "summary_text", "text": "plan"}]
    assert (out[1]["call_id"], out[1]["arguments"]) == ("t1", '{"city":"sf"}')
    assert out[2]["call_id"].startswith("call_") and json.loads(out[2]["arguments"]) == {"city": "la"}  # minted id, JSON text


def test_think_tags_in_content_become_a_reasoning_item():
    out = rep.output_items({"role": "assistant", "content": "<think>a</think>\n\nAnswer"})
    assert out[0]["summary"] == [{"type": "summary_text", "text": "a"}] and out[1]["content"][0]["text"] == "\n\nAnswer"


def test_length_and_content_filter_are_incomplete():
    r = rep.chat_to_response(completion({"role": "assistant", "content": "cut"}, "length"), {"input": "x"}, model="m")
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    r = rep.chat_to_response(completion({"role": "assistant", "content": ""}, "content_filter"), {"input": "x"}, model="m")
    assert r["incomplete_details"] == {"reason": "content_filter"}


def test_empty_reply_is_one_empty_message_and_refusals_are_kept():
    assert rep.output_items({"role": "assistant", "content": None})[0]["content"][0]["text"] == ""
    assert rep.output_items({"role": "assistant", "refusal": "no"})[0]["content"] == [{"type": "refusal", "refusal": "no"}]


def test_token_ids_go_on_the_last_item_of_the_turn():
    tokens = rep.token_bundle([1, 2], [3, 4], [-0.1, -0.2])
    out = rep.output_items({"role": "assistant", "content": "<think>r</think>",
                            "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]}, tokens)
    assert "prompt_token_ids" not in out[0] and out[-1]["generation_token_ids"] == [3, 4]


def test_generation_ids_come_from_token_id_logprobs_and_bad_ones_are_named():
    choice = {"logprobs": {"content": [{"token": "token_id:11", "logprob": -1.0}, {"token": "token_id:12", "logprob": 0}]}}
    assert rep.generation_from_logprobs(choice) == ([11, 12], [-1.0, 0.0])
    with pytest.raises(rep.MalformedReplyError, match=r"content\[0\]\.token is 'hello', not 'token_id:<n>'"):
        rep.generation_from_logprobs({"logprobs": {"content": [{"token": "hello", "logprob": -1}]}})
    with pytest.raises(rep.MalformedReplyError, match=r"choices\[0\].logprobs is None"):
        rep.generation_from_logprobs({"logprobs": None})
    assert rep.inline_token_ids({"prompt_token_ids": [1]}, {"token_ids": [2]}) == ([1], [2])
    with pytest.raises(rep.MalformedReplyError, match="only one of"):
        rep.inline_token_ids({"prompt_token_ids": [1]}, {})
    with pytest.raises(rep.MalformedReplyError, match="2 generation token ids but 1 logprobs"):
        rep.token_bundle([1], [2, 3], [-1.0])


def test_a_reply_without_choices_is_reported():
    with pytest.raises(rep.MalformedReplyError, match="no `choices`"):
        rep.chat_to_response({"object": "error"}, {"input": "x"}, model="m")


# ---- both ways ----

@pytest.mark.parametrize("token_ids", [False, True])
def test_round_trip_reply_to_next_request_restores_the_assistant_message(token_ids):
    message = {"role": "assistant", "content": "<think>I'm thinking</think>I'm chatting!", "tool_calls": [
        {"id": "tool call 1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city_name": "new york"}'}},
        {"id": "tool call 2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city_name": "boston"}'}}]}
    tokens = rep.token_bundle([1, 2, 3], [4, 5, 6], [7.0, 8.0, 9.0]) if token_ids else None
    items = rep.output_items(message, tokens)
    assert [i["type"] for i in items] == ["reasoning", "message", "function_call", "function_call"]
    chat = to_chat({"input": [{"role": "system", "content": "system"}, {"role": "user", "content": "hello!"}, *items]},
                   token_ids=token_ids)
    assert chat["messages"][2] == {**message, **(tokens or {})}
