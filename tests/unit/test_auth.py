"""Bearer-token auth: every path but the probes needs the token; 401 says why in one line; the token never leaks."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gymctl.config import load_config
from gymctl.head.app import create_head_app
from gymctl.server.auth import BearerAuthMiddleware, auth_headers, auth_token
from gymctl.server.kit import wrap_app
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG

TOKEN = "s3cret-Token-0123456789"


def server_app() -> FastAPI:
    app = FastAPI()

    @app.post("/verify")
    async def verify(body: dict) -> dict:
        return {"reward": 1.0, **body}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/")
    async def root() -> dict:
        return {"status": "ok"}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(wrap_app(server_app(), TOKEN))


def test_request_without_token_gets_401_with_one_line_reason(client):
    r = client.post("/verify", json={"x": 1})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    detail = r.json()["detail"]
    assert "missing Authorization header" in detail and "\n" not in detail
    assert "GYMCTL_AUTH_TOKEN" in detail


def test_wrong_token_gets_401_and_is_not_echoed(client):
    r = client.post("/verify", json={}, headers=auth_headers("not-the-token"))
    assert r.status_code == 401
    assert "wrong bearer token" in r.json()["detail"]
    assert "not-the-token" not in r.text and TOKEN not in r.text


def test_other_scheme_is_named(client):
    r = client.post("/verify", json={}, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401 and "not 'Bearer <token>'" in r.json()["detail"]
    assert TOKEN not in r.text


def test_right_token_passes_and_scheme_is_case_insensitive(client):
    assert client.post("/verify", json={"x": 1}, headers=auth_headers(TOKEN)).json() == {"reward": 1.0, "x": 1}
    assert client.post("/verify", json={}, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_a_token_prefix_or_extension_is_refused(client):
    for wrong in (TOKEN[:-1], TOKEN + "x", ""):
        assert client.post("/verify", json={}, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


def test_liveness_paths_stay_open(client):
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200


def test_head_requires_token_except_probes():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], [], cwd=REPO)
    head = TestClient(wrap_app(create_head_app(cfg), TOKEN))
    for path in ("/server_instances", "/global_config_dict_yaml"):
        assert head.get(path).status_code == 401
        assert head.get(path, headers=auth_headers(TOKEN)).status_code == 200
    assert head.post("/register", json={}).status_code == 401
    # Probes: liveness always 200; readiness answers (503: nothing registered) without the token.
    assert head.get("/livez").status_code == 200 and head.get("/").status_code == 200
    for path in ("/health", "/healthz", "/readyz"):
        assert head.get(path).status_code == 503


def _layers(app: object) -> list[object]:
    """The ASGI middleware chain of a served app, outermost first."""
    out = [app]
    while not isinstance(out[-1], FastAPI) and hasattr(out[-1], "app"):
        out.append(out[-1].app)
    return out


def test_no_token_means_no_auth():
    served = wrap_app(server_app(), None)  # limits (admission, body size) wrap the app; no auth among them
    assert not any(isinstance(layer, BearerAuthMiddleware) for layer in _layers(served))
    assert isinstance(_layers(served)[-1], FastAPI)
    assert TestClient(served).post("/verify", json={"x": 1}).status_code == 200
    assert auth_headers(None) == {}


def test_auth_token_reads_the_environment(monkeypatch):
    monkeypatch.delenv("GYMCTL_AUTH_TOKEN", raising=False)
    assert auth_token() is None
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "")
    assert auth_token() is None
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", TOKEN)
    assert auth_token() == TOKEN


def test_token_never_in_logs_or_repr(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/verify", json={}, headers=auth_headers("wrong"))
    client.post("/verify", json={}, headers=auth_headers(TOKEN))
    mw = wrap_app(server_app(), TOKEN)
    assert any(isinstance(layer, BearerAuthMiddleware) for layer in _layers(mw))  # inside the limits
    assert TOKEN not in repr(mw) and TOKEN not in caplog.text
