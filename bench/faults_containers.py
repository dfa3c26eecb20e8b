"""bench.faults on containers: a `gymctl up --topology separated` stack (token by default) collecting while one server's
container is killed (`kill -9` of its init from the host: a crash, so the restart policy brings it back) or frozen
(`docker pause` past the lease and the collector's --timeout, then `docker unpause`). Same report as bench.faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.procs import free_port
from bench.systems import REPO

AGENT = "example_single_tool_call_simple_agent"
NAMES = {"agent": AGENT, "resources": "example_single_tool_call", "model": "policy_model", "head": "head"}
CONFIGS = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
           "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml"]
GYMCTL = [sys.executable, "-m", "gymctl"]
PAUSE_S = 10.0  # past the default 6 s lease and the collection's --timeout
TIMEOUT_S = "5"
BUILD_LOCK = "/tmp/gymctl-build.lock"  # one image build at a time on a shared machine


def _gymctl(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GYMCTL_AUTH_TOKEN"}
    return subprocess.run([*GYMCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _container(project: str, instance: str) -> dict:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.gymctl.project={project}", "--filter",
                          f"label=io.gymctl.instance={instance}"], capture_output=True, text=True, check=True).stdout.split()
    return json.loads(subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True, check=True).stdout)[0]


def _instances(head: str, token: str) -> list[dict]:
    req = urllib.request.Request(head + "/server_instances", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return list(json.loads(r.read()))
    except OSError:
        return []


def _registered_since(head: str, token: str, name: str, since_s: float, timeout_s: float = 90) -> float | None:
    """Seconds until `name` is registered healthy by a process younger than `since_s` ago (a restarted container)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        age = time.monotonic() - t0 + since_s
        if any(i["process_name"] == name and i.get("status") == "healthy" and (i.get("uptime_seconds") or 1e9) < age
               for i in _instances(head, token)):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def _healthy(head: str, token: str, name: str, timeout_s: float = 60) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if any(i["process_name"] == name and i.get("status") == "healthy" for i in _instances(head, token)):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def _head_health(head: str) -> int | None:
    try:
        with urllib.request.urlopen(head + "/health", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def _head_back(head: str, timeout_s: float = 90) -> float | None:
    """Seconds until a restarted head answers /health 200 (every instance registered with it again)."""
    t0 = time.monotonic()
    while _head_health(head) == 200 and time.monotonic() - t0 < 10:  # the old one, until the kill lands
        time.sleep(0.05)
    while time.monotonic() - t0 < timeout_s:
        if _head_health(head) == 200:
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def _rows(path: Path) -> list[tuple[int, int]]:
    whole = path.read_text().split("\n")[:-1] if path.exists() else []
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in map(json.loads, whole)]


def _build_images(work: Path) -> None:
    """The example's images from this tree (unchanged ones skipped), under the build lock."""
    import fcntl

    with open(BUILD_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = _gymctl("build", "--topology", "separated", "--quiet", *CONFIGS, cwd=work, timeout=1200)
    if built.returncode != 0:
        raise RuntimeError(f"gymctl build failed:\n{built.stderr[-2000:]}")


def container_fault(fault: str, rollouts: int, concurrency: int, work: Path) -> dict[str, object]:
    kind, _, who = fault.partition(":")
    name = NAMES[who]
    head_port, agent_port = free_port(), free_port()
    project = f"gymctl-bench-faults-{kind}-{who}"
    head = f"http://127.0.0.1:{head_port}"
    _build_images(work)
    up = _gymctl("up", "--topology", "separated", "--wait", "-p", project, *CONFIGS,
                 "--set", f"head_server.port={head_port}",
                 "--set", f"{AGENT}.responses_api_agents.simple_agent.port={agent_port}", cwd=work)
    if up.returncode != 0:
        raise RuntimeError(f"gymctl up failed:\n{up.stderr[-2000:]}")
    try:
        token = (work / ".gymctl" / "stacks" / project / "auth_token").read_text().strip()
        rows = json.loads((REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[0])
        src, dst = work / f"{kind}-{who}.in.jsonl", work / f"{kind}-{who}.out.jsonl"
        src.write_text((json.dumps(rows) + "\n") * rollouts)
        argv = ["collect", "--head", head, "--agent", AGENT, "--input", str(src), "--output", str(dst), "--concurrency", str(concurrency),
                "--timeout", TIMEOUT_S, "--json"]
        env = {k: v for k, v in os.environ.items() if k != "GYMCTL_AUTH_TOKEN"}
        t0 = time.monotonic()
        collect = subprocess.Popen([*GYMCTL, *argv], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        while len(_rows(dst)) < rollouts // 4 and collect.poll() is None:
            time.sleep(0.02)
        c = _container(project, name)
        left_rotation = None
        if kind == "container-kill":
            os.kill(int(c["State"]["Pid"]), signal.SIGKILL)  # the container's init: a crash, not `docker stop`
            recovery = _head_back(head) if who == "head" else _registered_since(head, token, name, 0.0)
        else:
            subprocess.run(["docker", "pause", c["Id"]], check=True, capture_output=True)
            t_stop = time.monotonic()
            while any(i["process_name"] == name and i.get("status") == "healthy" for i in _instances(head, token)) \
                    and time.monotonic() - t_stop < 30:
                time.sleep(0.1)
            left_rotation = time.monotonic() - t_stop
            time.sleep(max(0.0, PAUSE_S - left_rotation))
            subprocess.run(["docker", "unpause", c["Id"]], check=True, capture_output=True)
            recovery = _healthy(head, token, name)
        stdout, _ = collect.communicate(timeout=900)
        first = json.loads(stdout)
        first_s = time.monotonic() - t0
        rerun = _gymctl(*argv, cwd=work)
        second = json.loads(rerun.stdout)
        pairs = _rows(dst)
        return {"fault": fault, "recovery_s": recovery, "left_rotation_s": left_rotation, "failed_first": first["failed"],
                "kinds": first.get("failure_kinds", {}), "first_run_s": first_s, "rerun_written": second["written"],
                "rows": len(pairs), "unique": len(set(pairs)), "complete": len(pairs) == len(set(pairs)) == rollouts}
    finally:
        _gymctl("down", "-p", project, cwd=work)
