"""Multi-host compose: one golden file per host, placements, registry prefixes, GPUs, and the bad-input errors."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from gymctl.compose.multihost import check_node, render_hosts
from gymctl.config import load_config
from gymctl.errors import ConfigError, UsageError
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG
from tests.unit.test_compose import check_golden

NODES = ["+gymctl.nodes.coordinator.address=10.0.0.1", "+gymctl.nodes.worker1.address=10.0.0.2"]


def example(*args: str):
    return load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], [*NODES, "+gymctl.instances.policy_model.node=worker1", *args], cwd=REPO)


@pytest.mark.parametrize("host", ["coordinator", "worker1"])
def test_example_multi_host_render_matches_golden(host, tmp_path):
    text = render_hosts(example("+gymctl.instances.policy_model.gpus=1"), registry="10.0.0.1:5000")[host].compose_yaml
    check_golden(f"example_multi-host_{host}.yml", text)
    if shutil.which("docker"):
        f = tmp_path / f"{host}.compose.yml"
        f.write_text(text)
        subprocess.run(["docker", "compose", "-f", str(f), "config", "-q"], check=True, timeout=30)


def test_placement_head_url_advertise_and_gpus():
    files = {h: yaml.safe_load(r.compose_yaml) for h, r in render_hosts(example("+gymctl.instances.policy_model.gpus=1")).items()}
    assert set(files["worker1"]["services"]) == {"policy_model"}
    assert "head" in files["coordinator"]["services"] and "policy_model" not in files["coordinator"]["services"]
    model = files["worker1"]["services"]["policy_model"]
    assert "GYMCTL_HEAD_URL=http://10.0.0.1:11000" in model["environment"] and "GYMCTL_ADVERTISE_HOST=10.0.0.2" in model["environment"]
    assert model["ports"] == ["10.0.0.2:11001:11001"] and model["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1
    assert files["coordinator"]["services"]["head"]["ports"] == ["10.0.0.1:11000:11000"]
    assert all("deploy" not in s for s in files["coordinator"]["services"].values())


def test_plain_names_warn_that_every_host_needs_the_images():
    rendered = render_hosts(example())
    assert any("every host needs them" in w for r in rendered.values() for w in r.warnings)


def test_instance_on_a_node_the_map_lacks():
    with pytest.raises(ConfigError, match="did you mean 'worker1'") as e:
        render_hosts(example("+gymctl.instances.example_single_tool_call.node=worker2"))
    assert "gymctl.instances.example_single_tool_call.node" in str(e.value)


def test_two_hosts_advertising_the_same_address_and_port():
    cfg = example("+gymctl.nodes.worker2.address=10.0.0.2", "+gymctl.instances.example_single_tool_call.node=worker2")
    with pytest.raises(ConfigError, match=r"both advertise 10\.0\.0\.2:11001"):
        render_hosts(cfg)


def test_unknown_node():
    with pytest.raises(UsageError, match="did you mean 'worker1'"):
        check_node(example(), "worker")
