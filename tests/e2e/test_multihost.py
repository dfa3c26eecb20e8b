"""The seed's distributed pattern on real hosts (network namespaces with their own addresses): the shipped
coordinator and worker configs with only the addresses changed, workers joining and leaving mid-collection,
a cut link, and the start-up errors a user meets on several hosts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.hostnet import Host, HostNet, Proc
from tests.conftest import EXAMPLE_DATA, REPO, http_json

pytestmark = pytest.mark.netns

AGENT = "example_resources_simple_agent"
EXAMPLES = REPO / "examples/multi-host"
BIN = Path(sys.executable).parent
FAST = {"GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "2", "GYMCTL_HEAD_WAIT_S": "60"}  # a lost host leaves within ~2 s


@pytest.fixture(scope="module")
def net() -> Iterator[HostNet]:
    with HostNet(["coord", "w1", "w2"]) as hosts:
        yield hosts


@pytest.fixture
def hosts(net: HostNet) -> Iterator[HostNet]:
    yield net
    for host in net.hosts.values():
        host.stop_all()
        host.reconnect()


def shipped(name: str, tmp_path: Path, net: HostNet, worker: Host | None = None) -> Path:
    """A shipped example config with only its addresses changed to the test hosts'."""
    text = (EXAMPLES / name).read_text().replace("10.0.0.1", net["coord"].address)
    text = text.replace("10.0.0.2", (worker or net["w1"]).address)
    out = tmp_path / f"{(worker.name if worker else 'coord')}-{name}"
    out.write_text(text)
    return out


def start_stub(host: Host, tmp_path: Path, delay_s: float) -> str:
    """The LLM double on the worker (all interfaces, so the test reads what it got); its URL as the worker sees it."""
    stub = host.start([str(BIN / "python"), "-m", "bench.upstream_stub", "--host", "0.0.0.0", "--port", "8000", "--delay-s", str(delay_s),
                       "--keep", "1"], tmp_path / f"{host.name}-stub.log", cwd=REPO)
    stub.wait_for("upstream stub listening")
    return "http://127.0.0.1:8000"


def model_calls(host: Host) -> int:
    return int(http_json(f"http://{host.address}:8000/_stub/requests")[1]["count"])  # type: ignore[index]


def start_worker(host: Host, tmp_path: Path, net: HostNet, *, delay_s: float = 0.0, env: dict[str, str] | None = None) -> Proc:
    url = start_stub(host, tmp_path, delay_s)
    config = shipped("worker-config.yaml", tmp_path, net, worker=host)
    return host.start([str(BIN / "ng_run"), f"+config_paths=[{config}]", f"+policy_base_url={url}/v1", "+policy_api_key=dummy",
                       "+policy_model_name=stub"], tmp_path / f"{host.name}-worker.log", env={**FAST, **(env or {})}, cwd=REPO)


def start_coordinator(net: HostNet, tmp_path: Path) -> Proc:
    config = shipped("coordinator-config.yaml", tmp_path, net)
    return net["coord"].start([str(BIN / "ng_run"), f"+config_paths=[{config}]"], tmp_path / "coordinator.log", env=FAST, cwd=REPO)


def head_url(net: HostNet) -> str:
    return f"http://{net['coord'].address}:11000"


def wait_ready(net: HostNet, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_json(head_url(net) + "/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the coordinator's head did not get ready"
        time.sleep(0.2)


def collect(net: HostNet, tmp_path: Path, *, repeats: int = 200, concurrency: int = 64) -> Proc:
    """`gymctl collect` on the coordinator, in the background."""
    out = tmp_path / "rollouts.jsonl"
    return net["coord"].start([str(BIN / "gymctl"), "collect", "--head", head_url(net), "--agent", AGENT, "--input", str(EXAMPLE_DATA),
                               "--output", str(out), "--num-repeats", str(repeats), "--concurrency", str(concurrency)],
                              tmp_path / f"collect-{time.monotonic_ns()}.log", cwd=REPO)


def rows(tmp_path: Path) -> list[dict]:
    path = tmp_path / "rollouts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def finish(proc: Proc, timeout: float = 240.0) -> int:
    proc.popen.wait(timeout)
    return proc.popen.returncode


def assert_one_row_per_pair(tmp_path: Path, tasks: int = 5, repeats: int = 200) -> None:
    got = rows(tmp_path)
    pairs = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in got]
    assert len(pairs) == len(set(pairs)) == tasks * repeats, (len(pairs), len(set(pairs)))
    assert {r["reward"] for r in got} == {1.0}


def test_shipped_configs_coordinator_and_worker_collect_1000_rollouts_through_the_workers_model(hosts, tmp_path):
    worker = start_worker(hosts["w1"], tmp_path, hosts)  # before the coordinator: it waits for the head, then joins
    worker.wait_for("registering there")
    coordinator = start_coordinator(hosts, tmp_path)
    coordinator.wait_for("policy_model joined from another host")
    wait_ready(hosts)
    assert "expected from another host" in coordinator.output()  # its ready table said so until the worker registered

    status = hosts["coord"].run([str(BIN / "gymctl"), "status", "--head", head_url(hosts)], cwd=REPO)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "3 servers found (3 healthy, 0 unhealthy)" in status.stdout
    assert f"http://{hosts['w1'].address}:9000" in status.stdout and f"http://{hosts['coord'].address}:8002" in status.stdout

    before = model_calls(hosts["w1"])
    assert finish(collect(hosts, tmp_path)) == 0
    assert_one_row_per_pair(tmp_path)
    assert model_calls(hosts["w1"]) - before == 2000  # two model calls a rollout, every one on the worker


def test_a_worker_joins_mid_collection_and_one_is_killed_the_rerun_fills_every_pair(hosts, tmp_path):
    first = start_worker(hosts["w1"], tmp_path, hosts, delay_s=0.2)
    start_coordinator(hosts, tmp_path)
    wait_ready(hosts)
    run = collect(hosts, tmp_path, concurrency=32)
    while len(rows(tmp_path)) < 100:
        assert run.popen.poll() is None, run.output()
        time.sleep(0.1)
    start_worker(hosts["w2"], tmp_path, hosts, delay_s=0.2).wait_for("ready in")
    while len(rows(tmp_path)) < 400:
        assert run.popen.poll() is None, run.output()
        time.sleep(0.1)
    first.kill()  # the first worker dies mid-collection; its model calls in flight are cut
    code = finish(run)
    assert model_calls(hosts["w2"]) > 0, "the second worker took no traffic"
    assert code in (0, 1), run.output()
    failures = tmp_path / "rollouts_failures.jsonl"
    if code == 1:  # what could not be failed over is reported with its reason, never dropped
        reasons = [json.loads(line) for line in failures.read_text().splitlines() if line.strip()]
        assert reasons and all(r.get("reason") and "Internal Server Error" not in r["reason"] for r in reasons), reasons[:3]
    assert finish(collect(hosts, tmp_path, concurrency=32)) == 0  # the rerun fills in what failed
    assert_one_row_per_pair(tmp_path)


def test_a_cut_link_mid_collection_fails_over_within_a_lease_and_the_rerun_fills_every_pair(hosts, tmp_path):
    start_worker(hosts["w1"], tmp_path, hosts, delay_s=0.2)
    start_worker(hosts["w2"], tmp_path, hosts, delay_s=0.2)
    start_coordinator(hosts, tmp_path)
    wait_ready(hosts)
    deadline = time.monotonic() + 20
    while sum(1 for i in http_json(head_url(hosts) + "/server_instances")[1] if i["process_name"] == "policy_model") < 2:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "both workers did not register"
        time.sleep(0.2)
    run = collect(hosts, tmp_path, concurrency=32)
    while len(rows(tmp_path)) < 200:
        assert run.popen.poll() is None, run.output()
        time.sleep(0.1)
    hosts["w1"].cut()  # no reset, no FIN: the calls in flight to it hang until its lease expires at the head
    cut_at = time.monotonic()
    code = finish(run)
    assert code in (0, 1), run.output()
    took = time.monotonic() - cut_at
    assert took < 120, f"the collection hung {took:.0f} s after the link was cut"  # not a 600 s model timeout
    assert finish(collect(hosts, tmp_path, concurrency=32)) == 0
    assert_one_row_per_pair(tmp_path)


def test_advertising_loopback_to_a_head_on_another_host_is_refused(hosts, tmp_path):
    config = shipped("worker-config.yaml", tmp_path, hosts)
    config.write_text(config.read_text().replace(f"host: {hosts['w1'].address}", "host: 127.0.0.1"))
    done = hosts["w1"].run([str(BIN / "ng_run"), f"+config_paths=[{config}]", "+policy_base_url=http://127.0.0.1:1/v1",
                            "+policy_api_key=dummy", "+policy_model_name=stub"], cwd=REPO, timeout=60)
    assert done.returncode != 0
    err = done.stderr
    assert "policy_model would advertise 127.0.0.1 to the head at http://10.213.7.1:11000, which is on another host" in err, err
    assert "policy_model.responses_api_models.openai_model.host" in err and hosts["w1"].address in err  # the fix, with this host's address
    assert "Traceback" not in err


def test_a_worker_whose_head_never_appears_gives_up_saying_where_and_how_long(hosts, tmp_path):
    config = shipped("worker-config.yaml", tmp_path, hosts)
    started = time.monotonic()
    done = hosts["w1"].run([str(BIN / "ng_run"), f"+config_paths=[{config}]", "+policy_base_url=http://127.0.0.1:1/v1",
                            "+policy_api_key=dummy", "+policy_model_name=stub"], env={"GYMCTL_HEAD_WAIT_S": "3"}, cwd=REPO, timeout=60)
    assert done.returncode != 0 and time.monotonic() - started < 30
    err = done.stderr
    assert "registration with the head at http://10.213.7.1:11000: not after 3.0 s" in err, err
    assert "ClientConnectorError" in err and "Traceback" not in err


def test_two_hosts_advertising_one_address_and_port_for_different_instances_are_told(hosts, tmp_path):
    start_worker(hosts["w1"], tmp_path, hosts)
    start_coordinator(hosts, tmp_path)
    wait_ready(hosts)
    # w2 claims w1's address and port for another instance (it binds everywhere, so nothing stops it locally).
    clash = tmp_path / "clash.yaml"
    clash.write_text(shipped("worker-config.yaml", tmp_path, hosts).read_text().replace("policy_model:", "judge_model:"))
    done = hosts["w2"].run([str(BIN / "ng_run"), f"+config_paths=[{clash}]", "+policy_base_url=http://127.0.0.1:1/v1",
                            "+policy_api_key=dummy", "+policy_model_name=stub"], env={**FAST, "GYMCTL_BIND_HOST": "0.0.0.0"}, cwd=REPO, timeout=60)
    assert done.returncode != 0
    assert f"refused judge_model: another instance already holds http://{hosts['w1'].address}:9000" in done.stderr, done.stderr
    assert "two hosts advertise the same address and port" in done.stderr


def test_a_worker_in_the_separated_topology_starts_no_head_and_its_processes_join(hosts, tmp_path):
    start_coordinator(hosts, tmp_path)
    url = start_stub(hosts["w1"], tmp_path, 0.0)
    config = shipped("worker-config.yaml", tmp_path, hosts)
    worker = hosts["w1"].start([str(BIN / "gymctl"), "run", "-c", str(config), "--topology", "separated", "--set", f"policy_base_url={url}/v1",
                                "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"], tmp_path / "worker.log", env=FAST, cwd=REPO)
    worker.wait_for("ready in")
    out = worker.output()
    assert "on another host" in out and not [line for line in out.splitlines() if line.startswith("head ") and " | " in line]  # no head child
    wait_ready(hosts)
    assert finish(collect(hosts, tmp_path, repeats=20)) == 0
    assert_one_row_per_pair(tmp_path, repeats=20)
    assert worker.stop() == 0  # a clean stop: deregistered, every child gone
