"""Secrets redacted by value as well as by key name: the head's replies, model-server errors, URLs with credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.upstream_stub import StubThread
from gymctl.config import load_config
from gymctl.config.redact import redact, secret_paths
from gymctl.head.app import create_head_app
from gymctl.server import ServerClient, ServerKit
from gymctl.server.credentials import redact_text, redact_url, split_credentials
from gymctl.server.loader import load_module
from tests.conftest import REPO, SCRIPTED_CONFIG, free_port

PASS = "Hunter2-pw"  # a password that must never be shown


@pytest.mark.parametrize(("url", "shown"), [
    (f"http://user:{PASS}@host:8000/v1", "http://user:<redacted>@host:8000/v1"),
    (f"postgres://u:{PASS}@db.example/x", "postgres://u:<redacted>@db.example/x"),
    (f"https://hooks.example/h?id=3&sig={PASS}", "https://hooks.example/h?id=3&sig=<redacted>"),
    (f"https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature={PASS}",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
])
def test_urls_lose_their_secrets_and_keep_the_rest(url, shown):
    assert redact_url(url) == shown


def test_free_text_keeps_its_words_and_loses_credentials():
    text = f"upstream http://u:{PASS}@h:1/v1/responses failed; sent Authorization: Bearer {PASS}"
    out = redact_text(text)
    assert PASS not in out and "http://u:<redacted>@h:1/v1/responses failed" in out


def test_tree_redaction_by_key_name_and_by_value():
    tree = {
        "policy_base_url": f"http://user:{PASS}@host/v1",
        "svc": {"x": {"api-key": PASS, "db_pwd": PASS, "dsn": f"postgres://u:{PASS}@db/x", "webhook_url": f"https://h/x?sig={PASS}",
                      "max_tokens": 100, "token_id_capture": True, "monkey": 4, "urls": [f"http://a:{PASS}@b:1"]}},
    }
    out = redact(tree)
    assert PASS not in json.dumps(out)
    assert out["policy_base_url"] == "http://user:<redacted>@host/v1"
    assert out["svc"]["x"]["max_tokens"] == 100 and out["svc"]["x"]["token_id_capture"] is True and out["svc"]["x"]["monkey"] == 4
    paths = secret_paths(tree)
    assert {"policy_base_url", "svc.x.api-key", "svc.x.db_pwd", "svc.x.dsn", "svc.x.webhook_url", "svc.x.urls[0]"} <= set(paths)
    assert "svc.x.max_tokens" not in paths


def test_head_serves_no_credentials_from_urls_nor_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("I15_UPSTREAM", f"http://user:{PASS}@upstream:9/v1")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\n"
                        f"policy_base_url: http://user:{PASS}@host/v1\n"
                        "other_url: ${oc.env:I15_UPSTREAM}\n"
                        "policy_model:\n  responses_api_models:\n    scripted_model:\n"
                        f"      dsn: postgres://u:{PASS}@db/x\n      db_pwd: {PASS}\n      api-key: {PASS}\n")
    config = load_config([str(cfg_file)], cwd=tmp_path)
    head = TestClient(create_head_app(config))
    text = json.loads(head.get("/global_config_dict_yaml").text)
    assert PASS not in text
    assert "http://user:<redacted>@host/v1" in text and "http://user:<redacted>@upstream:9/v1" in text


def _openai_model(base_url: str, api_key: str | None):
    module = load_module(REPO / "servers/responses_api_models/openai_model", "app.py", "responses_api_models", "openai_model")
    kit = ServerKit(instance="policy_model", server_type="responses_api_models", impl="openai_model", client=ServerClient(None))
    app = module.create_app(module.Config(openai_base_url=base_url, openai_api_key=api_key, openai_model="m", max_retries=0), kit)
    return app, kit


async def test_openai_model_with_credentials_in_the_url_and_an_api_key_calls_upstream():
    with StubThread() as stub:
        host_port = stub.url.split("://", 1)[1].split("/", 1)[0]
        app, kit = _openai_model(f"http://user:{PASS}@{host_port}/v1", "sk-also-set")
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
                r = await c.post("/v1/responses", json={"input": "hi"})
            assert r.status_code == 200, r.text
            sent = stub.requests()["last"][-1]["authorization"]
            assert sent == "Basic " + base64.b64encode(f"user:{PASS}".encode()).decode()
        finally:
            await kit.client.close()


async def test_openai_model_error_names_the_upstream_without_its_password():
    app, kit = _openai_model(f"http://user:{PASS}@127.0.0.1:{free_port()}/v1", "sk-x")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
            r = await c.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 502
        assert "127.0.0.1" in r.text and PASS not in r.text and "user:" not in r.text
    finally:
        await kit.client.close()


def test_basic_credentials_are_split_from_the_url():
    url, header = split_credentials("http://a%40b:p%3Aw@h:1/v1")
    assert url == "http://h:1/v1"
    assert base64.b64decode(header.split()[1]).decode() == "a@b:p:w"
    assert split_credentials("http://h:1/v1") == ("http://h:1/v1", None)
