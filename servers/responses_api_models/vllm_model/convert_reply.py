"""Chat Completion -> Responses object, and token ids/logprobs out of a vLLM reply: pure functions (no I/O)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
TOKEN_FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
# Request fields echoed on the Response object (the SDK's `Response` has them).
ECHOED = ("instructions", "max_output_tokens", "metadata", "parallel_tool_calls", "previous_response_id",
          "reasoning", "service_tier", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p",
          "truncation", "user", "background", "max_tool_calls", "prompt_cache_key", "safety_identifier")
DEFAULTS = {"parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "truncation": "disabled", "background": False}


class MalformedReplyError(ValueError):
    """The upstream's reply is not a Chat Completion this server can convert."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def split_reasoning(message: dict[str, Any]) -> tuple[list[str], str]:
    """Reasoning texts (the `reasoning_content`/`reasoning` field, then `<think>` blocks) and the content left."""
    texts: list[str] = []
    field = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(field, str) and field:
        texts.append(field)
    content = message.get("content") or ""
    if not isinstance(content, str):  # a list of text parts (some servers)
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    texts.extend(THINK.findall(content))
    return texts, THINK.sub("", content)


def output_items(message: dict[str, Any], tokens: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Responses output items for one assistant message; `tokens` go on the last item of the turn."""
    items: list[dict[str, Any]] = []
    reasoning, content = split_reasoning(message)
    if reasoning:
        items.append({"id": new_id("rs"), "type": "reasoning", "status": "completed", "encrypted_content": None,
                      "summary": [{"type": "summary_text", "text": t} for t in reasoning]})
    refusal = message.get("refusal") or ""
    calls = message.get("tool_calls") or []
    empty = not (items or calls or refusal)
    if content or refusal or empty:
        parts: list[dict[str, Any]] = []
        if content or empty:
            parts.append({"type": "output_text", "text": content, "annotations": [], "logprobs": []})
        if refusal:
            parts.append({"type": "refusal", "refusal": str(refusal)})
        items.append({"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed", "content": parts})
    for call in calls:
        fn = call.get("function") or {}
        if not fn.get("name"):
            raise MalformedReplyError(f"tool call without a function name: {call!r}")
        call_id = call.get("id") or new_id("call")
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):  # a few servers send an object; Responses wants the JSON text
            arguments = json.dumps(arguments if arguments is not None else {})
        items.append({"id": call_id, "type": "function_call", "status": "completed", "call_id": call_id,
                      "name": fn["name"], "arguments": arguments})
    if tokens is not None:
        items[-1].update(tokens)
    return items


def first_choice(completion: Any) -> dict[str, Any]:
    if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list) or not completion["choices"]:
        raise MalformedReplyError("reply has no `choices`; is the base_url an OpenAI-compatible /v1 endpoint?")
    choice = completion["choices"][0]
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        raise MalformedReplyError("choices[0] has no `message`")
    return choice


def chat_to_response(completion: dict[str, Any], request: dict[str, Any], *, model: str,
                     tokens: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Responses object for a Chat Completion answering `request` (the original Responses body)."""
    choice = first_choice(completion)
    finish = choice.get("finish_reason")
    incomplete = {"length": {"reason": "max_output_tokens"}, "content_filter": {"reason": "content_filter"}}.get(finish)
    response: dict[str, Any] = {
        "id": new_id("resp"),
        "object": "response",
        "created_at": float(completion.get("created") or time.time()),
        "model": model,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": incomplete,
        "error": None,
        "output": output_items(choice["message"], tokens),
        "usage": usage(completion.get("usage")),
    }
    for key in ECHOED:
        value = request.get(key)
        response[key] = value if value is not None else DEFAULTS.get(key)
    return response


def usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(u.get("total_tokens") or prompt + completion)}


def empty_completion(finish_reason: str) -> dict[str, Any]:
    """A reply with no text, e.g. when the prompt no longer fits the context (the rollout ends, it does not fail)."""
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": None}}]}


# ---- training: token ids and logprobs ----

def generation_from_logprobs(choice: dict[str, Any]) -> tuple[list[int], list[float]]:
    """Generated token ids and logprobs from `logprobs.content[].token == "token_id:<n>"` (vLLM's
    `return_tokens_as_token_ids`)."""
    block = choice.get("logprobs")
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        raise MalformedReplyError("training mode asked upstream for logprobs (logprobs=true, "
                                  f"return_tokens_as_token_ids=true) but choices[0].logprobs is {block!r}")
    ids: list[int] = []
    logprobs: list[float] = []
    for i, entry in enumerate(block["content"]):
        token = entry.get("token") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not token.startswith("token_id:"):
            raise MalformedReplyError(f"choices[0].logprobs.content[{i}].token is {token!r}, not 'token_id:<n>': "
                                      "is the upstream vLLM (return_tokens_as_token_ids)?")
        try:
            ids.append(int(token.removeprefix("token_id:")))
        except ValueError:
            raise MalformedReplyError(f"choices[0].logprobs.content[{i}].token {token!r} has no integer id") from None
        lp = entry.get("logprob")
        if not isinstance(lp, (int, float)) or isinstance(lp, bool):
            raise MalformedReplyError(f"choices[0].logprobs.content[{i}].logprob is {lp!r}, not a number")
        logprobs.append(float(lp))
    return ids, logprobs


def inline_token_ids(completion: dict[str, Any], choice: dict[str, Any]) -> tuple[list[int], list[int]] | None:
    """(prompt ids, generation ids) when the reply carries them (vLLM's `return_token_ids`), else None."""
    prompt, generation = completion.get("prompt_token_ids"), choice.get("token_ids")
    if prompt is None and generation is None:
        return None
    if not isinstance(prompt, list) or not isinstance(generation, list):
        raise MalformedReplyError("reply carries only one of `prompt_token_ids` and `choices[0].token_ids`")
    return prompt, generation


def token_bundle(prompt_ids: list[int], generation_ids: list[int], logprobs: list[float]) -> dict[str, Any]:
    if len(generation_ids) != len(logprobs):
        raise MalformedReplyError(f"{len(generation_ids)} generation token ids but {len(logprobs)} logprobs")
    return {"prompt_token_ids": prompt_ids, "generation_token_ids": generation_ids, "generation_log_probs": logprobs}
