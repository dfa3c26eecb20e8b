"""Property tests of vllm_model's converters: an assistant turn survives Chat -> Responses -> Chat unchanged, and
arbitrary JSON gives a converted body or the converter's own typed error (a 400/502 with a reason), never a crash."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gymctl.server.loader import load_module
from tests.conftest import REPO

app_module = load_module(REPO / "servers/responses_api_models/vllm_model", "app.py", "responses_api_models", "vllm_model")
req = app_module.convert_request
rep = app_module.convert_reply
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).filter(lambda t: "<think>" not in t and "</think>" not in t)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
arguments = st.dictionaries(names, st.integers() | texts | st.booleans(), max_size=3).map(json.dumps)
call_ids = st.from_regex(r"call_[a-z0-9]{4,12}", fullmatch=True)


@st.composite
def assistant_turns(draw: Any) -> dict[str, Any]:
    """A Chat Completions assistant message: text and/or tool calls (at least one of them)."""
    calls = draw(st.lists(st.builds(lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": a}},
                                    call_ids, names, arguments), max_size=3, unique_by=lambda c: c["id"]))
    content = draw(texts if not calls else st.one_of(st.none(), texts))
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


@FUZZ
@given(user=texts, turn=assistant_turns(), outputs=st.lists(texts, min_size=3, max_size=3))
def test_an_assistant_turn_survives_the_round_trip(user, turn, outputs):
    completion = {"choices": [{"index": 0, "message": copy.deepcopy(turn), "finish_reason": "tool_calls" if turn.get("tool_calls") else "stop"}]}
    response = rep.chat_to_response(completion, {"input": user}, model="m")
    items = [{"role": "user", "content": user}, *response["output"]]
    for call, out in zip(turn.get("tool_calls") or [], outputs, strict=False):
        items.append({"type": "function_call_output", "call_id": call["id"], "output": out})
    chat = req.responses_to_chat({"input": items}, req.ConvertOptions())
    messages = chat["messages"]
    assert messages[0] == {"role": "user", "content": user}
    back = messages[1]
    assert back["role"] == "assistant"
    assert (back.get("content") or "") == (turn.get("content") or "")
    sent = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in turn.get("tool_calls") or []]
    got = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in back.get("tool_calls") or []]
    assert got == sent
    tool_messages = [m for m in messages[2:] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [c["id"] for c in turn.get("tool_calls") or []][: len(tool_messages)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["input", "role", "content", "type", "text", "tools", "name", "parameters", "call_id", "output", "arguments", "instructions",
         "tool_choice", "text", "format", "reasoning", "summary", "choices", "message", "tool_calls", "function", "id",
         "finish_reason", "usage", "logprobs", "reasoning_content", "refusal"]) | st.text(max_size=6), inner, max_size=4),
    max_leaves=14,
)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens"]),
                            json_values, max_size=4))
def test_any_request_converts_or_is_refused_with_a_reason(body):
    try:
        chat = req.responses_to_chat(body, req.ConvertOptions())
    except req.UnsupportedRequestError as e:
        assert str(e)
    else:
        assert isinstance(chat["messages"], list)


@FUZZ
@given(completion=json_values)
def test_any_reply_converts_or_is_a_malformed_reply(completion):
    try:
        response = rep.chat_to_response(completion, {"input": "hi"}, model="m")
    except rep.MalformedReplyError as e:
        assert str(e)
    else:
        assert isinstance(response["output"], list)
