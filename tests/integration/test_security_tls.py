"""The must-show of the security issue on a real engine, one shared stack: `gymctl up --topology separated --tls` with no
token and no certificate given. The published head answers HTTPS only, 401 without the token; `gymctl status` and
`gymctl collect` find the stack (URL, CA, token) with no --head; every container is read-only, drops all capabilities, has
no-new-privileges and runs as non-root; the API key is in no image layer (`docker save`) and no log, the token in neither.
Then faults on the same stack mid-collection: each server's container killed -9 in turn (the restart policy brings it
back), the resources server's paused past its lease (out of rotation, back on unpause); the rerun leaves one row per
(task, repeat)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gymctl.rollouts.posting import RETRY_WINDOW_S
from tests.conftest import REPO, seconds_until
from tests.integration.conftest import AGENT, StackUnderTest, free_ports, remove_project

pytestmark = pytest.mark.docker
API_KEY = "sk-i15-TLS-LITERAL-KEY-9876543210"
DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GYMCTL_AUTH_TOKEN", "GYMCTL_HEAD_URL", "GYMCTL_TLS_CA_FILE")}
    return subprocess.run([sys.executable, "-m", "gymctl", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


class TlsStack:
    def __init__(self, st: StackUnderTest, cwd: Path) -> None:
        self.st, self.cwd = st, cwd
        self.state = cwd / ".gymctl" / "stacks" / st.project

    @property
    def token(self) -> str:
        return (self.state / "auth_token").read_text().strip()

    @property
    def ca(self) -> Path:
        return self.state / "tls" / "ca.pem"

    def status_of(self, name: str) -> set[str]:
        """The statuses the head lists for `name` (through the proxy, with the token)."""
        code, body = self.get(f"https://127.0.0.1:{self.st.head_port}/server_instances", self.token)
        return {i["status"] for i in json.loads(body) if i["process_name"] == name} if code == 200 else set()

    def get(self, url: str, token: str | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        context = ssl.create_default_context(cafile=str(self.ca)) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(req, timeout=10, context=context) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@pytest.fixture(scope="module")
def tls_stack(example_images: list, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    head, agent = free_ports(2)
    st = StackUnderTest(f"gymctl-it-tls-{uuid.uuid4().hex[:6]}", head, agent)
    stack = TlsStack(st, tmp_path_factory.mktemp("tls-stack"))
    try:
        r = run("up", "--topology", "separated", "--tls", "--wait", "--timeout", "240", "-p", st.project,
                *st.config_args("--set", f"policy_model.responses_api_models.scripted_model.api_key={API_KEY}"), cwd=stack.cwd, timeout=900)
        assert r.returncode == 0, r.stderr
        assert f"head https://127.0.0.1:{head}" in r.stderr and API_KEY not in r.stderr + r.stdout
        yield stack
    finally:
        remove_project(st.project)


def test_the_published_head_answers_https_only_and_401_without_the_token(tls_stack):
    st = tls_stack.st
    code, body = tls_stack.get(f"http://127.0.0.1:{st.head_port}/server_instances")
    assert code == 400 and b"plain HTTP request was sent to HTTPS port" in body  # nginx: no plain HTTP on a published port
    assert tls_stack.get(f"https://127.0.0.1:{st.head_port}/server_instances")[0] == 401
    assert tls_stack.get(f"https://127.0.0.1:{st.agent_port}/run")[0] == 401
    code, body = tls_stack.get(f"https://127.0.0.1:{st.head_port}/server_instances", tls_stack.token)
    assert code == 200
    agent = next(i for i in json.loads(body) if i["process_name"] == AGENT)
    assert agent["host_url"] == f"https://127.0.0.1:{st.agent_port}"
    assert tls_stack.get(f"https://127.0.0.1:{st.head_port}/livez")[0] == 200  # liveness stays open
    # The token and the CA are kept where only their owner reads them; neither is in the rendered file.
    for path in (tls_stack.state / "auth_token", tls_stack.state / "stack.json", tls_stack.state / "tls" / "key.pem"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(tls_stack.state).st_mode) == 0o700
    compose = (tls_stack.state / "docker-compose.yml").read_text()
    assert tls_stack.token not in compose and API_KEY not in compose and "PRIVATE KEY" not in compose


def test_status_and_collect_find_the_stack_with_no_head_given(tls_stack, tmp_path):
    st = tls_stack.st
    status = run("status", "-p", st.project, cwd=tls_stack.cwd)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "4 servers found (4 healthy, 0 unhealthy)" in status.stdout and f"https://127.0.0.1:{st.head_port}" in status.stdout
    out = tmp_path / "rollouts.jsonl"
    r = run("collect", "--agent", AGENT, "--input", str(DATA), "--output", str(out), "--num-repeats", "4", cwd=tls_stack.cwd)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20 and {x["reward"] for x in rows} == {1.0}


def inspect(project: str) -> list[dict]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.gymctl.project={project}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)


def test_every_container_is_read_only_without_capabilities_as_non_root(tls_stack):
    containers = inspect(tls_stack.st.project)
    assert len(containers) == 5  # head, resources, model, agent, tls-proxy
    for c in containers:
        name, host = c["Name"], c["HostConfig"]
        assert host["ReadonlyRootfs"] is True, name
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), name
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), name
        assert c["Config"]["User"] not in ("", "0", "root"), name
        assert not [m for m in c["Mounts"] if m.get("RW")], name  # nothing writable but the tmpfs
    published = {c["Name"].lstrip("/"): c["HostConfig"]["PortBindings"] for c in containers if c["HostConfig"]["PortBindings"]}
    assert list(published) == [f"{tls_stack.st.project}-tls-proxy-1"]  # only the proxy is on the host


def test_the_api_key_and_token_are_in_no_image_layer_and_no_log(tls_stack):
    containers = inspect(tls_stack.st.project)
    secrets = (API_KEY.encode(), tls_stack.token.encode())
    images = sorted({c["Config"]["Image"] for c in containers})
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    assert save.stdout is not None
    tail, size = b"", 0
    while chunk := save.stdout.read(1 << 20):
        window = tail + chunk
        assert not any(s in window for s in secrets), "a secret is in an image layer"
        tail, size = window[-64:], size + len(chunk)
    assert save.wait() == 0 and size > 50_000_000
    for c in containers:
        logs = subprocess.run(["docker", "logs", c["Id"]], capture_output=True)
        assert not any(s in logs.stdout + logs.stderr for s in secrets), c["Name"]


def container_of(project: str, instance: str) -> dict:
    return next(c for c in inspect(project) if c["Config"]["Labels"].get("io.gymctl.instance") == instance)


def restarted_and_registered(stack: TlsStack, name: str, restarts: int, killed_at: float) -> bool:
    """The container of `name` restarted (its restart policy) and a process started since `killed_at` is registered healthy."""
    c = container_of(stack.st.project, name)
    if c["RestartCount"] <= restarts or not c["State"]["Running"]:
        return False
    code, body = stack.get(f"https://127.0.0.1:{stack.st.head_port}/server_instances", stack.token)
    return code == 200 and any(i["process_name"] == name and i["status"] == "healthy" and (i.get("uptime_seconds") or 1e9)
                               < time.monotonic() - killed_at + 0.5 for i in json.loads(body))


def test_each_server_container_killed_and_one_paused_mid_collection_then_the_rerun_leaves_one_row_per_pair(tls_stack, tmp_path):
    rows, resources = 1500, "example_single_tool_call"
    faults = [("kill", AGENT), ("kill", resources), ("kill", "policy_model"), ("pause", resources)]
    src, out, failures = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "out_failures.jsonl"
    src.write_text((DATA.read_text().splitlines()[0] + "\n") * rows)
    argv = ["collect", "--agent", AGENT, "--input", str(src), "--output", str(out), "--timeout", "5", "--json", "-p", tls_stack.st.project]
    env = {k: v for k, v in os.environ.items() if k not in ("GYMCTL_AUTH_TOKEN", "GYMCTL_HEAD_URL", "GYMCTL_TLS_CA_FILE")}
    proc = subprocess.Popen([sys.executable, "-m", "gymctl", *argv], cwd=tls_stack.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)

    def done() -> int:  # rollouts finished, written or failed
        return sum(p.read_text().count("\n") for p in (out, failures) if p.exists())

    seen: dict[str, float] = {}
    try:
        seconds_until(lambda: done() >= rows // 10 or proc.poll() is not None, 120, poll_s=0.1)
        for what, name in faults:  # one after the other, each once the one before has healed
            assert proc.poll() is None, f"the collection ended before {what} {name}"  # every fault lands mid-collection
            c = container_of(tls_stack.st.project, name)
            if what == "kill":
                os.kill(int(c["State"]["Pid"]), signal.SIGKILL)  # a crash of the container (its init), not `docker stop`
                t = time.monotonic()
                seen[f"kill {name}"] = seconds_until(lambda n=name, r=c["RestartCount"], t=t: restarted_and_registered(tls_stack, n, r, t), 60)
                continue
            subprocess.run(["docker", "pause", c["Id"]], check=True, capture_output=True)
            try:
                seen["pause: out of rotation"] = seconds_until(lambda n=name: tls_stack.status_of(n) == {"unhealthy"}, 15)
                assert seen["pause: out of rotation"] <= 6 + 2 + 1, seen  # within one lease (6 s) of its last heartbeat (every 2 s)
            finally:
                subprocess.run(["docker", "unpause", c["Id"]], check=True, capture_output=True)
            seen["unpause: back"] = seconds_until(lambda n=name: tls_stack.status_of(n) == {"healthy"}, 10)
            assert seen["unpause: back"] <= 2 + 1, seen  # its next heartbeat
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 1), stderr[-2000:]
    first = json.loads(stdout)
    failed = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    kinds = {f["_ng_failure_class"] for f in failed}
    assert kinds <= {"agent_run_error", "agent_request_failed", "timeout"}, kinds  # typed
    if seen[f"kill {AGENT}"] < RETRY_WINDOW_S - 2:  # back within the collector's window of sending again:
        # behind the proxy too the agent's restart loses nothing (the proxy drops the connection, it does not answer 502)
        lost = [f["reason"] for f in failed if f"{AGENT} at" in f["reason"] or "Bad Gateway" in f["reason"] or "nginx" in f["reason"]]
        assert "agent_request_failed" not in kinds and not lost, lost[:3]
    rerun = run(*argv, cwd=tls_stack.cwd, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout)["written"] == first["failed"]
    got = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in map(json.loads, out.read_text().splitlines())]
    assert len(got) == len(set(got)) == rows
    print("containers: " + ", ".join(f"{k} {v:.1f} s" for k, v in seen.items()) + f"; {first['failed']} failed {sorted(kinds)}, filled by the rerun")


def test_down_forgets_the_stack(tls_stack):
    r = run("down", "-p", tls_stack.st.project, cwd=tls_stack.cwd)
    assert r.returncode == 0, r.stderr
    assert not (tls_stack.state / "auth_token").exists() and not (tls_stack.state / "stack.json").exists()
    status = run("status", "-p", tls_stack.st.project, cwd=tls_stack.cwd)
    assert status.returncode != 0 and "Traceback" not in status.stderr
