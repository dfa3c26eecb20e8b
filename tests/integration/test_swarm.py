"""`gymctl up --topology swarm` on the session's lab (3 nodes, node 1 the manager with two fake GPUs), as a user runs it:
bad input refused before anything deploys; the example with a 2-replica GPU model and 2 resources replicas: every task
running where it belongs, status green, 2,000 rollouts through it; scale up and down during a collection; a worker node
killed mid-collection; down leaves nothing on any node."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_DATA, SCRIPTED_CONFIG
from tests.integration.conftest import AGENT, gymctl

pytestmark = pytest.mark.docker
PROJECT = "i11swarm"
CTX = ["--context", "gymctl-lab"]
RESOURCES = "example_single_tool_call"
DEMO = ["--set", "gymctl.instances.policy_model.gpus=1", "--set", "gymctl.instances.policy_model.replicas=2",
        "--set", f"gymctl.instances.{RESOURCES}.replicas=2",
        "--set", f"gymctl.instances.{AGENT}.node=gymctl-lab-node1"]  # the agent's published port stays on the manager
CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, *DEMO]


def docker_lab(*args: str, node: str = "gymctl-lab", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--context", node, *args], capture_output=True, text=True, timeout=timeout)


def tasks(project: str = PROJECT) -> list[dict[str, Any]]:
    r = gymctl("ps", "--topology", "swarm", "-p", project, *CTX, "--json", timeout=120)
    return json.loads(r.stdout)["tasks"] if r.stdout.strip() else []


def registered(head: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(head + "/server_instances", timeout=5) as resp:
        out: dict[str, int] = {}
        for i in json.loads(resp.read()):
            if i.get("status") == "healthy":
                out[i["process_name"]] = out.get(i["process_name"], 0) + 1
        return out


def collect(head: str, out: Path, repeats: int, *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return gymctl("collect", "--head", head, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(out),
                  "--num-repeats", str(repeats), timeout=timeout)


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def leftovers(project: str) -> dict[str, list[str]]:
    """What of `project` is on the swarm or any node: services, networks, configs, secrets, containers."""
    out: dict[str, list[str]] = {}
    for kind in ("service", "network", "config", "secret"):
        r = docker_lab(kind, "ls", "--format", "{{.Name}}")
        out[kind] = [n for n in r.stdout.split() if n.startswith(project + "_")]
    out["containers"] = []
    for i in (1, 2, 3):
        r = docker_lab("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.gymctl.project={project}", node=f"gymctl-lab-node{i}")
        out["containers"] += r.stdout.split()
    return out


def test_not_a_manager_no_fitting_gpu_a_bad_label_a_refused_push_and_a_foreign_stack_are_refused(lab, tmp_path):
    r = gymctl("up", "--topology", "swarm", "-p", "i11bad", "--context", "gymctl-lab-node2", *CONFIG, timeout=120)
    assert r.returncode == 1 and "NotASwarmManagerError" in r.stderr and "is a swarm worker, not a manager" in r.stderr, r.stderr
    r = gymctl("up", "--topology", "swarm", "-p", "i11bad", *CONFIG, timeout=120)  # this machine's own engine: no swarm
    assert r.returncode == 1 and "is not part of a swarm" in r.stderr and "docker swarm init" in r.stderr, r.stderr
    r = gymctl("up", "--topology", "swarm", "-p", "i11bad", *CTX, *CONFIG, "--set", "gymctl.instances.policy_model.replicas=3", timeout=120)
    assert r.returncode == 1 and "SwarmPlacementError: policy_model asks for 3 task(s) with 1 NVIDIA-GPU each" in r.stderr, r.stderr
    assert "room for 2" in r.stderr
    r = gymctl("up", "--topology", "swarm", "-p", "i11bad", *CTX, *CONFIG, "--set", f"gymctl.instances.{RESOURCES}.node=zone=a", timeout=120)
    assert r.returncode == 1 and f"{RESOURCES} needs a node with label zone=a" in r.stderr, r.stderr
    r = gymctl("up", "--topology", "swarm", "-p", "i11bad", *CTX, *CONFIG, "--registry", "127.0.0.1:1", timeout=300)
    assert r.returncode == 1 and "DockerError: pushing 127.0.0.1:1/gymctl/" in r.stderr and "is the registry up" in r.stderr, r.stderr
    made = docker_lab("service", "create", "--detach", "--name", "i11clash_web", "--label", "com.docker.stack.namespace=i11clash",
                      "--replicas", "0", "gymctl-lab-registry:5000/gymctl/head:latest")
    assert made.returncode == 0, made.stderr
    try:
        r = gymctl("up", "--topology", "swarm", "-p", "i11clash", *CTX, *CONFIG, timeout=120)
        assert r.returncode == 2 and "StackClashError" in r.stderr and "is not gymctl's (services: i11clash_web)" in r.stderr, r.stderr
    finally:
        docker_lab("service", "rm", "i11clash_web")
    assert "Traceback" not in r.stderr
    assert leftovers("i11bad") == {"service": [], "network": [], "config": [], "secret": [], "containers": []}


@pytest.fixture(scope="module")
def stack(lab) -> Any:
    """The demo stack, up once for this module (removed at its end, also on failure)."""
    t0 = time.monotonic()
    r = gymctl("up", "--topology", "swarm", "-p", PROJECT, *CTX, *CONFIG, "--json", "--timeout", "240", timeout=600)
    try:
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        print(f"\nswarm up: {time.monotonic() - t0:.1f} s (deploy to ready {info['seconds'] - info['deploy_seconds']:.1f} s)")
        yield info
    finally:
        gymctl("down", "--topology", "swarm", "-p", PROJECT, *CTX, timeout=300)


def test_every_task_runs_where_it_belongs_and_status_is_green(stack, lab, tmp_path):
    assert stack["services"][RESOURCES] == {"replicas": 2, "running": 2, "registered": 2}
    assert stack["services"]["policy_model"] == {"replicas": 2, "running": 2, "registered": 2}
    assert all("@sha256:" in image for image in stack["images"])  # every node runs the pushed bytes
    rows = tasks()
    assert {(r["service"], r["node"]) for r in rows if r["service"] in ("head", "policy_model")} == {
        ("head", "gymctl-lab-node1"), ("policy_model", "gymctl-lab-node1")}  # the GPU node (and the manager the context names)
    assert all(r["state"] == "running" for r in rows) and len(rows) == 1 + 2 + 2 + 1
    reserved = docker_lab("service", "inspect", f"{PROJECT}_policy_model", "--format", "{{json .Spec.TaskTemplate.Resources.Reservations}}")
    assert json.loads(reserved.stdout)["GenericResources"] == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]
    status = gymctl("status", "--head", stack["head_url"])
    assert status.returncode == 0 and "6 servers found (6 healthy, 0 unhealthy)" in status.stdout, status.stdout + status.stderr
    assert status.stdout.count("policy_model") >= 2  # one row per replica
    out = tmp_path / "rollouts.jsonl"
    t0 = time.monotonic()
    r = collect(stack["head_url"], out, 400)
    assert r.returncode == 0, r.stderr
    got = rows_of(out)
    print(f"\nswarm collect: 2000 rollouts in {time.monotonic() - t0:.1f} s")
    assert len(got) == len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in got}) == 2000
    assert {x["reward"] for x in got} == {1.0}


def test_scale_up_takes_a_replica_in_and_scale_down_loses_no_rollout(stack, tmp_path):
    out = tmp_path / "scaled.jsonl"
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(r=collect(stack["head_url"], out, 300)))
    runner.start()
    time.sleep(2)
    t0 = time.monotonic()
    r = gymctl("scale", f"{RESOURCES}=3", "-p", PROJECT, *CTX, "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["services"][RESOURCES] == {"replicas": 3, "running": 3, "registered": 3}
    print(f"\nscale to 3: registered in {time.monotonic() - t0:.1f} s")
    r = gymctl("scale", f"{RESOURCES}=1", "-p", PROJECT, *CTX, timeout=300)
    assert r.returncode == 0, r.stderr
    runner.join(timeout=900)
    assert result["r"].returncode == 0, result["r"].stderr
    got = rows_of(out)
    assert len(got) == len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in got}) == 1500
    assert {x["reward"] for x in got} == {1.0}
    assert registered(stack["head_url"]).get(RESOURCES) == 1
    r = gymctl("scale", f"{RESOURCES}=2", "-p", PROJECT, *CTX, timeout=300)
    assert r.returncode == 0, r.stderr


def test_a_killed_worker_node_loses_no_rollout_and_its_tasks_come_back(stack, lab, tmp_path):
    victim = next(r["node"] for r in tasks() if r["service"] == RESOURCES and r["node"] != "gymctl-lab-node1")
    out = tmp_path / "node-loss.jsonl"
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(r=collect(stack["head_url"], out, 400)))
    runner.start()
    time.sleep(3)
    killed = subprocess.run(["docker", "kill", victim], capture_output=True, text=True, timeout=60)
    assert killed.returncode == 0, killed.stderr
    runner.join(timeout=900)
    first = result["r"]
    # The run completes (a rollout in flight on the lost replica may fail: the rerun retries exactly those).
    rerun = collect(stack["head_url"], out, 400)
    assert rerun.returncode == 0, first.stderr + rerun.stderr
    got = rows_of(out)
    assert len(got) == len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in got}) == 2000
    assert {x["reward"] for x in got} == {1.0}
    deadline = time.monotonic() + 120  # the swarm marks the node down, reschedules its task, which registers again
    while True:
        running = [r for r in tasks() if r["service"] == RESOURCES and r["state"] == "running"]
        if len(running) == 2 and victim not in {r["node"] for r in running} and registered(stack["head_url"]).get(RESOURCES) == 2:
            break
        assert time.monotonic() < deadline, (running, registered(stack["head_url"]))
        time.sleep(2)


def test_down_leaves_nothing_on_the_swarm_or_any_node(stack, lab):
    r = gymctl("down", "--topology", "swarm", "-p", PROJECT, *CTX, timeout=300)
    assert r.returncode == 0 and f"stack {PROJECT!r} down: 4 service(s)" in r.stderr, r.stderr
    deadline = time.monotonic() + 60
    while (left := leftovers(PROJECT)) != {"service": [], "network": [], "config": [], "secret": [], "containers": []}:
        assert time.monotonic() < deadline, left
        time.sleep(1)
