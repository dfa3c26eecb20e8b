"""The head: registration and leases, NeMo Gym's instance shape, readiness, redacted global config."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from gymctl.config import load_config
from gymctl.head.app import create_head_app
from gymctl.head.registry import Registry
from tests.conftest import EXAMPLE_CONFIG, OPENAI_CONFIG, REPO

NEMO_GYM_FIELDS = {"process_name", "config_path", "server_type", "name", "dir_path", "entrypoint", "host", "port", "url", "pid", "status", "uptime_seconds", "start_time"}


def record(name: str, port: int, server_type: str = "resources_servers", impl: str = "x") -> dict:
    return {"process_name": name, "config_path": name, "server_type": server_type, "name": impl,
            "url": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port, "pid": 1}


def config():
    return load_config([EXAMPLE_CONFIG, OPENAI_CONFIG], ["+policy_base_url=http://u/v1", "+policy_api_key=sk-LEAK-ME", "+policy_model_name=m"], cwd=REPO)


def test_readiness_waits_for_every_expected_instance():
    cfg = config()
    client = TestClient(create_head_app(cfg))
    assert client.get("/livez").status_code == 200 and client.get("/").status_code == 200
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "starting"
    assert "policy_model" in r.json()["waiting_for"]
    for i, spec in enumerate(cfg.instances.values()):
        assert client.post("/register", json=record(spec.name, 9000 + i, spec.server_type, spec.impl)).status_code == 200
    for path in ("/health", "/healthz", "/readyz"):
        assert client.get(path).status_code == 200


def test_server_instances_have_nemo_gym_fields():
    client = TestClient(create_head_app(None))
    client.post("/register", json=record("a", 9001))
    [item] = client.get("/server_instances").json()
    assert set(item) >= NEMO_GYM_FIELDS
    assert item["status"] == "healthy" and item["port"] == 9001


def test_registration_with_bad_body_names_the_field():
    client = TestClient(create_head_app(None))
    bad = record("a", 9001)
    bad["port"] = "not-a-port"
    r = client.post("/register", json=bad)
    assert r.status_code == 422
    assert "port" in json.dumps(r.json())
    r = client.post("/register", json={"process_name": "a"})
    assert r.status_code == 422 and "url" in json.dumps(r.json())


def test_deregistration_removes_the_instance():
    client = TestClient(create_head_app(None))
    client.post("/register", json=record("a", 9001))
    client.post("/deregister", json={"process_name": "a", "url": "http://127.0.0.1:9001"})
    assert client.get("/server_instances").json() == []


def test_lease_expiry_marks_unhealthy_then_drops():
    reg = Registry(lease_s=6, drop_s=60)
    reg.register(record("a", 9001), now=1000.0)
    assert reg.instances(now=1005.0)[0]["status"] == "healthy"
    assert reg.instances(now=1007.0)[0]["status"] == "unhealthy"
    reg.register(record("a", 9001), now=1008.0)  # a heartbeat renews the lease
    assert reg.instances(now=1009.0)[0]["status"] == "healthy"
    assert reg.instances(now=1069.0) == []


def test_global_config_is_a_json_string_with_ports_filled_and_no_secret():
    cfg = config()
    client = TestClient(create_head_app(cfg))
    for i, spec in enumerate(cfg.instances.values()):
        client.post("/register", json=record(spec.name, 9100 + i, spec.server_type, spec.impl))
    r = client.get("/global_config_dict_yaml")
    text = json.loads(r.content)  # NeMo Gym clients do OmegaConf.create(json.loads(body))
    assert isinstance(text, str)
    assert "sk-LEAK-ME" not in r.text
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(OmegaConf.create(text))
    block = tree["example_single_tool_call"]["resources_servers"]["example_single_tool_call"]
    assert block["host"] == "127.0.0.1" and 9100 <= block["port"] < 9110
    assert tree["head_server"]["port"] == cfg.head_port
    assert "sk-LEAK-ME" not in json.dumps(client.get("/server_instances").json())


async def test_probe_reports_each_instance_as_the_head_sees_it():
    import asyncio

    from gymctl.head.probe import probe_all
    from gymctl.server.kit import new_app
    from gymctl.server.serving import bind_socket, make_server
    from tests.conftest import free_port

    app = new_app("x")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    sock = bind_socket("127.0.0.1", 0, "t")
    server = make_server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        up = record("up", sock.getsockname()[1])
        down = record("down", free_port())
        out = {p["process_name"]: p for p in await probe_all([up, down])}
        assert out["up"]["health"] == "healthy" and out["up"]["rtt_ms"] > 0
        assert out["down"] == {"process_name": "down", "url": down["url"], "health": "unreachable", "rtt_ms": None}
    finally:
        server.should_exit = True
        await task
