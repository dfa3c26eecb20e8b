"""scripted_model: a deterministic offline policy (no LLM): calls each offered function tool once, then answers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict

from gymctl.server import ServerKit, load_sibling, new_app

# Stateless between calls (the script is read from each request): any worker process can serve any call.
SESSION_STATE = "request"

policy = load_sibling(__file__, __name__, "policy")  # a sibling module: every server dir holds its own files


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")
    entrypoint: str = "app.py"
    model_name: str = "scripted"


def _words(text: str) -> int:
    return max(1, len(text.split()))


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        raise HTTPException(status_code=400, detail=f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise HTTPException(status_code=400, detail="request body must be a JSON object")
    return body


def _list_of_objects(body: dict[str, Any], key: str, *, text_ok: bool = False) -> list[dict[str, Any]]:
    """body[key] as a list of JSON objects (absent: []; a string too where the API allows one); else 422."""
    value = body.get(key)
    if value is None:
        return []
    if text_ok and isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        shape = "a string or a list of objects" if text_ok else "a list of objects"
        raise HTTPException(status_code=422, detail=[{"loc": ["body", key], "msg": f"{key} must be {shape}", "type": "type_error"}])
    return value


def _decide(tools: Any, called: set[Any], user: str, outputs: list[str]) -> tuple[list[tuple[str, Any]], str | None]:
    try:
        return policy.decide(policy.function_tools(tools), called, user, outputs)
    except (TypeError, AttributeError, KeyError, ValueError) as e:  # a tool whose fields have the wrong JSON types
        raise HTTPException(status_code=422, detail=f"tools: a function tool has a field of the wrong type ({type(e).__name__}: {e})") from None


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)
    router = APIRouter()

    @router.post("/v1/responses")
    async def responses(request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        items = _list_of_objects(body, "input", text_ok=True)
        tools = _list_of_objects(body, "tools")
        called = {i.get("name") for i in items if i.get("type") == "function_call" and isinstance(i.get("name"), str)}
        outputs = [str(i.get("output", "")) for i in items if i.get("type") == "function_call_output"]
        user = policy.last_user_text(items)
        calls, answer = _decide(tools, called, user, outputs)
        rid = uuid.uuid4().hex
        output: list[dict[str, Any]] = []
        for name, args in calls:
            cid = policy.call_id_for(name, rid)
            output.append({"type": "function_call", "id": f"fc_{cid[5:]}", "call_id": cid, "name": name, "arguments": orjson.dumps(args).decode(), "status": "completed"})
        if answer is not None:
            output.append({"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": answer, "annotations": []}]})
        in_tokens = sum(_words(policy.text_of(i.get("content")) or str(i.get("output", ""))) for i in items)
        out_tokens = _words(answer or "") + 8 * len(calls)
        return {
            "id": f"resp_{rid}", "object": "response", "created_at": int(time.time()), "model": config.model_name,
            "status": "completed", "output": output, "parallel_tool_calls": True, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "error": None, "incomplete_details": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens, "total_tokens": in_tokens + out_tokens,
                      "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        }

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        messages = _list_of_objects(body, "messages")
        tools = _list_of_objects(body, "tools")
        try:
            called = {tc["function"]["name"] for m in messages if m.get("role") == "assistant" for tc in m.get("tool_calls") or []}
        except (TypeError, KeyError) as e:
            raise HTTPException(status_code=422, detail=f"messages: a tool_calls item is not {{function: {{name}}}} ({type(e).__name__}: {e})") from None
        outputs = [policy.text_of(m.get("content")) for m in messages if m.get("role") == "tool"]
        user = policy.last_user_text([{**m, "type": "message"} for m in messages])
        calls, answer = _decide(tools, called, user, outputs)
        rid = uuid.uuid4().hex
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if calls:
            message["tool_calls"] = [
                {"id": policy.call_id_for(n, rid), "type": "function", "function": {"name": n, "arguments": orjson.dumps(a).decode()}} for n, a in calls
            ]
        in_tokens = sum(_words(policy.text_of(m.get("content"))) for m in messages)
        out_tokens = _words(answer or "") + 8 * len(calls)
        return {
            "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()), "model": config.model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop", "logprobs": None}],
            "usage": {"prompt_tokens": in_tokens, "completion_tokens": out_tokens, "total_tokens": in_tokens + out_tokens},
        }

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0, "owned_by": "gymctl"}]}

    app.include_router(router)
    return app
