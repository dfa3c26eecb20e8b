"""/metrics on the head and every server: Prometheus text, in-process calls counted, per-type figures; /prometheus_targets."""

from __future__ import annotations

import aiohttp
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gymctl.config.model import load_config
from gymctl.head.app import create_head_app
from gymctl.head.registry import Registry
from gymctl.rollouts import CollectSpec
from gymctl.runtime import embedded, inprocess
from gymctl.server.kit import wrap_app
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, SCRIPTED_CONFIG

ROLLOUTS = 100


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value)]}; the parser raises on anything that is not Prometheus text."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))


async def scrape(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/metrics") as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
        return samples(await r.text())


async def test_after_rollouts_every_server_and_the_head_show_them_on_metrics(tmp_path):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    dep = await embedded.start_embedded(cfg)
    try:
        spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", num_repeats=ROLLOUTS // 5)
        result = await embedded.collect(spec, dep.head_url, cfg, start_if_absent=False)
        assert result.summary.written == ROLLOUTS
        async with aiohttp.ClientSession() as session:
            agent = await scrape(session, dep.servers[AGENT].url)
            resources = await scrape(session, dep.servers["example_single_tool_call"].url)
            model = await scrape(session, dep.servers["policy_model"].url)
            head = await scrape(session, dep.head_url)
    finally:
        await inprocess.stop(dep)
    assert total(agent, "gymctl_http_requests_total", route="/run", status="200") == ROLLOUTS
    assert total(agent, "gymctl_rollout_reward_count") == ROLLOUTS
    assert total(agent, "gymctl_rollout_steps_count") == ROLLOUTS
    assert total(agent, "gymctl_http_request_duration_seconds_count", route="/run") == ROLLOUTS
    # The agent reached the resources server and the model in-process (no socket): counted all the same.
    assert total(resources, "gymctl_http_requests_total", route="/verify", status="200") == ROLLOUTS
    assert total(resources, "gymctl_verify_reward_count") == ROLLOUTS
    assert total(resources, "gymctl_verify_reward_sum") == ROLLOUTS  # the scripted policy calls the tool: reward 1
    assert total(resources, "gymctl_tool_calls_total", tool="get_weather", status="200") >= ROLLOUTS
    assert total(model, "gymctl_upstream_calls_total", route="/v1/responses") >= ROLLOUTS
    assert total(model, "gymctl_http_requests_in_flight") == 0
    assert total(head, "gymctl_head_expected_instances") == total(head, "gymctl_head_registered_instances") >= 3
    assert total(head, "gymctl_head_registrations", status="healthy") >= 3
    assert {lab["gymctl_instance"] for lab, _ in head["gymctl_head_probe_up"]} >= {AGENT, "policy_model", "example_single_tool_call"}
    assert all(v == 1 for _, v in head["gymctl_head_probe_up"])
    assert all(v < 1.0 for _, v in head["gymctl_head_probe_rtt_seconds"])


def record(name: str, port: int, server_type: str = "resources_servers", **extra: object) -> dict:
    return {"process_name": name, "config_path": name, "server_type": server_type, "name": "x",
            "url": f"http://svc-{name}:{port}", "host": f"svc-{name}", "port": port, "pid": 1, **extra}


def test_prometheus_targets_lists_the_head_and_each_served_url_once():
    client = TestClient(create_head_app(None), base_url="http://head:11000")
    client.post("/register", json=record("tools", 8000))
    client.post("/register", json=record("agent", 8000, "responses_api_agents"))
    client.post("/register", json=record("env", 8000, "environment_servers", url="http://svc-agent:8000", alias_of="agent"))
    groups = client.get("/prometheus_targets").json()
    assert [g["targets"] for g in groups] == [["head:11000"], ["svc-agent:8000"], ["svc-tools:8000"]]
    assert groups[2]["labels"] == {"gymctl_instance": "tools", "gymctl_server_type": "resources_servers", "gymctl_impl": "x", "gymctl_status": "healthy"}


def test_unknown_paths_share_one_route_label_and_lease_expiries_are_counted():
    registry = Registry(lease_s=5.0, drop_s=60.0)
    client = TestClient(create_head_app(None, registry))
    for n in range(3):
        client.get(f"/no/such/path/{n}")
    client.post("/register", json=record("tools", 8000))
    client.get("/metrics")  # sees it healthy ...
    registry.entries[next(iter(registry.entries))].last_seen -= 10  # no heartbeat for 10 s
    found = samples(client.get("/metrics").text)  # ... then lapsed
    assert total(found, "gymctl_http_requests_total", route="unmatched", status="404") == 3
    assert total(found, "gymctl_head_lease_expiries_total") == 1
    assert total(found, "gymctl_head_instance_healthy", gymctl_instance="tools") == 0


def test_with_auth_on_metrics_and_targets_stay_open_unless_monitoring_is_not_public(monkeypatch):
    app = create_head_app(None)
    client = TestClient(wrap_app(app, "s3cret"))
    assert client.get("/metrics").status_code == 200 and client.get("/prometheus_targets").status_code == 200
    assert client.get("/server_instances").status_code == 401
    monkeypatch.setenv("GYMCTL_MONITORING_PUBLIC", "0")
    closed = TestClient(wrap_app(create_head_app(None), "s3cret"))
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_metrics_off_leaves_no_route(monkeypatch):
    monkeypatch.setenv("GYMCTL_METRICS", "0")
    assert TestClient(create_head_app(None)).get("/metrics").status_code == 404
