"""gymctl on a real two-node Ray cluster (ray.cluster_utils.Cluster on this machine, one per module): GymActor as a trainer
creates it, `gymctl run --topology ray` joining the cluster, and the Ray bad-input cases.

The second node has a (fake) GPU and a custom resource `model_node`; the LLM is the Chat Completions test double.
Ray's files live in a temp folder of the test's own (RAY_TMPDIR), removed after, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, IN_CI, REPO, SCRIPTED_CONFIG, example_rows, free_port, http_json, interrupt, wait_http
from tests.e2e.test_vllm_example import VLLM_CONFIG, chat_stub

ray = __import__("ray") if IN_CI else pytest.importorskip("ray")  # the dev extra installs it: in CI a missing Ray fails, never skips

TOKENS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")


def _gcs_servers() -> int:
    return sum(1 for p in psutil.process_iter(["name"]) if p.info["name"] == "gcs_server")


@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs) + one node with 1 CPU, 1 GPU and model_node=1; this test process is a driver on it."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="gymctl-i12-ray-")
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    c = None
    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        gpu_node = c.add_node(num_cpus=1, num_gpus=1, resources={"model_node": 1})
        c.wait_for_nodes()
        ray.init(address=c.address, namespace="gymctl", log_to_driver=False)
        c.gpu_node_id = gpu_node.node_id
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if c is not None:
            c.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        for _ in range(3):  # a Ray agent still exiting can recreate its session folders just after the first pass
            shutil.rmtree(temp, ignore_errors=True)
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)


def _training_rows(n: int) -> list[dict]:
    base = example_rows()
    return [{**base[i % len(base)], "agent_ref": {"type": "responses_api_agents", "name": AGENT}} for i in range(n)]


def test_gym_actor_streams_200_rollouts_with_token_ids_over_two_dp_ranks_and_shuts_down_clean(cluster):
    from gymctl.ray import GymActor

    a, b = chat_stub.ChatStub(), chat_stub.ChatStub()
    a.delay_s = b.delay_s = 0.01  # a generation takes a while: 20 rollouts in flight finish in waves
    with a.in_thread(), b.in_thread():
        overrides = {"policy_model.responses_api_models.vllm_model.return_token_id_information": True}
        actor = GymActor.options(num_cpus=0).remote([EXAMPLE_CONFIG, VLLM_CONFIG], overrides, base_urls=[a.base_url, b.base_url],
                                                     model_name="stub-model", cwd=str(REPO), concurrency=20)
        t0 = time.monotonic()
        head_url = ray.get(actor.start.remote(), timeout=60)
        spin_up_s = time.monotonic() - t0
        node_ip = ray.util.get_node_ip_address()
        assert head_url.startswith(f"http://{node_ip}:")  # the node's address, not loopback: other nodes reach it
        instances = http_json(head_url + "/server_instances")[1]
        assert {i["host"] for i in instances} == {node_ip}

        rows = _training_rows(200)
        arrivals, results = [], {}
        started = time.monotonic()
        for ref in actor.run_rollouts_streaming.remote(rows):
            index, result = ray.get(ref, timeout=120)
            arrivals.append(time.monotonic() - started)
            results[index] = result
        assert sorted(results) == list(range(200))
        assert {r["reward"] for r in results.values()} == {1.0}
        for r in results.values():
            turns = [i for i in r["response"]["output"] if "generation_token_ids" in i]
            assert len(turns) == 2 and all(all(k in i for k in TOKENS) for i in turns)
        assert arrivals[0] < arrivals[-1] / 2, arrivals[:3]  # streamed as they finish, not all at the end

        for stub in (a, b):  # sessions spread over both ranks; each rollout's two turns stay on one
            lasts = [c["messages"][-1]["role"] for c in stub.chat_requests()]
            assert lasts.count("user") == lasts.count("tool") > 50, (lasts.count("user"), lasts.count("tool"))

        ordered = ray.get(actor.run_rollouts.remote(rows[:10]), timeout=60)
        assert [r["_ng_task_index"] for r in ordered] == list(range(10)) and all(r["reward"] == 1.0 for r in ordered)
        health = ray.get(actor.health_check.remote(), timeout=30)
        assert health["ok"] and health["head_ready"]

        where = ray.get(actor.node.remote(), timeout=10)
        assert where["node_ip"] == node_ip
        pid = where["pid"]
        ray.get(actor.shutdown.remote(), timeout=30)
        with pytest.raises(OSError):
            http_json(head_url + "/server_instances", timeout=2)
        ray.kill(actor)
    deadline = time.monotonic() + 20
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    print(f"GymActor spin-up to ready: {spin_up_s:.2f} s")
    assert spin_up_s < 15  # bench/ray_actor.py measures it (<= 3 s on an idle machine)


def test_run_topology_ray_joins_the_cluster_places_the_model_by_its_resource_and_survives_a_kill(cluster, tmp_path):
    nodes_before, gcs_before = len([n for n in ray.nodes() if n["Alive"]]), _gcs_servers()
    port = free_port()
    node_ip = ray.util.get_node_ip_address()
    head_url = f"http://{node_ip}:{port}"
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 -- held by the child until it exits
    proc = subprocess.Popen(
        [sys.executable, "-m", "gymctl", "run", "--topology", "ray", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG,
         f"+ray_head_node_address={cluster.address}", "--set", f"head_server.port={port}", "--set", "gymctl.instances.policy_model.ray_resources={model_node: 1}",
         "--set", "gymctl.instances.example_single_tool_call.replicas=2"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(head_url + "/health", timeout=60)
        model = ray.get_actor("gymctl.policy_model", namespace="gymctl")
        info = ray.get(model.info.remote(), timeout=10)
        assert info["node_id"] == cluster.gpu_node_id  # Ray placed it on the node that has model_node
        for name in ("example_single_tool_call", "example_single_tool_call.2", AGENT):  # replicas: one actor each
            other = ray.get(ray.get_actor(f"gymctl.{name}", namespace="gymctl").info.remote(), timeout=10)
            assert other["node_id"] != cluster.gpu_node_id
        registered = [i["process_name"] for i in http_json(head_url + "/server_instances")[1]]
        assert registered.count("example_single_tool_call") == 2
        status = subprocess.run([sys.executable, "-m", "gymctl", "status", "--head", head_url, "--json"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and json.loads(status.stdout)["ok"], status.stdout + status.stderr
        nodes = {i["instance"]: i["node"] for i in json.loads(status.stdout)["instances"]}  # gymctl status says where each runs
        assert nodes["policy_model"] == f"{node_ip} (ray node {cluster.gpu_node_id[:8]})"
        assert cluster.gpu_node_id[:8] not in nodes[AGENT]

        os.kill(info["pid"], signal.SIGKILL)  # Ray restarts the actor; it serves and registers again
        deadline = time.monotonic() + 60
        while True:
            try:
                again = ray.get(model.info.remote(), timeout=10)
                if again["pid"] != info["pid"]:
                    break
            except ray.exceptions.RayActorError:
                pass
            assert time.monotonic() < deadline, "the model actor did not come back"
            time.sleep(0.2)
        out = tmp_path / "out.jsonl"
        collect = subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA),
                                  "--output", str(out), "--num-repeats", "2"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert collect.returncode == 0, collect.stdout + collect.stderr
        assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [1.0] * 10
        assert len([n for n in ray.nodes() if n["Alive"]]) == nodes_before and _gcs_servers() == gcs_before  # joined, started no cluster
    finally:
        interrupt(proc, 30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()
    with pytest.raises(ValueError):
        ray.get_actor("gymctl.policy_model", namespace="gymctl")  # stopped with the run


def test_a_resource_no_node_has_is_an_error_not_a_pending_actor(cluster):
    import asyncio

    from gymctl.api import Deployment
    from gymctl.errors import RayPlacementError

    overrides = {"ray_head_node_address": cluster.address, "gymctl.instances.policy_model.gpus": 4}
    with pytest.raises(RayPlacementError, match=r"gymctl.instances.policy_model asks for GPU=4, which no node of the Ray cluster offers"):
        asyncio.run(Deployment.start([EXAMPLE_CONFIG, SCRIPTED_CONFIG], overrides, topology="ray", cwd=REPO))
    with pytest.raises(ValueError):
        ray.get_actor("gymctl.example_single_tool_call", namespace="gymctl")  # nothing was placed


def test_an_unreachable_head_node_address_fails_within_the_bounded_wait():
    from gymctl.errors import RayUnreachableError
    from gymctl.ray.cluster import wait_reachable

    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(RayUnreachableError) as e:
        wait_reachable(f"127.0.0.1:{port}", wait_s=1.0)
    assert time.monotonic() - t0 < 5
    assert f"ray_head_node_address=127.0.0.1:{port}" in str(e.value) and "ray status --address" in str(e.value)


def test_a_ray_version_other_than_the_clusters_is_a_clear_error(cluster):
    code = ("import ray; ray.__version__ = '2.0.0'\n"  # this driver claims another Ray version than the cluster runs
            "from gymctl.errors import RayVersionMismatchError\nfrom gymctl.ray.cluster import connect\n"
            f"try:\n    connect({cluster.address!r})\nexcept RayVersionMismatchError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "ERR the Ray cluster at" in out.stdout, out.stdout + out.stderr[-2000:]
    assert f"runs Ray {ray.__version__} on Python" in out.stdout and "this process Ray 2.0.0 on Python" in out.stdout
    assert "same Ray and Python versions" in out.stdout


def test_run_topology_ray_with_an_unreachable_head_node_address_says_so_without_a_traceback(tmp_path):
    port = free_port()
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "gymctl", "run", "--topology", "ray", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG,
                          f"+ray_head_node_address=127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and time.monotonic() - t0 < 30
    assert f"RayUnreachableError: no Ray cluster answers at ray_head_node_address=127.0.0.1:{port} after 10 s" in run.stderr
    assert "leave ray_head_node_address unset to start a local cluster" in run.stderr and "Traceback" not in run.stderr


def test_an_instance_that_fails_in_its_actor_is_a_startup_error_naming_it(cluster):
    import asyncio

    from gymctl.api import Deployment
    from gymctl.errors import StartupError

    overrides = {"ray_head_node_address": cluster.address}  # vllm_model without policy_base_url: its block cannot resolve
    with pytest.raises(StartupError) as e:
        asyncio.run(Deployment.start([EXAMPLE_CONFIG, VLLM_CONFIG], overrides, topology="ray", cwd=REPO))
    assert "gymctl.policy_model failed to start" in str(e.value) and "policy_base_url" in str(e.value), str(e.value)
    with pytest.raises(ValueError):
        ray.get_actor("gymctl.example_single_tool_call", namespace="gymctl")  # the others were stopped


def test_ng_run_with_a_ray_head_node_address_starts_no_second_cluster(cluster, tmp_path):
    nodes_before, gcs_before = len([n for n in ray.nodes() if n["Alive"]]), _gcs_servers()
    port = free_port()
    log = open(tmp_path / "ng_run.log", "wb")  # noqa: SIM115 -- held by the child until it exits
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ng_run"), f"+config_paths=[{EXAMPLE_CONFIG},{SCRIPTED_CONFIG}]",
         f"+ray_head_node_address={cluster.address}", f"+head_server.port={port}"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
        assert len([n for n in ray.nodes() if n["Alive"]]) == nodes_before  # no node joined, none left
        assert _gcs_servers() == gcs_before  # and no second cluster (NeMo Gym's ng_run would start one without the address)
        assert "no Ray cluster is started here" in (tmp_path / "ng_run.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
        log.close()
