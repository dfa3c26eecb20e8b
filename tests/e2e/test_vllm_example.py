"""The example environment with vllm_model as the policy, started by `gymctl run`, against a Chat Completions double.

The double (servers/responses_api_models/vllm_model/tests/chat_stub.py) calls the offered tool with its
reasoning in `reasoning_content`, then answers with `<think>` text; every reply has `token_id:<n>` logprobs.
"""

from __future__ import annotations

import importlib.util
import sys

from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, example_rows, http_json, start_deployment, stop_deployment

VLLM_CONFIG = "responses_api_models/vllm_model/configs/vllm_model.yaml"
STUB_PATH = REPO / "servers/responses_api_models/vllm_model/tests/chat_stub.py"


def _load_stub():
    spec = importlib.util.spec_from_file_location("vllm_chat_stub", STUB_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chat_stub = _load_stub()
TOKENS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")


def test_example_with_vllm_model_in_training_mode(tmp_path):
    stub = chat_stub.ChatStub()
    with stub.in_thread():
        dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", VLLM_CONFIG, "--set", f"policy_base_url={stub.base_url}",
                                "--set", "policy_api_key=test-key", "--set", "policy_model_name=stub-model",
                                "--set", "policy_model.responses_api_models.vllm_model.return_token_id_information=true"],
                               tmp_path)
        try:
            status, out = http_json(dep.url_of(AGENT) + "/run", example_rows()[0], timeout=30)
        finally:
            stop_deployment(dep)
    assert status == 200, f"{out}\n{dep.log()}"
    assert out["reward"] == 1.0
    items = out["response"]["output"]
    assert [i["type"] for i in items] == ["reasoning", "function_call", "function_call_output", "reasoning", "message"]
    # Token ids sit on the last item of each model turn, and nowhere else.
    assert [i["type"] for i in items if "generation_token_ids" in i] == ["function_call", "message"]
    chats = stub.chat_requests()
    assert len(chats) == 2 and all(c["return_tokens_as_token_ids"] and c["logprobs"] for c in chats)
    first_turn = items[1]
    assert first_turn["generation_token_ids"] == chat_stub.generation_ids(1)
    assert first_turn["prompt_token_ids"] == chat_stub.prompt_ids(chats[0]["messages"])  # from the upstream's /tokenize
    assert items[4]["generation_token_ids"] == chat_stub.generation_ids(2)
    assert items[3]["summary"][0]["text"] == "The tool answered." and items[0]["summary"][0]["text"] == "I should call get_weather."
    # The second upstream request carries the first turn back: its tokens and reasoning on the assistant message.
    assistant = [m for m in chats[1]["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 1
    assert {k: assistant[0][k] for k in TOKENS} == {k: first_turn[k] for k in TOKENS}
    assert assistant[0]["reasoning_content"] == "I should call get_weather."
    assert assistant[0]["tool_calls"][0]["id"] == first_turn["call_id"]
    assert [m["role"] for m in chats[1]["messages"]] == ["developer", "user", "assistant", "tool"]


def test_two_upstreams_each_rollout_stays_on_one(tmp_path):
    a, b = chat_stub.ChatStub(), chat_stub.ChatStub()
    with a.in_thread(), b.in_thread():
        dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", VLLM_CONFIG, "--set", f"policy_base_url=[{a.base_url},{b.base_url}]",
                                "--set", "policy_api_key=test-key", "--set", "policy_model_name=stub-model"], tmp_path)
        try:
            results = [http_json(dep.url_of(AGENT) + "/run", row, timeout=30) for row in example_rows()[:4]]
        finally:
            stop_deployment(dep)
    assert [(status, out["reward"]) for status, out in results] == [(200, 1.0)] * 4
    for stub in (a, b):  # new rollouts alternate; both turns of a rollout reach the same upstream
        lasts = [c["messages"][-1]["role"] for c in stub.chat_requests()]
        assert lasts == ["user", "tool"] * 2, lasts
