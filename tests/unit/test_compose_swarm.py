"""Swarm stack render: the golden file, `docker stack config` accepts it, no compose-only key, GPUs, placement, secrets, config versions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gymctl.compose.swarm import SwarmSettings, render_swarm, secret_name
from gymctl.config import load_config
from gymctl.docker.swarm import write_stack
from gymctl.errors import ConfigError, UsageError
from tests.conftest import EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, SCRIPTED_CONFIG
from tests.unit.cli_runner import invoke
from tests.unit.test_compose import check_golden

AGENT = "example_single_tool_call_simple_agent"
REG = "gymctl-lab-registry:5000"
DIGEST = "sha256:" + "ab" * 32
# What the demo asks: the model on a GPU node (one fake GPU per task, two tasks), two resources replicas.
DEMO = ["+gymctl.instances.policy_model.gpus=1", "+gymctl.instances.policy_model.replicas=2",
        "+gymctl.instances.example_single_tool_call.replicas=2"]
# Keys docker stack deploy ignores or rejects (DESIGN.md "Swarm"); `restart`/`name` only where compose puts them.
COMPOSE_ONLY_SERVICE_KEYS = {"build", "depends_on", "container_name", "restart", "devices", "network_mode", "profiles", "pull_policy"}


def example(*args: str):
    return load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], [*DEMO, *args], cwd=REPO)


def settings(**kw) -> SwarmSettings:
    base = {"project": "demo", "registry": REG, "digests": {f"{REG}/gymctl/head:latest": DIGEST},
            "head_node": "gymctl-lab-node1", "node_addresses": {"gymctl-lab-node1": "172.30.0.3", "gymctl-lab-node2": "172.30.0.4"},
            "secrets": {"GYMCTL_AUTH_TOKEN": "demo_gymctl_auth_token_0123456789ab"}}
    return SwarmSettings(**{**base, **kw})


def doc_of(text: str) -> dict:
    return yaml.safe_load(text)


def keys_anywhere(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k)
            yield from keys_anywhere(v, (*path, k))
    elif isinstance(node, list):
        for v in node:
            yield from keys_anywhere(v, path)


def stack_config(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "stack", "config", "--compose-file", str(directory / "stack.yml")], capture_output=True, text=True,
                          cwd="/", timeout=60)


def test_example_swarm_stack_matches_golden():
    check_golden("example_swarm.yml", render_swarm(example(), settings()).stack_yaml)


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI validates stack files")
def test_docker_stack_config_accepts_the_stack_and_rejects_a_compose_devices_reservation(tmp_path):
    rendered = render_swarm(example(), settings())
    write_stack(tmp_path / "ok", rendered)
    r = stack_config(tmp_path / "ok")
    assert r.returncode == 0, r.stderr
    seen = yaml.safe_load(r.stdout)
    assert seen["services"]["policy_model"]["deploy"]["resources"]["reservations"]["generic_resources"] == [
        {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]
    # Each service's config beside the stack file, found from any cwd.
    assert {k: c["file"] for k, c in seen["configs"].items()} == {
        f"config_{name}": str(tmp_path / "ok" / "configs" / f"{name}.yaml") for name in seen["services"]}
    # The check means something: compose's GPU reservation is what Swarm refuses (docker/cli#3051).
    bad = doc_of(rendered.stack_yaml)
    bad["services"]["policy_model"]["deploy"]["resources"]["reservations"]["devices"] = [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    write_stack(tmp_path / "bad", rendered)
    (tmp_path / "bad" / "stack.yml").write_text(yaml.safe_dump(bad))
    r = stack_config(tmp_path / "bad")
    assert r.returncode != 0 and "devices" in r.stderr


@pytest.mark.parametrize("extra", [[], ["+gymctl.instances.policy_model.gpus=2", "+gymctl.instances.policy_model.publish=true"]])
def test_no_compose_only_key_appears(extra):
    rendered = render_swarm(example(*extra), settings())
    doc = doc_of(rendered.stack_yaml)
    assert doc["version"] == "3.8" and "name" not in doc
    for name, svc in doc["services"].items():
        assert not COMPOSE_ONLY_SERVICE_KEYS & set(svc), (name, COMPOSE_ONLY_SERVICE_KEYS & set(svc))
    assert not [p for p in keys_anywhere(doc) if p[-1] in ("devices", "depends_on", "build", "content")]
    assert all(set(c) == {"name", "file", "labels"} for c in doc["configs"].values())
    assert "depends_on" not in rendered.stack_yaml and "devices" not in rendered.stack_yaml


def test_services_are_dnsrr_published_in_host_mode_and_labelled_on_containers_and_services():
    doc = doc_of(render_swarm(example(), settings()).stack_yaml)
    services = doc["services"]
    assert set(services) == {"head", "example_single_tool_call", AGENT, "policy_model"}
    for name, svc in services.items():
        assert svc["deploy"]["endpoint_mode"] == "dnsrr"
        labels = {"io.gymctl.project": "demo", "io.gymctl.instance": name}
        assert svc["labels"] == labels and svc["deploy"]["labels"] == labels
        assert svc["deploy"]["restart_policy"]["condition"] == "any"
        assert svc["deploy"]["update_config"]["parallelism"] == 1 and "rollback_config" in svc["deploy"]
    assert services["head"]["ports"] == [{"target": 11000, "published": 11000, "protocol": "tcp", "mode": "host"}]
    assert services["head"]["deploy"]["placement"]["constraints"] == ["node.role == manager", "node.hostname == gymctl-lab-node1"]
    assert services[AGENT]["ports"] == [{"target": 8000, "published": 11002, "protocol": "tcp", "mode": "host"}]
    assert "ports" not in services["example_single_tool_call"] and "ports" not in services["policy_model"]
    assert doc["networks"]["gymctl"] == {"driver": "overlay", "attachable": True, "labels": {"io.gymctl.project": "demo"}}


def test_replicas_gpus_and_update_order():
    services = doc_of(render_swarm(example(), settings()).stack_yaml)["services"]
    model, resources = services["policy_model"]["deploy"], services["example_single_tool_call"]["deploy"]
    assert model["replicas"] == 2 and resources["replicas"] == 2
    assert model["placement"]["constraints"] == ["node.labels.gymctl.gpu == true"]
    assert model["resources"]["reservations"]["generic_resources"] == [{"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]
    assert model["update_config"]["order"] == "stop-first"  # a GPU task has nowhere to start beside its old self
    assert resources["update_config"]["order"] == "start-first"
    assert services[AGENT]["deploy"]["update_config"]["order"] == "stop-first"  # it holds its node's port


def test_images_are_pinned_by_digest_when_pushed_and_prefixed_by_the_registry():
    services = doc_of(render_swarm(example(), settings()).stack_yaml)["services"]
    assert services["head"]["image"] == f"{REG}/gymctl/head:latest@{DIGEST}"
    assert services["policy_model"]["image"] == f"{REG}/gymctl/scripted_model:latest"  # not pushed: by tag
    rendered = render_swarm(example(), settings(registry=None, digests={}))
    assert doc_of(rendered.stack_yaml)["services"]["head"]["image"] == "gymctl/head:latest"
    assert any("no registry" in w for w in rendered.warnings)
    with pytest.raises(UsageError, match="HOST:PORT"):
        render_swarm(example(), settings(registry="http://reg/x"))


def test_tasks_learn_their_address_and_published_agents_their_nodes():
    services = doc_of(render_swarm(example(), settings()).stack_yaml)["services"]
    agent = services[AGENT]
    script = agent["command"][2]
    assert agent["command"][:2] == ["sh", "-c"] and script.endswith('exec gymctl serve "$$GYMCTL_INSTANCE"')
    assert 'GYMCTL_ADVERTISE_HOST="$$(hostname -i' in script
    assert 'GYMCTL_HOST_URL="http://$${addr:-$$GYMCTL_NODE}:11002"' in script
    assert agent["environment"]["GYMCTL_NODE"] == "{{.Node.Hostname}}"
    assert agent["environment"]["GYMCTL_NODE_ADDRESSES"] == "gymctl-lab-node1=172.30.0.3 gymctl-lab-node2=172.30.0.4"
    assert "GYMCTL_HOST_URL" not in services["policy_model"]["command"][2]
    assert services["policy_model"]["environment"]["GYMCTL_HEAD_URL"] == "http://head:11000"
    assert services["policy_model"]["environment"]["GYMCTL_DRAIN_S"] == "2"  # a task leaving serves its stale callers first


def test_secrets_are_external_swarm_secrets_and_never_in_the_files():
    cfg = load_config([EXAMPLE_CONFIG, OPENAI_CONFIG], ["+policy_base_url=http://u/v1", "+policy_api_key=sk-LEAK-ME", "+policy_model_name=m"],
                      cwd=REPO)
    name = secret_name("demo", "GYMCTL_SECRET_POLICY_API_KEY", "sk-LEAK-ME")
    rendered = render_swarm(cfg, settings(secrets={"GYMCTL_SECRET_POLICY_API_KEY": name}))
    assert "sk-LEAK-ME" not in rendered.stack_yaml and "sk-LEAK-ME" not in name
    assert not [f for f, text in rendered.config_files.items() if "sk-LEAK-ME" in text]
    assert rendered.secret_env == {"GYMCTL_SECRET_POLICY_API_KEY": "sk-LEAK-ME"}
    doc = doc_of(rendered.stack_yaml)
    assert doc["secrets"] == {"gymctl_secret_policy_api_key": {"external": True, "name": name}}
    model = doc["services"]["policy_model"]
    assert model["secrets"] == ["gymctl_secret_policy_api_key"]
    assert 'export GYMCTL_SECRET_POLICY_API_KEY="$$(cat /run/secrets/gymctl_secret_policy_api_key)"' in model["command"][2]
    assert "policy_api_key: ${oc.env:GYMCTL_SECRET_POLICY_API_KEY}" in rendered.config_files["configs/policy_model.yaml"]  # not interpolated
    assert secret_name("demo", "V", "a") != secret_name("demo", "V", "b")  # immutable secrets: a new value is a new name


def configs_of(*args: str) -> dict[str, str]:
    """{service: the name of its versioned swarm config}."""
    stack = render_swarm(example(*args), settings()).stack
    names = {c.key: c.name for c in stack.configs}
    return {s.name: names[s.config] for s in stack.services}


def test_each_service_reads_its_own_versioned_swarm_config():
    a = configs_of()
    assert sorted(a) == sorted(["head", "example_single_tool_call", AGENT, "policy_model"]) and len(set(a.values())) == 4
    assert all(name.startswith(f"demo_{service}_") and len(name) <= 64 for service, name in a.items())
    assert a == configs_of()  # the same config, the same names: a redeploy rolls nothing
    # A changed server: its config and the head's (it serves the whole config) change; no other service's.
    b = configs_of("+example_single_tool_call.resources_servers.example_single_tool_call.description=changed")
    assert {s for s in a if a[s] != b[s]} == {"example_single_tool_call", "head"}
    # Replicas, GPUs and placement are the stack's deploy settings, read by no server: no config changes (scale rolls nothing).
    c = configs_of("+gymctl.instances.example_single_tool_call.replicas=3", f"+gymctl.instances.{AGENT}.node=gymctl-lab-node2")
    assert c == a


def test_a_service_config_has_its_own_blocks_and_stubs_of_the_others(tmp_path):
    from gymctl.runtime.serve import load_mounted

    rendered = render_swarm(example("+gymctl.instances.policy_model.runtime=gymctl"), settings())
    files = rendered.config_files
    agent = yaml.safe_load(files[f"configs/{AGENT}.yaml"])
    assert agent["example_single_tool_call"] == {"resources_servers": {"example_single_tool_call": {"entrypoint": "app.py"}}}
    assert agent[AGENT]["responses_api_agents"]["simple_agent"]["model_server"] == {"type": "responses_api_models", "name": "policy_model"}
    assert agent["example_single_tool_call_environment_server"]["environment_servers"]["legacy_agent"]["agent_server"]["name"] == AGENT
    assert agent["head_server"] == {"host": "head", "port": 11000} and agent["gymctl"] == {}
    model = yaml.safe_load(files["configs/policy_model.yaml"])
    assert model["gymctl"] == {"instances": {"policy_model": {"runtime": "gymctl"}}}  # what the server reads; not its gpus or replicas
    head = yaml.safe_load(files["configs/head.yaml"])
    assert head["example_single_tool_call"]["resources_servers"]["example_single_tool_call"]["description"] and "instances" not in head["gymctl"]
    write_stack(tmp_path, rendered)
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == sorted(f"{s.name}.yaml" for s in rendered.stack.services)
    for svc in rendered.stack.services:  # each loads as the container loads it, serving its instance
        cfg = load_mounted(str(tmp_path / "configs" / f"{svc.name}.yaml"), [], svc.instance)
        assert set(cfg.instances) == {"example_single_tool_call", AGENT, "example_single_tool_call_environment_server", "policy_model"}


def test_node_placement_by_hostname_or_label_and_bad_values():
    services = doc_of(render_swarm(example("+gymctl.instances.example_single_tool_call.node=zone=a",
                                           f"+gymctl.instances.{AGENT}.node=gymctl-lab-node2"), settings()).stack_yaml)["services"]
    assert services["example_single_tool_call"]["deploy"]["placement"]["constraints"] == ["node.labels.zone == a"]
    assert services[AGENT]["deploy"]["placement"]["constraints"] == ["node.hostname == gymctl-lab-node2"]
    with pytest.raises(ConfigError, match=r"gymctl.instances.policy_model.node: 'a b' is neither a node's hostname nor a node label"):
        render_swarm(example("+gymctl.instances.policy_model.node=a b"), settings())


def test_published_replicas_get_one_per_node():
    services = doc_of(render_swarm(example(f"+gymctl.instances.{AGENT}.replicas=2"), settings()).stack_yaml)["services"]
    assert services[AGENT]["deploy"]["placement"]["max_replicas_per_node"] == 1


def test_cli_render_writes_the_stack_and_its_config(tmp_path):
    out = invoke("render", "--topology", "swarm", "-o", str(tmp_path), "-p", "demo", "--registry", REG, "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG)
    assert out.code == 0, out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs", "stack.yml"]
    assert "docker stack deploy -c" in out.err
    doc = doc_of((tmp_path / "stack.yml").read_text())
    assert doc["services"]["head"]["image"] == f"{REG}/gymctl/head:latest"
    refused = invoke("render", "--topology", "swarm", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG)
    assert refused.code == 2 and "give --output DIR" in refused.err and "Traceback" not in refused.err


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI validates stack files")
def test_without_exec_the_stack_disables_every_healthcheck_the_images_have(tmp_path):
    rendered = render_swarm(example(), settings(healthcheck=False))
    services = doc_of(rendered.stack_yaml)["services"]
    assert all(s["healthcheck"] == {"disable": True} for s in services.values())
    write_stack(tmp_path, rendered)
    r = stack_config(tmp_path)
    assert r.returncode == 0, r.stderr
