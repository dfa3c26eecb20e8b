"""Compose rendering: golden files, the root docker-compose.yml, secrets by name, publishing, GPUs, labels, aliases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gymctl.compose.model import RenderSettings
from gymctl.compose.render import render
from gymctl.config import load_config
from gymctl.errors import ConfigError, UsageError
from tests.conftest import EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, SCRIPTED_CONFIG

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("GYMCTL_REGEN_GOLDEN") == "1"
AGENT = "example_single_tool_call_simple_agent"


def example(*args: str):
    return load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], list(args), cwd=REPO)


def compose_of(text: str) -> dict:
    return yaml.safe_load(text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text)
    assert path.is_file(), f"{path} missing: run GYMCTL_REGEN_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), f"{name} drifted from the renderer; review and regenerate with GYMCTL_REGEN_GOLDEN=1"


@pytest.mark.parametrize("topology", ["separated", "all-in-one"])
def test_rendered_example_matches_golden(topology):
    check_golden(f"example_{topology}.yml", render(example(), topology).compose_yaml)


def test_root_docker_compose_yml_is_the_rendered_separated_example():
    text = render(example(), "separated").compose_yaml
    if REGEN:
        (REPO / "docker-compose.yml").write_text(text)
    assert (REPO / "docker-compose.yml").read_text() == text, "docker-compose.yml drifted: regenerate with GYMCTL_REGEN_GOLDEN=1"


def test_separated_stack_shape():
    doc = compose_of(render(example(), "separated").compose_yaml)
    services = doc["services"]
    # the alias (environment_servers/legacy_agent) is served by its agent's container: no container of its own
    assert set(services) == {"head", "example_single_tool_call", AGENT, "policy_model"}
    for name, svc in services.items():
        assert svc["labels"]["io.gymctl.project"] == "gymctl"
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["interval"] == "1s"
        env = dict(e.split("=", 1) for e in svc["environment"] if "=" in e)
        if name != "head":
            assert svc["depends_on"] == {"head": {"condition": "service_started"}}  # servers register once the head answers
            assert env["GYMCTL_HEAD_URL"] == "http://head:11000" and env["GYMCTL_ADVERTISE_HOST"] == name
            assert svc["labels"]["io.gymctl.instance"] == name
    assert "/livez" in " ".join(services["head"]["healthcheck"]["test"])
    assert services["head"]["ports"] == ["127.0.0.1:11000:11000"]
    assert services[AGENT]["ports"] == ["127.0.0.1:11002:8000"]
    assert "GYMCTL_HOST_URL=http://127.0.0.1:11002" in services[AGENT]["environment"]
    assert "ports" not in services["example_single_tool_call"] and "ports" not in services["policy_model"]
    assert doc["networks"]["gymctl"]["labels"] == {"io.gymctl.project": "gymctl"}
    assert all(s["image"].startswith("gymctl/") and "build" not in s for s in services.values())


def test_publish_true_publishes_an_internal_server_and_ports_follow_the_config():
    cfg = example("+gymctl.instances.policy_model.publish=true", f"+{AGENT}.responses_api_agents.simple_agent.port=23456")
    services = compose_of(render(cfg, "separated").compose_yaml)["services"]
    assert services[AGENT]["ports"] == ["127.0.0.1:23456:8000"]
    assert services["policy_model"]["ports"][0].endswith(":8000")


def test_secrets_travel_by_variable_name_only():
    cfg = load_config([EXAMPLE_CONFIG, OPENAI_CONFIG], ["+policy_base_url=http://u/v1", "+policy_api_key=sk-LEAK-ME", "+policy_model_name=m"], cwd=REPO)
    rendered = render(cfg, "separated")
    assert "sk-LEAK-ME" not in rendered.compose_yaml
    assert rendered.secret_env == {"GYMCTL_SECRET_POLICY_API_KEY": "sk-LEAK-ME"}
    svc = compose_of(rendered.compose_yaml)["services"]["policy_model"]
    assert "GYMCTL_SECRET_POLICY_API_KEY" in svc["environment"]  # a name, no value
    assert "POLICY_DROP_REASONING_ITEMS" in svc["environment"]  # ${oc.env:...} of the config, passed through
    # compose would interpolate `${...}`: the config's references are escaped as `$${...}`
    assert "policy_api_key: $${oc.env:GYMCTL_SECRET_POLICY_API_KEY}" in rendered.compose_yaml


def test_gpus_reserve_nvidia_devices_and_warn_without_the_runtime():
    cfg = example("+gymctl.instances.policy_model.gpus=2")
    rendered = render(cfg, "separated", RenderSettings(nvidia_runtime=False))
    devices = compose_of(rendered.compose_yaml)["services"]["policy_model"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]
    assert len(rendered.warnings) == 1 and "no NVIDIA runtime" in rendered.warnings[0] and "policy_model (gpus: 2)" in rendered.warnings[0]
    assert render(cfg, "separated", RenderSettings(nvidia_runtime=True)).warnings == []


def test_all_in_one_is_one_container_with_fixed_ports_published_for_head_and_agents():
    rendered = render(example("+head_server.port=12000"), "all-in-one")
    doc = compose_of(rendered.compose_yaml)
    (_name, svc), = doc["services"].items()
    assert svc["command"] == ["gymctl", "run"]
    assert svc["ports"] == ["127.0.0.1:12000:12000", "127.0.0.1:12002:12002"]
    handed = next(e for e in svc["environment"] if e.startswith("GYMCTL_CONFIG_YAML="))
    merged = yaml.safe_load(handed.partition("=")[2])
    assert merged[AGENT]["responses_api_agents"]["simple_agent"]["port"] == 12002
    assert merged["policy_model"]["responses_api_models"]["scripted_model"]["port"] == 12003


def test_project_name_is_used_everywhere():
    doc = compose_of(render(example(), "separated", RenderSettings(project="exp-7")).compose_yaml)
    assert doc["name"] == "exp-7"
    assert {s["labels"]["io.gymctl.project"] for s in doc["services"].values()} == {"exp-7"}


def test_unknown_topology_is_a_usage_error():
    with pytest.raises(UsageError, match="--topology 'kubernetes' is not known; choose one of: all-in-one, separated"):
        render(example(), "kubernetes")
    with pytest.raises(UsageError, match="--topology swarm writes a stack file"):
        render(example(), "swarm")


def test_bad_project_name_says_what_is_allowed():
    from gymctl.compose.model import project_name

    with pytest.raises(UsageError, match="use lowercase letters, digits"):
        project_name("---")


def test_instances_colliding_as_service_names_are_a_config_error(tmp_path):
    from gymctl.compose.model import build_stack

    cfg = example()
    cfg.instances["Policy_Model"] = cfg.instances["policy_model"]
    with pytest.raises(ConfigError, match="same compose service name policy_model"):
        build_stack(cfg, "separated")
