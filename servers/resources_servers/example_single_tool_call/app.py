"""example_single_tool_call: one tool (get_weather); reward 1.0 when the policy called it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from pydantic import BaseModel, ConfigDict

from gymctl.server import ServerKit, new_app

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


class VerifyRequest(BaseModel):
    """The agent's run body plus the final `response`; every other key passes through to the reply."""

    model_config = ConfigDict(extra="allow")
    response: dict[str, Any]


def reward_of(response: dict[str, Any]) -> float:
    """1.0 if any output item is a function call named get_weather."""
    return float(any(item.get("type") == "function_call" and item.get("name") == "get_weather" for item in response.get("output") or []))


def create_app(config: Config, kit: ServerKit) -> FastAPI:
    app = new_app(kit.instance)
    router = APIRouter()
    sessions: set[str] = set()

    @router.post("/seed_session")
    async def seed_session(request: Request, response: Response) -> dict[str, Any]:
        sid = request.cookies.get(SESSION_COOKIE) or uuid.uuid4().hex
        sessions.add(sid)
        response.set_cookie(SESSION_COOKIE, sid)
        return {}

    @router.post("/close_session")
    async def close_session(request: Request) -> dict[str, Any]:
        sessions.discard(request.cookies.get(SESSION_COOKIE, ""))
        return {}

    @router.post("/get_weather")
    async def get_weather(body: GetWeatherRequest) -> GetWeatherResponse:
        return GetWeatherResponse(city=body.city, weather_description=f"The weather in {body.city} is cold.")

    @router.post("/verify")
    async def verify(body: VerifyRequest) -> dict[str, Any]:
        out = body.model_dump()
        out["reward"] = reward_of(body.response)
        return out

    @router.post("/aggregate_metrics")
    async def aggregate_metrics(rows: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
        items = rows if isinstance(rows, list) else rows.get("rollouts") or rows.get("verify_responses") or []
        rewards = [float(r.get("reward", 0.0)) for r in items if isinstance(r, dict)]
        n = len(rewards)
        return {"num_rollouts": n, "mean_reward": (sum(rewards) / n) if n else None, "num_reward_1": sum(1 for r in rewards if r == 1.0)}

    app.include_router(router)
    return app
