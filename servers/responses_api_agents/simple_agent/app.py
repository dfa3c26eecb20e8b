"""simple_agent: the multi-step rollout loop (model -> tools -> model ...), seeded and verified per run."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gymctl.server import GymctlError, ReplicaLostError, ServerKit, new_app

# A rollout's state travels with its /run (cookies relayed per call): any worker process can serve it.
SESSION_STATE = "request"


class ServerRef(BaseModel):
    type: str
    name: str


class Config(BaseModel):
    model_config = ConfigDict(extra="allow")
    entrypoint: str = "app.py"
    resources_server: ServerRef
    model_server: ServerRef
    max_steps: int = Field(default=16, ge=1, description="model calls per rollout before it stops as incomplete")
    model_timeout_s: float | None = None


def _as_input_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise HTTPException(status_code=422, detail=[{"loc": ["body", "input"], "msg": "input must be a string or a list of objects", "type": "type_error"}])
    return list(value)


# A model server's 4xx is about the request the agent passed on (the task's own fields): the caller's to fix.
CALLER_STATUSES = frozenset({400, 413, 422})


def _tool_output(status: int, body: bytes) -> str:
    """What the model sees from a tool: its reply, or an error it can read (never an exception)."""
    text = body.decode(errors="replace")
    if 200 <= status < 300:
        return text
    return orjson.dumps({"error": f"tool call failed with HTTP {status}", "detail": text[:2000]}).decode()


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)

    @app.exception_handler(ReplicaLostError)
    async def replica_lost(request: Request, e: ReplicaLostError) -> JSONResponse:
        return JSONResponse({"detail": str(e), "error": "ReplicaLostError"}, status_code=503)

    @app.exception_handler(GymctlError)
    async def peer_failed(request: Request, e: GymctlError) -> JSONResponse:
        # A peer unreachable or lost mid-call (a worker killed, its link cut): the rollout fails with the reason, typed.
        return JSONResponse({"detail": str(e), "error": type(e).__name__}, status_code=502)
    router = APIRouter()
    client = kit.client
    model_name = config.model_server.name
    resources_name = config.resources_server.name

    rollouts = itertools.count()  # one affinity key per rollout: its calls stay on the replicas that seeded it

    async def loop(params: dict[str, Any], cookies: dict[str, str], affinity: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Call the model with input + outputs so far; run each function call; stop on no call or max_steps."""
        base_input = _as_input_list(params.get("input"))
        new_outputs: list[dict[str, Any]] = []
        model_cookies: dict[str, str] = {}
        response: dict[str, Any] = {}
        usage_total: dict[str, int] = {}
        for step in range(1, config.max_steps + 1):
            body = {**params, "input": base_input + new_outputs}
            r = await client.post(model_name, "/v1/responses", json=body, cookies=model_cookies or None, timeout=config.model_timeout_s, affinity=affinity)
            if r.status != 200:
                raise HTTPException(status_code=r.status if r.status in CALLER_STATUSES else 502,
                                    detail=f"model server {model_name} answered {r.status}: {r.body[:500].decode(errors='replace')}")
            model_cookies.update(r.cookies)
            response = r.json()
            if not isinstance(response, dict) or not isinstance(response.get("output") or [], list):
                raise HTTPException(status_code=502, detail=f"model server {model_name} answered 200 with a body that is not a Responses object")
            output = [item for item in response.get("output") or [] if isinstance(item, dict)]
            new_outputs.extend(output)
            for k, v in (response.get("usage") or {}).items():
                if isinstance(v, int):
                    usage_total[k] = usage_total.get(k, 0) + v
            calls = [item for item in output if item.get("type") == "function_call"]
            if not calls:
                break
            for call in calls:
                name = call.get("name") or ""
                try:
                    args = orjson.loads(call.get("arguments") or "{}")
                except orjson.JSONDecodeError as e:
                    text = orjson.dumps({"error": f"arguments are not valid JSON: {e}"}).decode()
                else:
                    try:
                        tr = await client.post(resources_name, f"/{name}", json=args, cookies=cookies or None, affinity=affinity)
                        cookies.update(tr.cookies)
                        text = _tool_output(tr.status, tr.body)
                    except ReplicaLostError:
                        raise  # the session's state went with that replica: fail the rollout (a rerun retries it)
                    except GymctlError as e:
                        text = orjson.dumps({"error": str(e)}).decode()
                new_outputs.append({"type": "function_call_output", "call_id": call.get("call_id"), "output": text})
            if step == config.max_steps:
                response["status"] = "incomplete"
                response["incomplete_details"] = {"reason": "max_steps"}
        response["output"] = new_outputs
        if usage_total:
            response["usage"] = {**(response.get("usage") or {}), **usage_total}
        return response, cookies

    @router.post("/v1/responses")
    async def responses(request: Request) -> dict[str, Any]:
        params = await _json_body(request)
        if not isinstance(params, dict):
            raise HTTPException(status_code=422, detail=[{"loc": ["body"], "msg": "the body must be a JSON object (Responses create params)", "type": "type_error"}])
        response, _ = await loop(params, dict(request.cookies), request.headers.get("cookie") or f"r{next(rollouts)}")
        return response

    @router.post("/run")
    async def run(request: Request) -> Response:
        row = await _json_body(request)
        params = row.get("responses_create_params") if isinstance(row, dict) else None
        if not isinstance(params, dict):
            # Checked by hand, not by a pydantic model: the row is passed on untouched, so no copy of it is made.
            raise HTTPException(status_code=422, detail=[{"loc": ["body", "responses_create_params"],
                                                          "msg": "Field required: a task row needs responses_create_params (a JSON object)",
                                                          "type": "missing"}])
        affinity = f"r{next(rollouts)}"
        seed = await client.post(resources_name, "/seed_session", json=row, affinity=affinity)
        if not seed.ok:
            raise HTTPException(status_code=502, detail=f"{resources_name} /seed_session answered {seed.status}: {seed.body[:300].decode(errors='replace')}")
        cookies = dict(seed.cookies)
        response, cookies = await loop(params, cookies, affinity)
        verify = await client.post(resources_name, "/verify", json={**row, "response": response}, cookies=cookies or None, affinity=affinity)
        if not verify.ok:
            raise HTTPException(status_code=502, detail=f"{resources_name} /verify answered {verify.status}: {verify.body[:300].decode(errors='replace')}")
        return Response(verify.body, media_type="application/json")

    @router.post("/aggregate_metrics")
    async def aggregate_metrics(request: Request) -> Any:
        r = await client.post(resources_name, "/aggregate_metrics", json=await _json_body(request))
        return Response(r.body, status_code=r.status, media_type="application/json")

    app.include_router(router)
    return app


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise HTTPException(status_code=400, detail=f"request body is not valid JSON: {e}") from None
