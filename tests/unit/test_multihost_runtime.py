"""Multi-host rules that need no second host: remote references, advertised addresses, one URL per instance."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gymctl.config import load_config
from gymctl.errors import ConfigError, StartupError, WaitTimeoutError
from gymctl.head.app import create_head_app, expected_instances
from gymctl.head.registry import RegistrationConflict, Registry
from gymctl.runtime.addresses import bind_and_advertise, check_advertised, is_own_address
from gymctl.runtime.inprocess import RunningDeployment, wait_ready
from gymctl.server.registration import Registrar
from tests.conftest import REPO

EXAMPLES = REPO / "examples/multi-host"


def coordinator(tmp_path: Path, head: str = "10.0.0.1", model: str = "policy_model") -> Path:
    text = (EXAMPLES / "coordinator-config.yaml").read_text().replace("10.0.0.1", head).replace("name: policy_model", f"name: {model}")
    out = tmp_path / "coordinator.yaml"
    out.write_text(text)
    return out


def test_the_coordinators_reference_to_the_workers_model_is_expected_from_another_host(tmp_path):
    cfg = load_config([str(coordinator(tmp_path))], cwd=REPO)
    assert set(cfg.instances) == {"example_resources", "example_resources_simple_agent"}
    assert cfg.remote == {"policy_model": "responses_api_models"}
    assert expected_instances(cfg) == {"example_resources", "example_resources_simple_agent", "policy_model"}


def test_a_likely_typo_of_a_local_name_stays_an_error_with_a_hint(tmp_path):
    path = coordinator(tmp_path)
    path.write_text(path.read_text().replace("name: example_resources\n", "name: example_resource\n"))
    with pytest.raises(ConfigError, match="example_resource, which is not in the config; did you mean 'example_resources'"):
        load_config([str(path)], cwd=REPO)


def test_with_the_head_on_loopback_every_referenced_instance_must_be_in_the_config(tmp_path):
    with pytest.raises(ConfigError, match=r"policy_model, which is not in the config .*head on loopback"):
        load_config([str(coordinator(tmp_path, head="127.0.0.1"))], cwd=REPO)


def test_both_shipped_multi_host_examples_load():
    worker = load_config([str(EXAMPLES / "worker-config.yaml")], ["+policy_base_url=http://127.0.0.1:1/v1", "+policy_api_key=k", "+policy_model_name=m"], cwd=REPO)
    assert worker.head_url == "http://10.0.0.1:11000" and worker.instances["policy_model"].host == "10.0.0.2" and not worker.remote


@pytest.mark.parametrize(("config_host", "bind_env", "advertise_env", "head", "expected"), [
    ("10.0.0.2", None, "ignored", "10.0.0.1", ("10.0.0.2", "10.0.0.2")),  # the config's host first
    (None, None, "worker-7", "10.0.0.1", ("0.0.0.0", "worker-7")),  # then GYMCTL_ADVERTISE_HOST
    ("127.0.0.1", "0.0.0.0", "policy-model", "head", ("0.0.0.0", "policy-model")),  # a container: loopback gives way
    (None, None, None, "127.0.0.1", ("127.0.0.1", "127.0.0.1")),  # one host: loopback, as before
    ("0.0.0.0", None, None, "127.0.0.1", ("0.0.0.0", "127.0.0.1")),  # bound everywhere: the address routing to the head
])
def test_the_advertised_address_follows_config_host_then_env_then_the_route_to_the_head(config_host, bind_env, advertise_env, head, expected):
    assert bind_and_advertise(config_host, bind_env, advertise_env, head_host=head, head_port=11000) == expected


def test_loopback_advertised_to_a_head_on_another_host_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:
        check_advertised("policy_model", "policy_model.responses_api_models.openai_model", "127.0.0.1", "http://192.0.2.1:11000", "192.0.2.1")
    msg = str(e.value)
    assert "policy_model would advertise 127.0.0.1 to the head at http://192.0.2.1:11000, which is on another host" in msg
    assert "policy_model.responses_api_models.openai_model.host" in msg and "GYMCTL_ADVERTISE_HOST" in msg
    check_advertised("policy_model", "k", "127.0.0.1", "http://127.0.0.1:11000", "127.0.0.1")  # one host: fine


def test_own_addresses_are_told_from_other_hosts():
    assert is_own_address("127.0.0.1") and is_own_address("0.0.0.0") and is_own_address("localhost")
    assert not is_own_address("192.0.2.1")  # TEST-NET-1: never an address of this machine
    with pytest.raises(ConfigError, match="does not resolve"):
        is_own_address("no-such-host.invalid")


def test_the_head_refuses_a_url_another_instance_holds_but_not_an_alias_or_a_renewal():
    reg = Registry()
    base = {"process_name": "policy_model", "url": "http://10.0.0.2:9000", "server_type": "responses_api_models", "name": "openai_model",
            "host": "10.0.0.2", "port": 9000}
    assert reg.register(base) and not reg.register(base)
    with pytest.raises(RegistrationConflict, match=r"judge_model advertises http://10\.0\.0\.2:9000, which policy_model"):
        reg.register({**base, "process_name": "judge_model"})
    reg.register({**base, "process_name": "policy_alias", "alias_of": "policy_model"})  # an alias rides on its agent's URL


def test_the_heads_register_route_answers_409_and_readiness_names_remote_instances(tmp_path):
    from fastapi.testclient import TestClient

    cfg = load_config([str(coordinator(tmp_path))], cwd=REPO)
    client = TestClient(create_head_app(cfg))
    body = {"process_name": "policy_model", "server_type": "responses_api_models", "name": "openai_model", "url": "http://10.0.0.2:9000",
            "host": "10.0.0.2", "port": 9000}
    ready = client.get("/health")
    assert ready.status_code == 503 and ready.json()["expected_from_other_hosts"] == ["policy_model"]
    assert client.post("/register", json=body).status_code == 200
    clash = client.post("/register", json={**body, "process_name": "example_resources"})
    assert clash.status_code == 409 and "two hosts advertise the same address and port" in clash.json()["detail"]


async def test_waiting_for_a_head_that_never_answers_is_bounded_and_says_where_and_why(tmp_path):
    async def unreachable(path: str, body: dict) -> int:
        raise ConnectionRefusedError("connection refused")

    cfg = load_config([str(coordinator(tmp_path))], cwd=REPO)
    dep = RunningDeployment(config=cfg, head_url="http://192.0.2.1:11000")
    dep.registrar = Registrar(unreachable, [{"process_name": "policy_model", "url": "http://x:1"}], interval_s=0.05, head_url=dep.head_url)
    dep.registrar.start()
    try:
        with pytest.raises(WaitTimeoutError, match=r"registration with the head at http://192.0.2.1:11000: not after 0.3 s .*ConnectionRefusedError"):
            await wait_ready(dep, 0.3)
    finally:
        await dep.registrar.stop(deregister=False)


async def test_a_refusal_by_the_head_ends_the_wait_at_once():
    async def conflict(path: str, body: dict) -> int:
        return 409

    dep = RunningDeployment(config=None, head_url="http://192.0.2.1:11000")  # type: ignore[arg-type]
    dep.registrar = Registrar(conflict, [{"process_name": "judge_model", "url": "http://10.0.0.2:9000"}], interval_s=0.05, head_url=dep.head_url)
    dep.registrar.start()
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(StartupError, match=r"another instance already holds http://10\.0\.0\.2:9000"):
            await wait_ready(dep, 30)
        assert loop.time() - t0 < 5
    finally:
        await dep.registrar.stop(deregister=False)


def test_status_lists_instances_expected_from_another_host_until_they_register(tmp_path):
    import threading
    import time

    import uvicorn

    from tests.conftest import free_port
    from tests.unit.cli_runner import invoke

    cfg = load_config([str(coordinator(tmp_path))], cwd=REPO)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_head_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        result = invoke("status", "--head", f"http://127.0.0.1:{port}")
        assert result.code == 1  # not ready: the head waits for them
        assert "policy_model" in result.out and "expected from another host" in result.out
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(("image", "registry"), [
    ("gymctl/head:latest", False), ("gymctl-lab-registry:5000/gymctl/head:latest", True), ("10.0.0.1:5000/gymctl/x", True),
    ("registry.example.com/gymctl/x:1", True), ("localhost/gymctl/x", True), ("head", False),
])
def test_images_named_by_a_registry_are_left_for_the_engine_to_pull(image, registry):
    from gymctl.docker.waiter import from_registry

    assert from_registry(image) is registry


def test_a_remote_engine_is_not_asked_about_ports_on_this_machine(monkeypatch):
    from gymctl.docker.docker_backend import DockerBackend

    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.7:2375")
    assert DockerBackend().port_free("192.0.2.7", 11000)  # not an address here: a local bind would say "taken"
    monkeypatch.delenv("DOCKER_HOST")
    assert not DockerBackend().port_free("192.0.2.7", 11000)
