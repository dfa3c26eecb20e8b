"""Responses request -> Chat Completions request: a pure function of the body (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Where the text of `reasoning` items goes on the assistant message sent upstream.
#   think_tags: `<think>...</think>` inside `content` (templates that render reasoning from content)
#   reasoning_content / reasoning / both: vLLM's reasoning field(s) (vLLM < 0.16 reads
#   `reasoning_content`, >= 0.16 reads `reasoning`);  drop: left out of the history.
ReasoningMode = Literal["think_tags", "reasoning_content", "reasoning", "both", "drop"]
TOKEN_FIELDS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")

# Responses-only fields with no upstream meaning: accepted and not forwarded.
IGNORED_FIELDS = frozenset({
    "model", "store", "include", "service_tier", "metadata", "max_tool_calls", "truncation", "stream_options",
    "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "safety_identifier", "moderation",
    "image", "access_programs", "background_options", "instructions", "input", "tools", "tool_choice",
    "parallel_tool_calls", "max_output_tokens", "text", "reasoning", "top_logprobs", "stream", "background",
})
# Fields whose presence (with a value that asks for something) this server cannot honour.
UNSUPPORTED_FIELDS = {
    "previous_response_id": "server-side conversation state is not kept; send the whole conversation in `input`",
    "conversation": "server-side conversations are not kept; send the whole conversation in `input`",
    "prompt": "stored prompt templates are not supported; send the prompt in `input`",
    "context_management": "server-side context management is not supported",
}
FUNCTION_TOOL_KEYS = ("name", "description", "parameters")


class UnsupportedRequestError(ValueError):
    """A valid Responses request that has no Chat Completions form; `.param` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = f"{param}: {message}"


@dataclass(frozen=True)
class ConvertOptions:
    reasoning: ReasoningMode = "think_tags"
    token_ids: bool = False  # carry prompt/generation token ids back on the assistant message
    developer_as_system: bool = False


@dataclass
class _Assistant:
    """Consecutive assistant items (reasoning, message, function_call) buffered into one message."""

    content: str = ""
    reasoning: list[str] = field(default_factory=list)
    refusal: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, Any] | None = None
    open: bool = False

    def flush(self, messages: list[dict[str, Any]], options: ConvertOptions) -> _Assistant:
        """Append the buffered assistant message (if any item was buffered); return an empty buffer."""
        if self.open:
            message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
            if self.tool_calls:
                message["tool_calls"] = self.tool_calls
            if self.refusal:
                message["refusal"] = self.refusal
            if self.reasoning and options.reasoning in ("reasoning_content", "both"):
                message["reasoning_content"] = "\n".join(self.reasoning)
            if self.reasoning and options.reasoning in ("reasoning", "both"):
                message["reasoning"] = "\n".join(self.reasoning)
            if options.token_ids and self.tokens is not None:
                message.update(self.tokens)
            messages.append(message)
        return _Assistant()


def responses_to_chat(body: dict[str, Any], options: ConvertOptions = ConvertOptions()) -> dict[str, Any]:
    """The Chat Completions body for a Responses body (without `model`); raises UnsupportedRequestError."""
    for key, kind in (("tools", list), ("reasoning", dict), ("text", dict)):
        if body.get(key) is not None and not isinstance(body[key], kind):
            raise UnsupportedRequestError(key, f"must be a JSON {'array' if kind is list else 'object'}, not {type(body[key]).__name__}")
    try:
        return _responses_to_chat(body, options)
    except (TypeError, AttributeError, KeyError) as e:  # a nested field of the wrong JSON type: the caller's 400, not a 500
        raise UnsupportedRequestError("body", f"a field has the wrong JSON type ({type(e).__name__}: {e})") from None


def _responses_to_chat(body: dict[str, Any], options: ConvertOptions) -> dict[str, Any]:
    _reject_unsupported(body)
    messages = _messages(body.get("input"), options)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        # Chat backends commonly admit one system message, first: fold a leading system/developer run into it.
        parts = [instructions]
        while messages and messages[0]["role"] in ("system", "developer"):
            parts.append(_text_of(messages.pop(0)["content"]))
        messages.insert(0, {"role": "system", "content": "\n\n".join(parts)})
    elif instructions not in (None, "", []):
        raise UnsupportedRequestError("instructions", "only a string is supported")
    chat: dict[str, Any] = {"messages": messages}
    tools = [_tool(i, t) for i, t in enumerate(body.get("tools") or [])]
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    elif body.get("tool_choice") not in (None, "auto", "none"):
        raise UnsupportedRequestError("tool_choice", f"{body['tool_choice']!r} needs at least one tool in `tools`")
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs"):
        chat["logprobs"], chat["top_logprobs"] = True, body["top_logprobs"]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort
    _text_config(body.get("text"), chat)
    for key, value in body.items():  # sampling knobs and the caller's extra_body (top_k, seed, ...) pass through
        if key not in IGNORED_FIELDS and key not in UNSUPPORTED_FIELDS and value is not None:
            chat[key] = value
    return chat


def _reject_unsupported(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise UnsupportedRequestError("stream", "streaming is not supported; send stream=false (the default)")
    if body.get("background"):
        raise UnsupportedRequestError("background", "background responses are not supported")
    for name, why in UNSUPPORTED_FIELDS.items():
        if body.get(name):
            raise UnsupportedRequestError(name, why)
    if body.get("input") is None:
        raise UnsupportedRequestError("input", "is required (a string or a list of input items)")


def _messages(items: Any, options: ConvertOptions) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise UnsupportedRequestError("input", f"must be a string or a list of items, not {type(items).__name__}")
    messages: list[dict[str, Any]] = []
    turn = _Assistant()
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise UnsupportedRequestError(where, f"must be an object, not {type(item).__name__}")
        kind = item.get("type") or ("message" if item.get("role") else None)
        if kind == "message" and item.get("role") == "assistant":
            turn.open = True
            _assistant_content(item.get("content"), turn, where)
            for call in item.get("tool_calls") or []:  # a chat-shaped assistant turn
                turn.tool_calls.append(_tool_call(call.get("id"), call["function"]["name"], call["function"]["arguments"]))
        elif kind == "message" and item.get("role") == "tool":  # a chat-shaped tool result
            turn = turn.flush(messages, options)
            messages.append({"role": "tool", "content": item.get("content"), "tool_call_id": item.get("tool_call_id")})
        elif kind == "message":
            turn = turn.flush(messages, options)
            messages.append(_input_message(item, where, options))
        elif kind == "reasoning":
            turn.open = True
            texts = [s.get("text", "") for s in item.get("summary") or []] or [c.get("text", "") for c in item.get("content") or []]
            if options.reasoning == "think_tags":
                turn.content += "".join(f"<think>{t}</think>" for t in texts if t)
            else:
                turn.reasoning.extend(t for t in texts if t)
        elif kind == "function_call":
            turn.open = True
            if not item.get("call_id") or item.get("name") is None:
                raise UnsupportedRequestError(where, "a function_call needs `call_id` and `name`")
            turn.tool_calls.append(_tool_call(item["call_id"], item["name"], item.get("arguments") or ""))
        elif kind == "function_call_output":
            turn = turn.flush(messages, options)
            messages.append({"role": "tool", "content": _tool_output(item.get("output"), f"{where}.output"), "tool_call_id": item.get("call_id")})
        elif kind is None:
            raise UnsupportedRequestError(where, "has neither `type` nor `role`")
        else:
            raise UnsupportedRequestError(f"{where}.type", f"input items of type {kind!r} have no Chat Completions form")
        if options.token_ids and all(item.get(k) is not None for k in TOKEN_FIELDS):
            turn.tokens = {k: item[k] for k in TOKEN_FIELDS}
    turn = turn.flush(messages, options)
    return messages


def _tool_call(call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "function": {"arguments": arguments, "name": name}, "type": "function"}


def _input_message(item: dict[str, Any], where: str, options: ConvertOptions) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer"):
        raise UnsupportedRequestError(f"{where}.role", f"unknown role {role!r} (user, system, developer, assistant)")
    if role == "developer" and options.developer_as_system:
        role = "system"
    content = item.get("content")
    if isinstance(content, list):
        content = [_content_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    elif not isinstance(content, str):
        raise UnsupportedRequestError(f"{where}.content", "must be a string or a list of content parts")
    return {"content": content, "role": role}


def _content_part(part: Any, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not url:
            raise UnsupportedRequestError(where, "images by file_id are not supported; send image_url (a URL or data: URL)")
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    raise UnsupportedRequestError(f"{where}.type", f"content parts of type {kind!r} have no Chat Completions form")


def _assistant_content(content: Any, turn: _Assistant, where: str) -> None:
    if content is None:
        return
    if isinstance(content, str):
        turn.content += content
        return
    if not isinstance(content, list):
        raise UnsupportedRequestError(f"{where}.content", "must be a string or a list of content parts")
    for j, part in enumerate(content):
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            turn.content += part["text"]
        elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
            turn.refusal += part["refusal"]
        else:
            raise UnsupportedRequestError(f"{where}.content[{j}]", "assistant content parts must be output_text or refusal")


def _tool_output(output: Any, where: str) -> Any:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = []
        for j, part in enumerate(output):
            if not (isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text")):
                raise UnsupportedRequestError(f"{where}[{j}]", "tool outputs other than text have no Chat Completions form")
            parts.append({"type": "text", "text": part.get("text", "")})
        return parts
    raise UnsupportedRequestError(where, "must be a string or a list of input_text parts")


def _tool(i: int, tool: Any) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise UnsupportedRequestError(f"tools[{i}].type", f"{kind!r} tools are not supported (only function tools reach a Chat Completions model)")
    if not tool.get("name"):
        raise UnsupportedRequestError(f"tools[{i}].name", "a function tool needs a name")
    # `strict` is optional in the Responses API and many Chat servers reject it: it is dropped.
    return {"type": "function", "function": {k: tool[k] for k in FUNCTION_TOOL_KEYS if tool.get(k) is not None}}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, dict) else type(choice).__name__
    raise UnsupportedRequestError("tool_choice", f"{kind!r} is not supported (auto, none, required, or a function)")


def _text_config(text: Any, chat: dict[str, Any]) -> None:
    if not isinstance(text, dict):
        return
    fmt = text.get("format") or {}
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        schema.update({k: fmt[k] for k in ("strict", "description") if fmt.get(k) is not None})
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind not in (None, "text"):
        raise UnsupportedRequestError("text.format.type", f"{kind!r} is not supported (text, json_object, json_schema)")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
