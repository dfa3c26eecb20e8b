"""--topology ray's pure parts: actor names, what each instance asks Ray for, GCS addresses, Ray's version-mismatch text."""

from __future__ import annotations

import pytest

from gymctl.config.model import load_config
from gymctl.errors import ConfigError
from tests.conftest import EXAMPLE_CONFIG, IN_CI, SCRIPTED_CONFIG

__import__("ray") if IN_CI else pytest.importorskip("ray")  # in CI a missing Ray fails, never skips

from gymctl.ray.cluster import parse_address, version_mismatch  # noqa: E402 -- after the skip: it imports Ray
from gymctl.ray.topology import actor_name, ray_resources_of  # noqa: E402


def test_actors_are_named_after_their_instance_and_replica():
    assert actor_name("policy_model", 1) == "gymctl.policy_model"
    assert actor_name("policy_model", 3) == "gymctl.policy_model.3"


def test_gpus_and_custom_resources_are_what_the_actor_asks_for():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], ["++gymctl.instances.policy_model={gpus: 2, ray_resources: {model_node: 1}}"])
    assert ray_resources_of(cfg, "policy_model") == {"GPU": 2.0, "model_node": 1.0}
    assert ray_resources_of(cfg, "example_single_tool_call") == {}


def test_a_bad_ray_resources_value_is_a_config_error_with_its_key_path():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], ["++gymctl.instances.policy_model.ray_resources=[model_node]"])
    with pytest.raises(ConfigError, match=r"gymctl.instances.policy_model.ray_resources: \['model_node'\] is not a mapping of resource names"):
        ray_resources_of(cfg, "policy_model")


def test_gcs_addresses():
    assert parse_address("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert parse_address("10.0.0.5") == ("10.0.0.5", 6379)
    assert parse_address("auto") is None and parse_address("ray://10.0.0.5:10001") is None


def test_rays_version_mismatch_becomes_a_clear_error():
    ray_text = ("Version mismatch: The cluster was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n"
                "This process on node 10.0.0.2 was started with:\n    Ray: 2.59.1\n    Python: 3.12.1\n")
    e = version_mismatch("10.0.0.5:6379", RuntimeError(ray_text))
    assert e is not None and e.cluster == "Ray 2.60.0 on Python 3.11.7" and e.ours == "Ray 2.59.1 on Python 3.12.1"
    assert "same Ray and Python versions" in str(e)
    assert version_mismatch("10.0.0.5:6379", RuntimeError("something else")) is None


def test_gymctl_status_shows_a_node_column_when_instances_say_where_they_run():
    from rich.console import Console

    from gymctl.cli.status_cmd import _table
    from gymctl.status import DeploymentStatus, InstanceStatus

    def row(name: str, node: str | None) -> InstanceStatus:
        return InstanceStatus(name, "responses_api_models", "x", "http://10.0.0.7:1", "healthy", "healthy", 1.0, 0.5, node=node)

    def text(st: DeploymentStatus) -> str:
        console = Console(width=250, record=True)
        console.print(_table(st))
        return console.export_text()

    with_nodes = text(DeploymentStatus("http://h:1", True, [], [row("policy_model", "10.0.0.7 (ray node 1a2b3c4d)")]))
    assert "node" in with_nodes and "10.0.0.7 (ray node 1a2b3c4d)" in with_nodes
    assert "node" not in text(DeploymentStatus("http://h:1", True, [], [row("policy_model", None)]))
