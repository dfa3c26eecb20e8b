"""vllm_model: the Responses API in front of any OpenAI-compatible /v1/chat/completions (vLLM, SGLang, llama.cpp)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gymctl.server import ServerKit, load_sibling, new_app

# Session state travels in its cookie (the upstream a session sticks to is a stable hash of it): any worker can serve it.
SESSION_STATE = "request"

# every server dir holds its own files; they load by path, uniquely named
convert_request = load_sibling(__file__, __name__, "convert_request")
convert_reply = load_sibling(__file__, __name__, "convert_reply")
upstream = load_sibling(__file__, __name__, "upstream")

SESSION_COOKIE = "gymctl_vllm_session"
CONTEXT_OVERFLOW_HINTS = ("context length", "maximum context", "max_tokens", "too long")


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")
    entrypoint: str = "app.py"
    base_url: list[str] = Field(description="one or more OpenAI-compatible base URLs ending in /v1")
    api_key: str | None = None
    model: str
    return_token_id_information: bool = Field(default=False, description="training: token ids and logprobs on each turn")
    uses_reasoning_parser: bool = Field(default=True, description="reasoning goes upstream in a field, not as <think> text")
    uses_interleaved_reasoning: bool = Field(default=True, description="false: earlier turns' reasoning is left out")
    reasoning_field: Literal["reasoning_content", "reasoning", "both"] = "both"
    replace_developer_role_with_system: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None
    default_headers: dict[str, str] = Field(default_factory=dict)
    max_retries: int = Field(default=4, ge=0)
    retry_backoff_s: float = Field(default=0.25, ge=0)
    timeout_s: float | None = 600.0
    down_cooldown_s: float = 5.0

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [u.strip() for u in value.split(",") if u.strip()]
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError("at least one upstream URL is needed (e.g. http://127.0.0.1:8000/v1)")
        return value

    def convert_options(self) -> Any:
        if not self.uses_reasoning_parser:
            mode = "think_tags"
        elif not self.uses_interleaved_reasoning:
            mode = "drop"
        else:
            mode = self.reasoning_field
        return convert_request.ConvertOptions(reasoning=mode, token_ids=self.return_token_id_information,
                                              developer_as_system=self.replace_developer_role_with_system)


def error_response(status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error") -> Response:
    """An OpenAI-shaped error body (the SDK shows `error.message`), plus `detail` as gymctl's servers answer."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}, "detail": message}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        return error_response(400, f"request body is not valid JSON: {e}")
    if not isinstance(body, dict):
        return error_response(400, f"request body must be a JSON object, not {type(body).__name__}")
    return body


def _json_field(metadata: Any, key: str) -> dict[str, Any]:
    """A JSON object carried as a string in `metadata[key]` (NeMo Gym's per-sample overrides); {} when absent."""
    raw = metadata.get(key) if isinstance(metadata, dict) else None
    if raw is None or raw == "":
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise convert_request.UnsupportedRequestError(
            f"metadata.{key}", "must be a JSON object encoded as a string, e.g. '{\"enable_thinking\": false}'")
    return value


def session_key(request: Request, body: dict[str, Any]) -> str | None:
    """Which conversation this is: our cookie, else `metadata.session_id`, else `user`."""
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    for value in (request.cookies.get(SESSION_COOKIE), metadata.get("session_id"), body.get("user")):
        if isinstance(value, str) and value:
            return value
    return None


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)
    router = APIRouter()
    options = config.convert_options()
    pool = upstream.UpstreamPool(
        config.base_url, session=lambda: kit.session, api_key=config.api_key, headers=config.default_headers,
        max_retries=config.max_retries, backoff_s=config.retry_backoff_s, timeout_s=config.timeout_s,
        down_cooldown_s=config.down_cooldown_s,
    )

    def upstream_body(chat: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
        """The request as sent upstream: our model, the configured defaults under the request's own values.

        As in NeMo Gym, a row may carry per-sample `metadata.chat_template_kwargs` / `metadata.extra_body`
        (JSON strings, since metadata values are strings); they win over the config and the request.
        """
        overrides = {k: _json_field(metadata, k) for k in ("chat_template_kwargs", "extra_body")}
        chat["model"] = config.model
        template_kwargs = {**(config.chat_template_kwargs or {}), **(chat.get("chat_template_kwargs") or {}),
                           **overrides["chat_template_kwargs"]}
        if template_kwargs:
            chat["chat_template_kwargs"] = template_kwargs
        chat = {**(config.extra_body or {}), **chat, **overrides["extra_body"]}
        if config.return_token_id_information:
            chat.update(logprobs=True, top_logprobs=0, return_tokens_as_token_ids=True)
        return chat

    async def training_tokens(key: str, chat: dict[str, Any], completion: dict[str, Any]) -> dict[str, Any]:
        choice = convert_reply.first_choice(completion)
        generation, logprobs = convert_reply.generation_from_logprobs(choice)
        inline = convert_reply.inline_token_ids(completion, choice)
        if inline is not None:
            prompt = inline[0]
        else:  # the prompt as the upstream's chat template renders it, from the same upstream
            tokenize = {k: chat[k] for k in ("model", "messages", "tools", "chat_template_kwargs") if k in chat}
            reply = await pool.post(key, "/tokenize", tokenize, server_root=True)
            tokens = reply.json().get("tokens") if 200 <= reply.status < 300 else None  # type: ignore[union-attr]
            if not isinstance(tokens, list):
                raise convert_reply.MalformedReplyError(f"{reply.url} answered {reply.status} without `tokens`: "
                                                        f"{reply.body[:200].decode(errors='replace')}")
            prompt = tokens
        return convert_reply.token_bundle(prompt, generation, logprobs)

    def with_cookie(response: Response, key: str, minted: bool) -> Response:
        if minted:
            response.set_cookie(SESSION_COOKIE, key, httponly=True, samesite="lax")
        return response

    @router.post("/v1/responses")
    async def responses(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        try:
            chat = upstream_body(convert_request.responses_to_chat(body, options), body.get("metadata"))
        except convert_request.UnsupportedRequestError as e:
            return error_response(400, e.message, param=e.param)
        if config.return_token_id_information and chat.get("n") not in (None, 1):
            return error_response(400, "n: training mode (return_token_id_information) needs n=1", param="n")
        key = session_key(request, body)
        minted = key is None
        key = key or pool.new_session()
        try:
            reply = await pool.post(key, "/chat/completions", chat)
            if reply.status == 400 and any(h in reply.body.decode(errors="replace").lower() for h in CONTEXT_OVERFLOW_HINTS):
                completion: dict[str, Any] = convert_reply.empty_completion("length")  # the rollout ends as incomplete
                tokens = None
            elif reply.status != 200:
                return error_response(reply.status, f"upstream {reply.url} answered {reply.status}: "
                                                    f"{reply.body[:500].decode(errors='replace')}", kind="upstream_error")
            else:
                completion = reply.json()  # type: ignore[assignment]
                tokens = await training_tokens(key, chat, completion) if config.return_token_id_information else None
            response = convert_reply.chat_to_response(completion, body, model=config.model, tokens=tokens)
        except upstream.UpstreamError as e:
            return error_response(e.status, e.message, kind="upstream_error")
        except convert_reply.MalformedReplyError as e:
            return error_response(502, f"upstream reply could not be converted: {e}", kind="upstream_error")
        return with_cookie(Response(orjson.dumps(response), media_type="application/json"), key, minted)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        if body.get("stream"):
            return error_response(400, "stream: streaming is not supported; send stream=false (the default)", param="stream")
        if not isinstance(body.get("messages"), list):
            return error_response(400, "messages: a list of messages is required", param="messages")
        body["model"] = config.model
        key = session_key(request, body)
        minted = key is None
        key = key or pool.new_session()
        try:
            reply = await pool.post(key, "/chat/completions", body)
        except upstream.UpstreamError as e:
            return error_response(e.status, e.message, kind="upstream_error")
        return with_cookie(Response(reply.body, status_code=reply.status, media_type="application/json"), key, minted)

    app.include_router(router)
    return app
