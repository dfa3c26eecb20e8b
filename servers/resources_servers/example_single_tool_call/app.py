"""example_single_tool_call: one tool (get_weather); reward 1.0 when the policy called it."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict

from gymctl.server import ServerKit, new_app

# Per-rollout state lives in the session cookie, so any worker process can answer any call (gymctl.instances.NAME.workers).
SESSION_STATE = "request"

SESSION_COOKIE = "gymctl_session"


class Config(BaseModel):
    """This server has no settings of its own; NeMo Gym's descriptive keys (domain, description, ...) pass."""

    model_config = ConfigDict(extra="allow")
    entrypoint: str = "app.py"


class GetWeatherRequest(BaseModel):
    city: str


class GetWeatherResponse(BaseModel):
    city: str
    weather_description: str


def reward_of(response: dict[str, Any]) -> float:
    """1.0 if any output item is a function call named get_weather."""
    output = response.get("output") or []
    items = output if isinstance(output, list) else []
    return float(any(isinstance(item, dict) and item.get("type") == "function_call" and item.get("name") == "get_weather" for item in items))


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)
    router = APIRouter()

    @router.post("/seed_session")
    async def seed_session(request: Request, response: Response) -> dict[str, Any]:
        # The example keeps no per-session state; the cookie shows how session state travels with a rollout.
        response.set_cookie(SESSION_COOKIE, request.cookies.get(SESSION_COOKIE) or uuid.uuid4().hex)
        return {}

    @router.post("/close_session")
    async def close_session() -> dict[str, Any]:
        return {}

    @router.post("/get_weather")
    async def get_weather(body: GetWeatherRequest) -> GetWeatherResponse:
        return GetWeatherResponse(city=body.city, weather_description=f"The weather in {body.city} is cold.")

    @router.post("/verify")
    async def verify(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            raise HTTPException(status_code=400, detail=f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
            raise HTTPException(status_code=422, detail=[{"loc": ["body", "response"], "msg": "Field required: the agent's final response object", "type": "missing"}])
        body["reward"] = reward_of(body["response"])
        return Response(orjson.dumps(body), media_type="application/json")

    @router.post("/aggregate_metrics")
    async def aggregate_metrics(rows: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        """NeMo Gym's shape ({verify_responses: [...]} -> agent_metrics, key_metrics, group_level_metrics)."""
        items = rows if isinstance(rows, list) else rows.get("verify_responses") or rows.get("rollouts") or []
        by_task: dict[Any, list[float]] = {}
        if not isinstance(items, list):
            raise HTTPException(status_code=422, detail="verify_responses must be a list of verify replies")
        for r in items:
            if isinstance(r, dict):
                reward, task = r.get("reward", 0.0), r.get("_ng_task_index")
                if isinstance(reward, bool) or not isinstance(reward, (int, float)):
                    raise HTTPException(status_code=422, detail=f"reward must be a number, not {type(reward).__name__}")
                by_task.setdefault(task if isinstance(task, (int, str)) else None, []).append(float(reward))
        rewards = [x for xs in by_task.values() for x in xs]
        n = len(rewards)
        mean = (sum(rewards) / n) if n else None
        agent = {"num_rollouts": n, "mean/reward": mean, "max/reward": max(rewards, default=None), "min/reward": min(rewards, default=None)}
        groups = [{"_ng_task_index": t, "num_rollouts": len(xs), "mean/reward": sum(xs) / len(xs)} for t, xs in by_task.items() if t is not None]
        return {
            "agent_metrics": agent, "key_metrics": {"mean/reward": mean}, "group_level_metrics": groups,
            "num_rollouts": n, "mean_reward": mean,  # flat copies for a quick look
        }

    app.include_router(router)
    return app
