"""NeMo Gym's own servers, unmodified, under gymctl: `gymctl run` from the root of a NeMo Gym checkout.

The checkout is built once per session from the servers the `nemo-gym` 0.7.0 package ships (scripts/install_nemo_gym.sh
installs it), each with its per-server `.venv` (the install's, linked in). The LLM is the only double: bench's stub.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, http_json, interrupt
from tests.nemo_gym_env import nemo_gym_bin

pytestmark = pytest.mark.nemo_gym

SEED = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
        "-c", "responses_api_models/openai_model/configs/openai_model.yaml"]
AGENT = "example_single_tool_call_simple_agent"
NEMO_SERVERS = ("resources_servers/example_single_tool_call", "responses_api_agents/simple_agent", "responses_api_models/openai_model",
                "environment_servers/legacy_agent")
# Two more environments whose verify runs offline (no judge, no external service); their venvs are the example's
# (same requirements: nemo-gym, ray, openai).
OTHER_ENVS = {"equivalence_rule": ("configs/lc.yaml", "lc_equivalence_rule_simple_agent"),
              "xlam_fc": ("configs/xlam_fc.yaml", "xlam_fc_simple_agent")}


def make_checkout(root: Path, servers: tuple[str, ...] | list[str], venv_of: dict[str, str] | None = None) -> Path:
    """A directory laid out as a NeMo Gym checkout: the package's own server code, each with its `.venv`."""
    from bench.nemo_gym_servers import make_checkout as build

    nemo_gym_bin("ng_run")  # skips (with how to install) when NeMo Gym is absent
    return build(root, servers, venv_of)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("i13-nemo-gym-checkout")
    example = "resources_servers/example_single_tool_call"
    return make_checkout(root, [*NEMO_SERVERS, *(f"resources_servers/{e}" for e in OTHER_ENVS)],
                         venv_of={f"resources_servers/{e}": example for e in OTHER_ENVS})


@pytest.fixture(scope="session")
def stub() -> Iterator[str]:
    from bench.upstream_stub import StubThread

    with StubThread() as s:
        yield s.url


@dataclass
class Run:
    proc: subprocess.Popen
    head_url: str
    log: Path

    def instances(self) -> dict[str, dict]:
        return {i["process_name"]: i for i in http_json(self.head_url + "/server_instances")[1]}  # type: ignore[union-attr]


def gymctl_run(cwd: Path, args: list[str], tmp_path: Path, timeout: float = 150.0) -> Run:
    port = free_port()
    log = tmp_path / f"run-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gymctl", "run", *args, "--set", f"head_server.port={port}"], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    run = Run(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gymctl run exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if http_json(run.head_url + "/health", timeout=2)[0] == 200:
                return run
        except OSError:
            pass
        time.sleep(0.2)
    health = http_json(run.head_url + "/health", timeout=5)
    stop(run)
    raise AssertionError(f"not ready in {timeout} s (head: {health}):\n{log.read_text()[-6000:]}")


def stop(run: Run) -> list[psutil.Process]:
    """SIGINT, then what is left of its processes (none expected)."""
    try:
        tree = psutil.Process(run.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    interrupt(run.proc, 30)
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    return left


def policy(stub: str) -> list[str]:
    return [f"+policy_base_url={stub}/v1", "+policy_api_key=dummy", "+policy_model_name=stub"]


def collect(cwd: Path, head_url: str, agent: str, data: Path, out: Path, repeats: int) -> list[dict]:
    res = subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", head_url, "--agent", agent, "--input", str(data),
                          "--output", str(out), "--num-repeats", str(repeats), "--concurrency", "16"],
                         cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_separated_runs_nemo_gyms_own_servers_registered_by_gymctl(checkout, stub, tmp_path):
    run = gymctl_run(checkout, ["--topology", "separated", "--restart", "on-failure", *SEED, *policy(stub)], tmp_path)
    try:
        items = run.instances()
        for name, rel in (("example_single_tool_call", NEMO_SERVERS[0]), (AGENT, NEMO_SERVERS[1]), ("policy_model", NEMO_SERVERS[2])):
            item = items[name]
            assert item["status"] == "healthy" and item["port"] > 0 and item["url"] == f"http://127.0.0.1:{item['port']}"
            # The registered pid is the server itself, on its own venv's interpreter, started on its own app.py.
            cmdline = psutil.Process(item["pid"]).cmdline()
            assert cmdline == [str(checkout / rel / ".venv/bin/python"), str(checkout / rel / "app.py")]
            assert http_json(item["url"] + "/")[0] == 200
        assert items["example_single_tool_call_environment_server"]["url"] == items[AGENT]["url"]  # legacy_agent: its agent

        row = json.loads((checkout / NEMO_SERVERS[0] / "data/example.jsonl").read_text().splitlines()[0])
        code, body = http_json(items[AGENT]["url"] + "/run", row, timeout=60)
        assert code == 200 and body["reward"] == 1.0, body

        status = subprocess.run([sys.executable, "-m", "gymctl", "status", "--head", run.head_url], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "4 servers found (4 healthy, 0 unhealthy)" in status.stdout + status.stderr

        out = tmp_path / "ng_out.jsonl"
        res = subprocess.run(
            [str(nemo_gym_bin("ng_collect_rollouts")), f"+agent_name={AGENT}", f"+input_jsonl_fpath={checkout / NEMO_SERVERS[0] / 'data/example.jsonl'}",
             f"+output_jsonl_fpath={out}", "+num_repeats=2", "+head_server.host=127.0.0.1", f"+head_server.port={run.head_url.rsplit(':', 1)[1]}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": ""},
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [1.0] * 10

        # --restart on-failure: a NeMo Gym server killed is started again, on its port, and registered under its new pid.
        old = items["example_single_tool_call"]
        os.kill(old["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = run.instances().get("example_single_tool_call")
            if now and now["pid"] != old["pid"] and now["status"] == "healthy":
                break
            time.sleep(0.5)
        assert now and now["pid"] != old["pid"] and now["url"] == old["url"], now
        code, body = http_json(items[AGENT]["url"] + "/run", row, timeout=60)
        assert code == 200 and body["reward"] == 1.0, body
    finally:
        left = stop(run)
    assert left == []
    assert run.proc.returncode == 0, run.log.read_text()[-3000:]


def test_all_in_one_three_environments_collect_100_rollouts_each(checkout, stub, tmp_path):
    configs = [*SEED]
    for env, (cfg, _) in OTHER_ENVS.items():
        configs += ["-c", f"resources_servers/{env}/{cfg}"]
    run = gymctl_run(checkout, [*configs, *policy(stub)], tmp_path)
    try:
        pids = {i["pid"] for i in run.instances().values()}
        assert len(pids) == 7 and run.proc.pid not in pids  # 3 resources servers, 3 agents, 1 model: each its own process
        rewards = {}
        for env, agent in [("example_single_tool_call", AGENT), *((e, a) for e, (_, a) in OTHER_ENVS.items())]:
            data = checkout / "resources_servers" / env / "data/example.jsonl"
            rows = collect(checkout, run.head_url, agent, data, tmp_path / f"{env}.jsonl", repeats=20)
            assert len(rows) == 100
            rewards[env] = collections.Counter(r["reward"] for r in rows)
        # What each environment's own verify gives for the stub's answers (it calls get_weather, then says a short line).
        assert rewards == {"example_single_tool_call": {1.0: 100}, "equivalence_rule": {0.0: 100}, "xlam_fc": {0.0: 100}}
    finally:
        left = stop(run)
    assert left == []


def test_mixed_nemo_gym_resources_with_gymctls_agent_and_scripted_policy(stub, tmp_path):
    """Only the resources server is NeMo Gym's: the agent and the policy are gymctl's own (shipped) servers."""
    root = make_checkout(tmp_path / "co", [NEMO_SERVERS[0]])
    run = gymctl_run(root, ["--topology", "separated", SEED[0], SEED[1], "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml"], tmp_path)
    try:
        items = run.instances()
        assert psutil.Process(items["example_single_tool_call"]["pid"]).cmdline()[0] == str(root / NEMO_SERVERS[0] / ".venv/bin/python")
        assert "gymctl" in " ".join(psutil.Process(items[AGENT]["pid"]).cmdline())
        rows = collect(root, run.head_url, AGENT, root / NEMO_SERVERS[0] / "data/example.jsonl", tmp_path / "out.jsonl", repeats=4)
        assert [r["reward"] for r in rows] == [1.0] * 20
    finally:
        left = stop(run)
    assert left == []


def test_mixed_gymctls_resources_with_nemo_gyms_agent_and_model(stub, tmp_path):
    """The reverse: gymctl's example resources server (shipped), NeMo Gym's simple_agent and openai_model, all-in-one."""
    root = make_checkout(tmp_path / "co", [NEMO_SERVERS[1], NEMO_SERVERS[2]])
    run = gymctl_run(root, [*SEED, *policy(stub)], tmp_path)
    try:
        items = run.instances()
        assert items["example_single_tool_call"]["pid"] == run.proc.pid  # gymctl's, in the all-in-one process
        assert items[AGENT]["pid"] != run.proc.pid
        data = Path(items["example_single_tool_call"]["dir_path"]) / "data/example.jsonl"
        rows = collect(root, run.head_url, AGENT, data, tmp_path / "out.jsonl", repeats=4)
        assert [r["reward"] for r in rows] == [1.0] * 20
    finally:
        left = stop(run)
    assert left == []
