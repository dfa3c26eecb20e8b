"""The head accepts only scheme://host:port as a registered URL (no path, query, credentials): no request forging."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gymctl.head.app import create_head_app


def registration(url: str, **extra: object) -> dict[str, object]:
    return {"process_name": "policy_model", "server_type": "responses_api_models", "name": "openai_model",
            "url": url, "host": "10.0.0.5", "port": 8000, **extra}


@pytest.fixture
def head() -> TestClient:
    return TestClient(create_head_app(None))


@pytest.mark.parametrize(("url", "says"), [
    ("http://10.0.0.5:8000/admin/delete?all=1", "no path, query or fragment"),
    ("http://10.0.0.5:8000?x=1", "no path, query or fragment"),
    ("http://evil:pw@10.0.0.5:8000", "credentials"),
    ("http://10.0.0.5", "no port"),
    ("ftp://10.0.0.5:21", "https?://"),
    ("http://:8000", "no host"),
    ("http://10.0.0.5:99999", "not a URL"),
])
def test_bad_registered_urls_are_refused_with_the_reason(head, url, says):
    r = head.post("/register", json=registration(url))
    assert r.status_code == 422
    assert says in r.text
    assert head.get("/server_instances").json() == []


def test_host_url_is_checked_too(head):
    r = head.post("/register", json=registration("http://10.0.0.5:8000", host_url="http://127.0.0.1:9000/x"))
    assert r.status_code == 422 and "host_url" in r.text


def test_a_plain_url_registers_and_loses_its_trailing_slash(head):
    assert head.post("/register", json=registration("http://policy-model:8000/")).status_code == 200
    assert [i["url"] for i in head.get("/server_instances").json()] == ["http://policy-model:8000"]
    assert head.post("/register", json=registration("http://[::1]:8000")).status_code == 200
