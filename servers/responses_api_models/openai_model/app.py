"""openai_model: the policy behind any OpenAI-compatible API; forwards Responses and Chat Completions."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gymctl.server import ServerKit, new_app
from gymctl.server.credentials import redact_text, split_credentials

# Stateless between calls: any worker process can serve any call.
SESSION_STATE = "request"

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")
    entrypoint: str = "app.py"
    openai_base_url: str = Field(description="upstream base URL, e.g. https://api.openai.com/v1")
    openai_api_key: str | None = None
    openai_model: str
    openai_default_headers: dict[str, str] = Field(default_factory=dict)
    max_retries: int = Field(default=4, ge=0)
    retry_backoff_s: float = 0.25
    timeout_s: float | None = 600.0


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)
    router = APIRouter()
    # Credentials in the URL become the one Authorization header (aiohttp refuses a URL's credentials beside
    # an Authorization header); as in the OpenAI SDK, they win over the API key. No error text names them.
    base, basic = split_credentials(config.openai_base_url.rstrip("/"))
    headers = {"Content-Type": "application/json", **config.openai_default_headers}
    if basic:
        headers["Authorization"] = basic
    elif config.openai_api_key:
        headers["Authorization"] = f"Bearer {config.openai_api_key}"
    timeout = aiohttp.ClientTimeout(total=config.timeout_s, sock_connect=10)

    async def forward(path: str, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise HTTPException(status_code=400, detail=f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise HTTPException(status_code=400, detail="request body must be a JSON object")
        body["model"] = config.openai_model
        data = orjson.dumps(body)
        url = base + path
        last = ""
        for attempt in range(config.max_retries + 1):
            if attempt:
                await asyncio.sleep(config.retry_backoff_s * 2 ** (attempt - 1))
            try:
                async with kit.session.post(url, data=data, headers=headers, timeout=timeout) as r:
                    payload = await r.read()
                    if r.status in (401, 403):
                        raise HTTPException(status_code=502, detail=f"upstream {url} refused the API key ({r.status}): "
                                                                    f"{redact_text(payload[:300].decode(errors='replace'))}; check policy_api_key")
                    if r.status in RETRY_STATUSES:
                        last = f"HTTP {r.status}: {payload[:200].decode(errors='replace')}"
                        continue
                    if r.status == 200:
                        try:
                            orjson.loads(payload)
                        except orjson.JSONDecodeError:
                            last = "malformed JSON from upstream"
                            continue
                    return Response(payload, status_code=r.status, media_type="application/json")
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
        raise HTTPException(status_code=502, detail=redact_text(f"upstream {url} failed after {config.max_retries + 1} attempts: {last}"))

    @router.post("/v1/responses")
    async def responses(request: Request) -> Response:
        return await forward("/responses", request)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await forward("/chat/completions", request)

    app.include_router(router)
    return app
