"""`gymctl render --monitoring`: the Prometheus service, its config (the head's http_sd endpoint) and the shipped rules; bad input."""

from __future__ import annotations

import yaml

from gymctl.compose.model import RenderSettings
from gymctl.compose.render import render
from gymctl.config import load_config
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG
from tests.unit.cli_runner import invoke

CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]


def rendered(topology: str, *sets: str) -> dict:
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], list(sets), cwd=REPO)
    return yaml.safe_load(render(cfg, topology, RenderSettings(project="p", monitoring=True, monitoring_port=19090)).compose_yaml)


def unescaped(text: str) -> str:
    return text.replace("$$", "$")  # compose's escape of a literal `$`


def test_separated_gets_prometheus_on_the_stack_network_scraping_through_the_head():
    doc = rendered("separated", "head_server.port=12000")
    prom = doc["services"]["prometheus"]
    assert prom["image"] == "gymctl/prometheus:latest" and prom["ports"] == ["127.0.0.1:19090:19090"]
    assert prom["networks"] == ["gymctl"] and prom["labels"]["io.gymctl.project"] == "p"
    config = yaml.safe_load(doc["configs"]["gymctl_prometheus"]["content"])
    [job] = config["scrape_configs"]
    assert job["http_sd_configs"][0]["url"] == "http://head:12000/prometheus_targets"
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"] and "authorization" not in job
    assert unescaped(doc["configs"]["gymctl_alerts"]["content"]) == (REPO / "monitoring/alerts.yml").read_text()
    assert "secrets" not in doc


def test_all_in_one_prometheus_shares_the_container_network_and_publishes_through_it():
    doc = rendered("all-in-one")
    prom = doc["services"]["prometheus"]
    assert prom["network_mode"] == "service:gymctl" and "ports" not in prom
    assert "127.0.0.1:19090:19090" in doc["services"]["gymctl"]["ports"]
    config = yaml.safe_load(doc["configs"]["gymctl_prometheus"]["content"])
    assert config["scrape_configs"][0]["http_sd_configs"][0]["url"] == "http://127.0.0.1:11000/prometheus_targets"


def test_monitoring_not_public_sends_the_token_from_a_secret_file_and_closes_metrics_on_every_server():
    doc = rendered("separated", "+gymctl.monitoring.public=false")
    assert doc["secrets"] == {"gymctl_auth_token": {"environment": "GYMCTL_AUTH_TOKEN"}}
    assert doc["services"]["prometheus"]["secrets"] == ["gymctl_auth_token"]
    job = yaml.safe_load(doc["configs"]["gymctl_prometheus"]["content"])["scrape_configs"][0]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/run/secrets/gymctl_auth_token"}
    assert job["http_sd_configs"][0]["authorization"] == job["authorization"]
    for name, service in doc["services"].items():
        if name != "prometheus":
            assert "GYMCTL_MONITORING_PUBLIC=0" in service["environment"], name


def test_without_the_flag_nothing_changes():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    doc = yaml.safe_load(render(cfg, "separated", RenderSettings(project="p")).compose_yaml)
    assert "prometheus" not in doc["services"] and "configs" not in doc


def test_bad_monitoring_settings_name_the_key():
    r = invoke("render", *CONFIG, "+gymctl.monitoring.public=maybe")
    assert r.code == 2 and "gymctl.monitoring.public: 'maybe' is not true or false" in r.err and "Traceback" not in r.err
    r = invoke("render", *CONFIG, "+gymctl.monitoring.pubic=false")
    assert r.code == 2 and "gymctl.monitoring: unknown setting(s) pubic (known: public)" in r.err


def test_monitoring_with_multi_host_says_what_to_do_instead():
    r = invoke("render", "-t", "multi-host", "-o", "/tmp/gymctl-i14-nowhere", "--monitoring", *CONFIG)
    assert r.code != 0 and "--monitoring adds Prometheus to an all-in-one or separated stack" in r.err and "Traceback" not in r.err
