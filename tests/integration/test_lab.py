"""The local multi-node lab on real Docker: a failed node start leaves nothing; the session's lab (the `lab` fixture in
tests/integration/conftest.py: contexts, fake GPUs, push to its registry, pull and run on a node, reached from the machine);
delete leaves no trace (run last of every lab test, test_swarm*.py's too: the ordering hook in conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG
from tests.integration.conftest import AGENT, free_ports, gymctl

pytestmark = pytest.mark.docker
LABEL = "io.gymctl.cluster"
SERVER_IMAGE = "gymctl/head:latest"
HEAD_CONFIG = "r:\\n  resources_servers:\\n    example_single_tool_call:\\n      entrypoint: app.py\\n      domain: agent\\n"


def traces() -> dict[str, list[str]]:
    """Everything labelled io.gymctl.cluster, and the lab's contexts."""
    from gymctl.docker.cli import engine_client
    from gymctl.docker.contexts import context_names
    from gymctl.docker.lab import lab_context_names

    client = engine_client()
    return {"containers": [c.name for c in client.containers.list(all=True, filters={"label": LABEL})],
            "networks": [n.name for n in client.networks.list(filters={"label": LABEL})],
            "volumes": [v.name for v in client.volumes.list(filters={"label": LABEL})],
            "contexts": lab_context_names(context_names())}


def docker_on(context: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--context", context, *args], capture_output=True, text=True, timeout=timeout)


def test_a_node_that_fails_to_start_shows_its_log_and_leaves_nothing():
    from gymctl.docker.lab import delete_lab

    (port,) = free_ports(1)
    try:
        r = gymctl("cluster", "create", "--nodes", "2", "--registry-port", str(port), "--dockerd-arg=--no-such-dockerd-flag", timeout=240)
        assert r.returncode == 1, r.stderr
        assert "StartupError: lab node gymctl-lab-node1 exited" in r.stderr
        assert "unknown flag: --no-such-dockerd-flag" in r.stderr  # the node's log tail
        assert "Traceback" not in r.stderr
        assert traces() == {"containers": [], "networks": [], "volumes": [], "contexts": []}
    finally:
        delete_lab()


def test_create_starts_the_nodes_and_their_contexts(lab):
    assert [n["name"] for n in lab["nodes"]] == ["gymctl-lab-node1", "gymctl-lab-node2", "gymctl-lab-node3"]
    assert all(n["status"] == "running" and n["address"] for n in lab["nodes"])
    assert set(lab["contexts"]) == {"gymctl-lab", "gymctl-lab-node1", "gymctl-lab-node2", "gymctl-lab-node3"}
    from gymctl.docker.contexts import context_host

    assert context_host("gymctl-lab") == f"tcp://{lab['nodes'][0]['address']}:2375"
    r = docker_on("gymctl-lab-node2", "info", "--format", "{{.Name}} {{.Driver}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["gymctl-lab-node2", "overlay2"]  # its own engine, not the machine's
    # Each engine's storage is a volume on this machine's disk (not a tmpfs: images and rolled containers fill memory).
    assert sorted(traces()["volumes"]) == ["gymctl-lab-node1-docker", "gymctl-lab-node2-docker", "gymctl-lab-node3-docker"]


def test_swarm_spans_the_nodes_and_node1_advertises_fake_gpus(lab):
    r = docker_on("gymctl-lab", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split("\n")[:-1]) == ["gymctl-lab-node1 Ready", "gymctl-lab-node2 Ready", "gymctl-lab-node3 Ready"]
    r = docker_on("gymctl-lab", "node", "inspect", "gymctl-lab-node1", "--format",
                  "{{json .Spec.Labels}} {{json .Description.Resources.GenericResources}}")
    labels, resources = r.stdout.split(" ", 1)
    assert json.loads(labels) == {"gymctl.gpu": "true"}
    assert sorted(g["NamedResourceSpec"]["Value"] for g in json.loads(resources)) == ["GPU-fake0", "GPU-fake1"]


def test_a_pushed_image_is_pulled_and_served_on_a_node(lab):
    registry = lab["registry"]
    r = gymctl("push", "--registry", registry, "--image", SERVER_IMAGE, "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    pushed = {p["image"]: p for p in json.loads(r.stdout)}
    assert SERVER_IMAGE in pushed and pushed[SERVER_IMAGE]["digest"].startswith("sha256:")
    remote = f"gymctl-lab-registry:5000/{SERVER_IMAGE}"
    pull = docker_on("gymctl-lab-node2", "pull", remote)
    assert pull.returncode == 0, pull.stderr
    digests = docker_on("gymctl-lab-node2", "image", "inspect", remote, "--format", "{{json .RepoDigests}}").stdout
    assert f"gymctl-lab-registry:5000/gymctl/head@{pushed[SERVER_IMAGE]['digest']}" in json.loads(digests)
    run = docker_on("gymctl-lab-node2", "run", "-d", "--name", "lab-head", "-p", "11000:11000", "-e", "GYMCTL_INSTANCE=head",
                    "-e", "GYMCTL_BIND_HOST=0.0.0.0", "-e", "GYMCTL_PORT=11000", "-e", "GYMCTL_CONFIG_FILE=/tmp/c.yaml",
                    "--entrypoint", "sh", remote, "-c", f'printf "{HEAD_CONFIG}" > /tmp/c.yaml && exec gymctl serve head')
    assert run.returncode == 0, run.stderr
    url = f"http://{lab['nodes'][1]['address']}:11000/livez"  # the node's lab address, from this machine
    deadline = time.monotonic() + 60
    body = None
    while time.monotonic() < deadline and body is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = json.loads(resp.read())
        except OSError:
            time.sleep(0.5)
    assert body == {"status": "ok"}, docker_on("gymctl-lab-node2", "logs", "lab-head").stderr


def lab_config(lab: dict[str, Any], tmp_path: Path) -> Path:
    """The example environment over the lab's three hosts: head and resources on node1, the agent on node2, the model on node3."""
    addr = {f"node{i + 1}": n["address"] for i, n in enumerate(lab["nodes"])}
    path = tmp_path / "lab-hosts.yaml"
    path.write_text(
        f"head_server: {{host: {addr['node1']}, port: 11000}}\n"
        "gymctl:\n  nodes:\n" + "".join(f"    {h}: {{address: {a}}}\n" for h, a in addr.items())
        + f"  instances:\n    {AGENT}: {{node: node2}}\n    policy_model: {{node: node3}}\n"
    )
    return path


def test_per_host_compose_files_on_three_lab_nodes_collect_1000_rollouts(lab, tmp_path):
    registry = lab["registry_lab_name"]
    config = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "-c", str(lab_config(lab, tmp_path))]
    out = tmp_path / "hosts"
    r = gymctl("render", "--topology", "multi-host", "-o", str(out), "--registry", registry, "-p", "labmh", *config)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.compose.yml")) == ["node1.compose.yml", "node2.compose.yml", "node3.compose.yml"]
    projects = []
    try:
        for node in ("node1", "node2"):  # gymctl's way: up on the node's context, pushing what the registry lacks
            r = gymctl("up", "--topology", "multi-host", "--node", node, "--context", f"gymctl-lab-{node}", "--registry", registry,
                       "-p", "labmh", "--no-wait", *config, timeout=600)
            assert r.returncode == 0, r.stderr
            projects.append((node, f"labmh-{node}"))
        # Docker's own way, on the file as rendered: push the third host's image, then the host pulls it by itself.
        r = gymctl("push", "--registry", lab["registry"], "--image", "gymctl/scripted_model:latest", timeout=600)
        assert r.returncode == 0, r.stderr
        node3 = f"tcp://{lab['nodes'][2]['address']}:2375"
        token = (REPO / ".gymctl" / "stacks" / "labmh" / "auth_token").read_text().strip()  # the project's, generated by the first up
        up = subprocess.run(["docker", "--host", node3, "compose", "-f", str(out / "node3.compose.yml"), "up", "-d"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "GYMCTL_AUTH_TOKEN": token})
        assert up.returncode == 0, up.stderr
        projects.append(("node3", "labmh-node3"))
        head = f"http://{lab['nodes'][0]['address']}:11000"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(head + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, gymctl("status", "--head", head).stdout
            time.sleep(1)
        with pytest.raises(urllib.error.HTTPError) as refused:  # a token by default, on every host's part
            urllib.request.urlopen(head + "/server_instances", timeout=5)
        assert refused.value.code == 401
        status = gymctl("status", "--head", head)  # the token from the project's record
        assert status.returncode == 0 and "4 servers found (4 healthy, 0 unhealthy)" in status.stdout, status.stdout + status.stderr
        rollouts = tmp_path / "rollouts.jsonl"
        r = gymctl("collect", "--head", head, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(rollouts),
                   "--num-repeats", "200", timeout=600)
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in rollouts.read_text().splitlines()]
        assert len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in rows}) == len(rows) == 1000
        assert {x["reward"] for x in rows} == {1.0}
    finally:
        for node, project in projects:
            gymctl("down", "-p", project, "--context", f"gymctl-lab-{node}", timeout=300)
        shutil.rmtree(REPO / ".gymctl" / "stacks" / "labmh", ignore_errors=True)  # the project's record and token


def test_delete_leaves_no_trace(lab):
    r = gymctl("cluster", "delete")
    assert r.returncode == 0, r.stderr
    assert "4 containers" in r.stderr and "3 volumes" in r.stderr and "4 contexts" in r.stderr
    assert traces() == {"containers": [], "networks": [], "volumes": [], "contexts": []}
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}"], capture_output=True, text=True, timeout=60)
    assert not [t for t in listed.stdout.split() if t.startswith(lab["registry"] + "/")]  # the pushes' tags went with it
    assert SERVER_IMAGE.split(":")[0] in listed.stdout.split()  # the images themselves stay
    r = gymctl("cluster", "ls")
    assert "no lab is up" in r.stderr
