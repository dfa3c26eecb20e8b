"""Swarm bad input before anything deploys: not a manager, GPU requests and labels no node satisfies, a foreign stack of that name,
a task left pending by Swarm; and `gymctl scale`'s argument checks (fake engine, no Docker)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from gymctl.compose.swarm import SwarmSettings, render_swarm
from gymctl.config import load_config
from gymctl.docker import swarm_tasks
from gymctl.docker.swarm import (
    NotASwarmManagerError,
    StackClashError,
    Swarm,
    SwarmNode,
    SwarmPlacementError,
    _node,
    check_placement,
    check_stack_name,
    manager_client,
)
from gymctl.docker.swarm_tasks import TaskRow, _pending_error
from gymctl.errors import UsageError
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG
from tests.unit.cli_runner import invoke


def node(name: str, *, gpus: int = 0, labels: dict[str, str] | None = None, role: str = "worker", state: str = "ready") -> SwarmNode:
    return SwarmNode(name, f"10.0.0.{name[-1]}", role, state, "active", labels or {}, {"NVIDIA-GPU": gpus} if gpus else {}, f"id-{name}")


def lab(*, gpu_label: bool = True) -> Swarm:
    nodes = [node("node1", gpus=2, labels={"gymctl.gpu": "true"} if gpu_label else {}, role="manager"), node("node2"), node("node3")]
    return Swarm(nodes[0], nodes)


def rendered(*args: str):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], list(args), cwd=REPO)
    return render_swarm(cfg, SwarmSettings(project="demo"))


class FakeClient:
    def __init__(self, swarm: dict, services: list | None = None) -> None:
        self._swarm = swarm
        self.api = SimpleNamespace(base_url="tcp://10.0.0.1:2375")
        self.services = SimpleNamespace(list=lambda filters=None: services or [])

    def info(self) -> dict:
        return {"Swarm": self._swarm}


def test_an_engine_outside_a_swarm_is_told_how_to_init():
    with pytest.raises(NotASwarmManagerError, match=r"tcp://10.0.0.1:2375 is not part of a swarm \(swarm: inactive\); `docker swarm init`"):
        manager_client(FakeClient({"LocalNodeState": "inactive"}))
    with pytest.raises(NotASwarmManagerError, match="is a swarm worker, not a manager"):
        manager_client(FakeClient({"LocalNodeState": "active", "ControlAvailable": False}))
    ok = FakeClient({"LocalNodeState": "active", "ControlAvailable": True})
    assert manager_client(ok) is ok


def test_the_issues_demo_fits_the_lab():
    check_placement(rendered("+gymctl.instances.policy_model.gpus=1", "+gymctl.instances.policy_model.replicas=2"), lab())


def test_more_gpus_than_any_node_offers_says_which_constraint():
    with pytest.raises(SwarmPlacementError) as e:
        check_placement(rendered("+gymctl.instances.policy_model.gpus=1", "+gymctl.instances.policy_model.replicas=3"), lab())
    msg = str(e.value)
    assert "policy_model asks for 3 task(s) with 1 NVIDIA-GPU each on nodes with node.labels.gymctl.gpu == true" in msg
    assert "room for 2 (NVIDIA-GPU per node: node1: 2)" in msg and "lower gymctl.instances.NAME.gpus or .replicas" in msg
    with pytest.raises(SwarmPlacementError, match="room for 0"):
        check_placement(rendered("+gymctl.instances.policy_model.gpus=3"), lab())


def test_gpus_without_a_labelled_gpu_node_say_how_to_label_one():
    with pytest.raises(SwarmPlacementError, match=r"policy_model needs a node with label gymctl.gpu=true .*docker node update --label-add gymctl.gpu=true NODE"):
        check_placement(rendered("+gymctl.instances.policy_model.gpus=1"), lab(gpu_label=False))


def test_a_node_label_that_does_not_exist_is_refused_with_the_labels_there_are():
    with pytest.raises(SwarmPlacementError) as e:
        check_placement(rendered("+gymctl.instances.example_single_tool_call.node=zone=a"), lab())
    assert "example_single_tool_call needs a node with label zone=a" in str(e.value)
    assert "labels on the nodes: gymctl.gpu=true" in str(e.value) and "docker node update --label-add zone=a NODE" in str(e.value)


def test_a_hostname_typo_gets_did_you_mean():
    with pytest.raises(SwarmPlacementError, match=r"on node 'nod2', which is not a ready, active node .*did you mean 'node2'"):
        check_placement(rendered("+gymctl.instances.policy_model.node=nod2"), lab())


def test_a_down_or_drained_node_does_not_count():
    gpu = node("node2", gpus=2, labels={"gymctl.gpu": "true"})
    gpu.availability = "drain"
    swarm = Swarm(node("node1", role="manager"), [node("node1", role="manager"), gpu])
    with pytest.raises(SwarmPlacementError, match=r"gymctl\.gpu=true"):
        check_placement(rendered("+gymctl.instances.policy_model.gpus=1"), swarm)


def test_a_foreign_stack_of_that_name_is_refused():
    foreign = SimpleNamespace(name="demo_web", attrs={"Spec": {"Labels": {"com.docker.stack.namespace": "demo"}}})
    ours = SimpleNamespace(name="demo_head", attrs={"Spec": {"Labels": {"io.gymctl.project": "demo"}}})
    with pytest.raises(StackClashError, match=r"a stack named 'demo' already runs on this swarm and is not gymctl's \(services: demo_web\)"):
        check_stack_name(FakeClient({}, [ours, foreign]), "demo")
    check_stack_name(FakeClient({}, [ours]), "demo")


def test_node_attrs_with_named_gpus_and_a_manager_without_status_address():
    n = _node({"ID": "x", "Spec": {"Role": "manager", "Availability": "active", "Labels": {"gymctl.gpu": "true"}},
               "Status": {"State": "ready", "Addr": "0.0.0.0"}, "ManagerStatus": {"Addr": "172.30.0.3:2377"},
               "Description": {"Hostname": "gymctl-lab-node1", "Resources": {"GenericResources": [
                   {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-fake0"}},
                   {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-fake1"}}]}}})
    assert (n.hostname, n.address, n.resources, n.usable) == ("gymctl-lab-node1", "172.30.0.3", {"NVIDIA-GPU": 2}, True)


def test_a_task_pending_for_lack_of_resources_becomes_a_clear_error(monkeypatch):
    row = TaskRow("policy_model", "policy_model", 3, "-", "pending", "running", "no suitable node (insufficient resources on 3 nodes)", "", "")
    seen: dict = {}
    assert _pending_error([row], seen) is None  # not at once: Swarm may still be placing it
    monkeypatch.setattr(swarm_tasks, "PENDING_FOR_S", 0.0)
    time.sleep(0.01)
    err = _pending_error([row], seen)
    assert isinstance(err, SwarmPlacementError)
    assert "policy_model task 3 stays pending: Swarm says 'no suitable node (insufficient resources on 3 nodes)'" in str(err)


def test_scale_arguments_are_checked_before_docker_is_asked():
    out = invoke("scale", "example_single_tool_call")
    assert out.code == 2 and "write INSTANCE=N" in out.err and "Traceback" not in out.err
    out = invoke("scale", "example_single_tool_call=-1")
    assert out.code == 2 and "write INSTANCE=N" in out.err


def test_scale_refuses_an_unknown_instance_and_the_head():
    svc = SimpleNamespace(name="demo_example_single_tool_call", attrs={"Spec": {"Labels": {"io.gymctl.instance": "example_single_tool_call"}}})
    head = SimpleNamespace(name="demo_head", attrs={"Spec": {"Labels": {"io.gymctl.instance": "head"}}})
    swarm = Swarm(node("node1"), [node("node1")], FakeClient({}, [svc, head]))
    with pytest.raises(UsageError, match=r"no instance 'example_single_tool_cal'; did you mean 'example_single_tool_call'"):
        swarm_tasks.scale(swarm, "demo", "example_single_tool_cal", 2)
    with pytest.raises(UsageError, match="exactly one task"):
        swarm_tasks.scale(swarm, "demo", "head", 2)
    with pytest.raises(UsageError, match="is not deployed"):
        swarm_tasks.scale(Swarm(node("node1"), [node("node1")], FakeClient({}, [])), "other", "x", 1)


def test_a_rolling_update_swarm_rolled_back_during_this_deploy_is_reported():
    from gymctl.docker.swarm_tasks import ServiceRow, _failed_update

    now = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 2))
    old = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 600))
    rolled = ServiceRow("policy_model", "policy_model", 2, 2, 2, "rollback_completed", started, "update paused due to failure")
    assert _failed_update([rolled], now) is rolled
    assert _failed_update([rolled], None) is None  # a scale, not a deploy
    assert _failed_update([ServiceRow("x", "x", 1, 1, 1, "rollback_completed", old, "")], now) is None  # an earlier deploy's
    assert ServiceRow("x", "x", 1, 1, 1, "updating").rolling and not ServiceRow("x", "x", 1, 1, 1, "completed").rolling


def test_a_task_pending_while_its_service_rolls_is_waited_for(monkeypatch):
    monkeypatch.setattr(swarm_tasks, "PENDING_FOR_S", 0.0)
    row = TaskRow("policy_model", "policy_model", 2, "-", "pending", "running", "no suitable node (insufficient resources on 3 nodes)", "", "")
    assert _pending_error([row], {}, {"policy_model"}) is None
    assert _pending_error([row], {}, {"other"}) is not None
