"""`curl /metrics` on the head and each server of a separated deployment (one process each), after 500 rollouts through them."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG, http_json, start_deployment, stop_deployment

ROLLOUTS = 500


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):  # raises on anything that is not Prometheus text
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))


def test_separated_processes_each_count_the_500_rollouts_they_served(tmp_path):
    dep = start_deployment(["--topology", "separated", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path, timeout=60)
    try:
        out = tmp_path / "out.jsonl"
        r = subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", dep.head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA),
                            "--output", str(out), "--num-repeats", str(ROLLOUTS // 5)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        urls = {i["process_name"]: i["url"] for i in http_json(dep.head_url + "/server_instances")[1]}  # type: ignore[union-attr]
        agent, tools, model = (scrape(urls[n]) for n in (AGENT, "example_single_tool_call", "policy_model"))
        head = scrape(dep.head_url)
    finally:
        stop_deployment(dep)
    assert total(agent, "gymctl_http_requests_total", route="/run", status="200") == ROLLOUTS
    assert total(agent, "gymctl_rollout_reward_count") == ROLLOUTS and total(agent, "gymctl_rollout_reward_sum") == ROLLOUTS
    assert total(agent, "gymctl_rollout_reward_bucket", le="1.0") == ROLLOUTS
    assert total(tools, "gymctl_http_requests_total", route="/verify", status="200") == ROLLOUTS
    assert total(tools, "gymctl_verify_reward_count") == ROLLOUTS
    assert total(model, "gymctl_http_requests_total", route="/v1/responses") >= 2 * ROLLOUTS
    assert total(head, "gymctl_head_registered_instances") == total(head, "gymctl_head_expected_instances")
    assert {lab["gymctl_instance"] for lab, v in head["gymctl_head_probe_up"] if v == 1} >= {AGENT, "example_single_tool_call", "policy_model"}


def test_gymctl_run_with_monitoring_not_public_asks_for_the_token_on_metrics_and_ui(tmp_path):
    token = "i14-run-token"
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "+gymctl.monitoring.public=false"], tmp_path,
                           env={"GYMCTL_AUTH_TOKEN": token})
    try:
        agent_url = next(i["url"] for i in http_json(dep.head_url + "/server_instances", headers={"Authorization": f"Bearer {token}"})[1]
                         if i["process_name"] == AGENT)  # type: ignore[union-attr]
        for url in (dep.head_url + "/metrics", dep.head_url + "/ui", dep.head_url + "/prometheus_targets", agent_url + "/metrics"):
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code == 401, url
            else:
                raise AssertionError(f"{url} answered without the token")
        request = urllib.request.Request(agent_url + "/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200
        assert http_json(dep.head_url + "/health")[0] == 200  # the probes stay open
    finally:
        stop_deployment(dep)
