"""Local runtimes with auth off: registration needs the head's registration token; reads stay open (NeMo Gym's clients)."""

from __future__ import annotations

import os
import stat

import httpx
import pytest

from gymctl.config import load_config
from gymctl.head.registration_token import read_registration_token, registration_token_path
from gymctl.runtime import inprocess
from gymctl.server.settings import ServerSettings
from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, free_port

FORGED = {"process_name": AGENT, "server_type": "responses_api_agents", "name": "simple_agent", "url": "http://127.0.0.1:9",
          "host": "127.0.0.1", "port": 9}


@pytest.fixture
def no_tokens(tmp_path, monkeypatch):
    """Auth off and no token handed down: the head makes its own registration token (in a runtime dir of this test's)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("GYMCTL_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("GYMCTL_REGISTRATION_TOKEN", raising=False)


@pytest.fixture
def deployment(no_tokens, example_deployment):
    return example_deployment


async def test_nobody_registers_a_url_under_a_healthy_name_without_the_token(deployment):
    async with httpx.AsyncClient(base_url=deployment.head_url) as c:
        r = await c.post("/register", json=FORGED)
        assert r.status_code == 401
        assert (await c.post("/deregister", json={"process_name": AGENT})).status_code == 401
        instances = (await c.get("/server_instances")).json()  # reads stay open
        assert {i["process_name"] for i in instances} >= {AGENT} and all(i["url"] != FORGED["url"] for i in instances)
        assert (await c.get("/global_config_dict_yaml")).status_code == 200 and (await c.get("/health")).status_code == 200
        token = read_registration_token(deployment.head_url)  # what `gymctl serve` on this host finds
        assert token
        ok = await c.post("/register", json={**FORGED, "process_name": "by_hand"}, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


async def test_the_token_file_is_readable_by_its_owner_only(deployment):
    path = registration_token_path(deployment.config.head_port)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_with_an_auth_token_there_is_no_separate_registration_token(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    cfg.head_port = free_port()
    dep = await inprocess.start(cfg, settings=ServerSettings(heartbeat_s=0.2, auth_token="the-auth-t0ken"))
    try:
        await inprocess.wait_ready(dep)
        assert read_registration_token(dep.head_url) is None
        async with httpx.AsyncClient(base_url=dep.head_url) as c:
            assert (await c.get("/server_instances")).status_code == 401
    finally:
        await inprocess.stop(dep)
