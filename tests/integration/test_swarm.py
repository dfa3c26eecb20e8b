"""`gymctl up --topology swarm` on the session's lab (3 nodes, node 1 the manager with two fake GPUs), as a user runs it:
bad input refused before anything deploys; the example with a 2-replica GPU model and 2 resources replicas: every task
running where it belongs, status green, 2,000 rollouts through it; scale up during a collection (the new replica serves
within seconds, seen on its own /metrics) and down; `gymctl up` of a changed config during a collection rolls only the
services it changes, one task at a time; a worker node killed mid-collection; down leaves nothing on any node."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG
from tests.integration.conftest import AGENT, gymctl

pytestmark = pytest.mark.docker
PROJECT = "i11swarm"
CTX = ["--context", "gymctl-lab"]
RESOURCES = "example_single_tool_call"
DEMO = ["--set", "gymctl.instances.policy_model.gpus=1", "--set", "gymctl.instances.policy_model.replicas=2",
        "--set", f"gymctl.instances.{RESOURCES}.replicas=2",
        "--set", f"gymctl.instances.{AGENT}.node=gymctl-lab-node1"]  # the agent's published port stays on the manager
CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, *DEMO]


class RefusingRegistry:
    """A registry on this machine's loopback that answers /v2/ and refuses every push with a registry error (403 DENIED)."""

    ANSWER = "pushes to this registry are not allowed (i11 test)"

    def __enter__(self) -> str:
        import http.server

        answer = json.dumps({"errors": [{"code": "DENIED", "message": self.ANSWER}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                ok = self.path.rstrip("/") == "/v2"
                body = b"{}" if ok else answer
                self.send_response(200 if ok else 403)
                for k, v in (("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                             ("Docker-Distribution-API-Version", "registry/2.0")):
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = _answer

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def untag(*registries: str) -> None:
    """Remove this machine's tags of the images a refused push left (the images themselves stay)."""
    listed = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True, timeout=60)
    tags = [t for t in listed.stdout.split() if t.startswith(tuple(f"{r}/" for r in registries))]
    if tags:
        subprocess.run(["docker", "rmi", *tags], capture_output=True, timeout=120)


def docker_lab(*args: str, node: str = "gymctl-lab", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--context", node, *args], capture_output=True, text=True, timeout=timeout)


def tasks(project: str = PROJECT) -> list[dict[str, Any]]:
    r = gymctl("ps", "--topology", "swarm", "-p", project, *CTX, "--json", timeout=120)
    return json.loads(r.stdout)["tasks"] if r.stdout.strip() else []


def stack_token() -> str:
    """The token `gymctl up` generated for the stack and kept where gymctl's own commands find it (owner-only)."""
    path = REPO / ".gymctl" / "stacks" / PROJECT / "auth_token"
    assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    return path.read_text().strip()


def registered(head: str) -> dict[str, int]:
    import urllib.request

    request = urllib.request.Request(head + "/server_instances", headers={"Authorization": f"Bearer {stack_token()}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
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


# Run on a node inside the stack's (attachable) network: every 0.5 s, each resources task's request count from its /metrics.
PROBE = r"""
import json, socket, sys, time, urllib.request
while True:
    try:
        ips = sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 8000, type=socket.SOCK_STREAM)})
    except OSError:
        ips = []
    served = {}
    for ip in ips:
        try:
            with urllib.request.urlopen(f"http://{ip}:8000/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        served[ip] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("gymctl_http_requests_total{") and "/health" not in line and "/metrics" not in line)
    print(json.dumps({"t": time.time(), "served": served}), flush=True)
    time.sleep(0.5)
"""


class Prober:
    """A container on the manager, in the stack's network, logging what each resources replica has served."""

    name = f"{PROJECT}-probe"

    def __init__(self, image: str) -> None:
        r = docker_lab("run", "-d", "--name", self.name, "--network", f"{PROJECT}_gymctl", "--entrypoint", "python", image,
                       "-c", PROBE, f"tasks.{PROJECT}_{RESOURCES}", node="gymctl-lab-node1")
        assert r.returncode == 0, r.stderr

    def samples(self) -> list[dict[str, Any]]:
        r = docker_lab("logs", self.name, node="gymctl-lab-node1")
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def remove(self) -> None:
        docker_lab("rm", "-f", self.name, node="gymctl-lab-node1")


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
    with RefusingRegistry() as refusing:  # a registry that answers no: its answer, and what to do
        r = gymctl("up", "--topology", "swarm", "-p", "i11bad", *CTX, *CONFIG, "--registry", refusing, timeout=300)
    assert r.returncode == 1 and f"DockerError: pushing {refusing}/gymctl/" in r.stderr, r.stderr
    assert f"denied: {RefusingRegistry.ANSWER}" in r.stderr and f"docker login {refusing}" in r.stderr, r.stderr
    untag(refusing, "127.0.0.1:1")
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
    for service in ("head", RESOURCES, AGENT, "policy_model"):  # hardened as far as Swarm goes
        spec = json.loads(docker_lab("service", "inspect", f"{PROJECT}_{service}", "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}").stdout)
        assert spec.get("ReadOnly") is True and spec.get("CapabilityDrop") == ["ALL"], (service, spec)
        assert [m["Target"] for m in spec.get("Mounts", []) if m["Type"] == "tmpfs"] == ["/tmp"], (service, spec)
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:  # a token by default: the stack's head refuses anyone without it
        urllib.request.urlopen(stack["head_url"] + "/server_instances", timeout=5)
    assert refused.value.code == 401
    status = gymctl("status", "-p", PROJECT)  # no --head, no token given: both from the stack's record
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


class Collections:
    """Collections of 1,000 rollouts one after another, each to its own file, until stopped: traffic that lasts as long as
    the scale up, the new replica's first calls and the scale down take, however long that is."""

    def __init__(self, head: str, folder: Path) -> None:
        self.head, self.folder = head, folder
        self.results: list[tuple[Path, subprocess.CompletedProcess[str]]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            out = self.folder / f"scaled-{len(self.results)}.jsonl"
            self.results.append((out, collect(self.head, out, 200)))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=900)


def test_scale_up_takes_a_replica_in_and_scale_down_loses_no_rollout(stack, tmp_path):
    prober = Prober(next(i for i in stack["images"] if "/gymctl/head:" in i))
    runs = None
    try:
        deadline = time.monotonic() + 60
        while len((prober.samples() or [{"served": {}}])[-1]["served"]) < 2:  # it sees both replicas
            assert time.monotonic() < deadline, prober.samples()[-3:]
            time.sleep(1)
        before = set(prober.samples()[-1]["served"])
        runs = Collections(stack["head_url"], tmp_path)
        time.sleep(2)
        t0 = time.monotonic()
        r = gymctl("scale", f"{RESOURCES}=3", "-p", PROJECT, *CTX, "--json", timeout=300)
        registered_at = time.time()
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["services"][RESOURCES] == {"replicas": 3, "running": 3, "registered": 3}
        print(f"\nscale to 3: registered in {time.monotonic() - t0:.1f} s")
        # The third replica takes traffic within a few seconds of registering: its own request count grows.
        deadline = time.monotonic() + 30
        while True:
            new = [(x["t"], n) for x in prober.samples() for ip, n in x["served"].items() if ip not in before and n > 0]
            if new:
                break
            assert time.monotonic() < deadline, prober.samples()[-3:]
            time.sleep(0.5)
        took = new[0][0] - registered_at
        print(f"third replica served its first calls {took:.1f} s after it registered ({new[-1][1]:.0f} requests seen)")
        assert took <= 5.0, new
        r = gymctl("scale", f"{RESOURCES}=1", "-p", PROJECT, *CTX, "--json", timeout=300)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["services"][RESOURCES] == {"replicas": 1, "running": 1, "registered": 1}
    finally:
        if runs is not None:
            runs.stop()
        prober.remove()
        restored = gymctl("scale", f"{RESOURCES}=2", "-p", PROJECT, *CTX, timeout=300)  # as the other tests expect it
    # Every collection, those running while the replicas came and went too, ends with all its rollouts on the first pass:
    # a replica leaving deregisters, then serves on while its callers still send it calls (gymctl.runtime.drain).
    for out, result in runs.results:
        failed = out.with_name(f"{out.stem}_failures.jsonl")
        assert result.returncode == 0 and not failed.exists(), (out.name, rows_of(failed)[:3] if failed.exists() else None, result.stderr[-500:])
        got = rows_of(out)
        assert len(got) == len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in got}) == 1000
        assert {x["reward"] for x in got} == {1.0}
    print(f"{len(runs.results) * 1000} rollouts in {len(runs.results)} collections over the scale up and down, none failed")
    assert restored.returncode == 0, restored.stderr


def lab_client() -> Any:
    from gymctl.docker.contexts import sdk_client

    return sdk_client("gymctl-lab")


def current_tasks(client: Any) -> dict[str, dict[str, str]]:
    """{service: {task id: state}} of the tasks meant to run."""
    out: dict[str, dict[str, str]] = {}
    for svc in client.services.list(filters={"label": f"com.docker.stack.namespace={PROJECT}"}):
        short = svc.name[len(PROJECT) + 1:]
        out[short] = {t["ID"]: t["Status"]["State"] for t in svc.tasks() if t["DesiredState"] == "running"}
    return out


def test_up_of_a_changed_config_rolls_only_the_changed_services_one_task_at_a_time(stack, tmp_path):
    client = lab_client()
    start = current_tasks(client)
    out = tmp_path / "rolled.jsonl"
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(r=collect(stack["head_url"], out, 400)))
    runner.start()
    time.sleep(2)
    changed = [*CONFIG, "--set", f"{RESOURCES}.resources_servers.{RESOURCES}.description=rolled"]
    up: dict[str, Any] = {}
    deploying = threading.Thread(target=lambda: up.update(r=gymctl("up", "--topology", "swarm", "-p", PROJECT, *CTX, *changed, "--json",
                                                                   "--timeout", "240", timeout=600)))
    deploying.start()
    samples = []  # the resources tasks while it rolls: how many run, how many are on their way
    while deploying.is_alive():
        tasks = current_tasks(client).get(RESOURCES, {})
        samples.append((sum(s == "running" for s in tasks.values()), sum(s != "running" for s in tasks.values())))
        time.sleep(0.5)
    r = up["r"]
    assert r.returncode == 0, r.stderr
    runner.join(timeout=900)
    end = current_tasks(client)
    # Only what the change touches rolled: the resources server, and the head (it serves the whole config).
    assert set(end[RESOURCES]).isdisjoint(start[RESOURCES]) and set(end["head"]).isdisjoint(start["head"]), (start, end)
    assert end[AGENT] == start[AGENT] and end["policy_model"] == start["policy_model"], (start, end)
    # One task at a time, start-first: never more than one new task on its way, never fewer than 2 running.
    assert max(on_way for _, on_way in samples) <= 1 and min(running for running, _ in samples) >= 2, samples
    assert json.loads(r.stdout)["services"][RESOURCES] == {"replicas": 2, "running": 2, "registered": 2}
    # The collection goes on; a rollout in flight when the head restarted may have failed: the rerun retries exactly those.
    first = result["r"]
    failed = 2000 - len(rows_of(out))
    print(f"\nrolling update during a collection: {failed} rollout(s) to retry; first run exit {first.returncode}")
    assert failed <= 64, first.stderr[-2000:]  # at most the rollouts in flight (--concurrency 64)
    rerun = collect(stack["head_url"], out, 400)
    assert rerun.returncode == 0, first.stderr + rerun.stderr
    got = rows_of(out)
    assert len(got) == len({(x["_ng_task_index"], x["_ng_rollout_index"]) for x in got}) == 2000
    assert {x["reward"] for x in got} == {1.0}


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
