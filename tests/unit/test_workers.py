"""Worker processes on one port (gymctl.instances.NAME.workers) and the collector spread over processes: what is refused
and why, the port shared by SO_REUSEPORT, loopback source addresses, and a collection spread over two real processes."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from gymctl.config import load_config
from gymctl.errors import ConfigError, GymctlError, PortInUseError, UsageError
from gymctl.rollouts import Collector, CollectSpec
from gymctl.rollouts.spread import MAX_PROCESSES, per_process_connections, spread_plan
from gymctl.runtime.separated import child_labels, instance_of
from gymctl.server.serving import bind_socket
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG

WORKERS = f"gymctl.instances.{AGENT}.workers"


def _load(*sets: str, configs: tuple[str, ...] = (EXAMPLE_CONFIG, SCRIPTED_CONFIG), cwd: Path = REPO):
    return load_config(list(configs), list(sets), cwd=cwd)


def test_workers_give_n_children_on_one_held_port_each_from_its_own_loopback_address():
    cfg = _load(f"++{WORKERS}=3")
    held: dict[str, socket.socket] = {}
    try:
        labels = child_labels(cfg, held=held)
        mine = [(label, env) for label, name, env in labels if name == AGENT]
        assert [label for label, _ in mine] == [f"{AGENT}/w1", f"{AGENT}/w2", f"{AGENT}/w3"]
        assert {instance_of(label) for label, _ in mine} == {AGENT}
        ports = {env["GYMCTL_PORT"] for _, env in mine}
        assert len(ports) == 1 and ports == {str(held[AGENT].getsockname()[1])}
        assert [env["GYMCTL_SOURCE_ADDRESS"] for _, env in mine] == ["127.1.1.1", "127.1.1.2", "127.1.1.3"]
        assert all(env["GYMCTL_WORKERS"] == "3" for _, env in mine)
        port = int(ports.pop())
        with pytest.raises(PortInUseError):  # held: another program cannot take it while workers restart
            bind_socket("127.0.0.1", port, "someone else")
        a = bind_socket("127.0.0.1", port, "w1", reuse_port=True)  # ... but each worker binds it
        b = bind_socket("127.0.0.1", port, "w2", reuse_port=True)
        a.close()
        b.close()
    finally:
        for sock in held.values():
            sock.close()
    assert [label for label, name, _ in labels if name != AGENT] == ["head", "example_single_tool_call", "policy_model"]


@pytest.mark.parametrize("value", ["0", "-2", "two", "true"])
def test_workers_must_be_a_count(value):
    with pytest.raises(ConfigError) as e:
        _load(f"++{WORKERS}={value}")
    assert e.value.key_path == WORKERS and "is not a valid count" in str(e.value)


def test_workers_on_a_server_that_keeps_sessions_in_memory_are_refused(tmp_path):
    servers = tmp_path / "servers"
    shutil.copytree(REPO / "servers", servers)
    app = servers / "resources_servers/example_single_tool_call/app.py"
    app.write_text(app.read_text().replace('SESSION_STATE = "request"', "SESSIONS = {}  # kept in this process"))
    cfg_args = (str(servers / EXAMPLE_CONFIG), str(servers / SCRIPTED_CONFIG))
    _load("++gymctl.instances.example_single_tool_call.replicas=2", configs=cfg_args, cwd=servers)  # replicas: fine
    with pytest.raises(ConfigError) as e:
        _load("++gymctl.instances.example_single_tool_call.workers=2", configs=cfg_args, cwd=servers)
    text = str(e.value)
    assert e.value.key_path == "gymctl.instances.example_single_tool_call.workers"
    assert 'SESSION_STATE = "request"' in text and "gymctl.instances.example_single_tool_call.replicas" in text


@pytest.mark.parametrize(("instance", "message"), [
    ("env_res", "is a NeMo Gym resources server, which keeps its sessions in its process's memory"),
    ("env_agent", "set NeMo Gym's env_agent.responses_api_agents.nemo_agent.num_workers: 2 instead"),
])
def test_workers_on_nemo_gym_servers_are_refused_naming_the_key(tmp_path, instance, message):
    from tests.unit.test_nemo_gym_servers_config import make

    config = str(make(tmp_path) / "c.yaml")
    with pytest.raises(ConfigError) as e:
        load_config([config], [f"++gymctl.instances.{instance}.workers=2"], cwd=tmp_path)
    assert e.value.key_path == f"gymctl.instances.{instance}.workers" and message in str(e.value)


def test_workers_in_the_all_in_one_topology_are_refused():
    from gymctl.config.workers import refuse_in_one_process

    with pytest.raises(ConfigError) as e:
        refuse_in_one_process(_load(f"++{WORKERS}=2"))
    assert e.value.key_path == WORKERS and "--topology separated" in str(e.value)


@pytest.mark.parametrize("concurrency", [0, -5])
def test_a_concurrency_of_zero_or_less_is_refused(tmp_path, concurrency):
    spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", concurrency=concurrency)
    with pytest.raises(UsageError, match=f"--concurrency {concurrency}: run at least one rollout at a time"):
        spec.check()


def test_a_concurrency_past_what_the_machine_holds_spread_is_refused_with_the_limit(tmp_path):
    per, files = per_process_connections()
    ceiling = MAX_PROCESSES * per
    assert spread_plan(ceiling).processes == MAX_PROCESSES  # the most it holds: spread over every process it may start
    spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", concurrency=ceiling + 1)
    with pytest.raises(UsageError) as e:
        spec.check()
    text = str(e.value)
    assert f"--concurrency {ceiling + 1:,}" in text and "even spread over processes" in text
    assert f"at most {ceiling:,}" in text and f"{files:,} per process" in text


def test_the_collector_spreads_only_when_one_process_cannot_hold_it():
    per, _ = per_process_connections()
    assert spread_plan(per).processes == 1
    assert spread_plan(per + 1).processes == 2
    assert spread_plan(65_000 if per >= 13_000 else per * 5).processes >= 5 if per <= 13_000 else True
    with pytest.raises(UsageError, match="not on loopback"):  # one source address: the port range is the bound
        spread_plan(30_000, max(2, -(-30_000 // per)), agent_url="http://10.1.2.3:8000")


async def test_connections_to_a_loopback_server_leave_from_the_source_address():
    from gymctl.server.connector import PacedConnector

    peers: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    import aiohttp

    async with server, aiohttp.ClientSession(connector=PacedConnector(source_address="127.2.0.7")) as session, session.get(f"http://127.0.0.1:{port}/") as r:
        assert await r.text() == "ok"
    assert peers == ["127.2.0.7"]
    with pytest.raises(ValueError, match="not an IPv4 loopback address"):
        PacedConnector(source_address="10.0.0.1")


async def test_a_collection_spread_over_two_processes_writes_every_rollout_once(tmp_path, example_deployment):
    from gymctl.rollouts.agents import resolve_agent
    from gymctl.server.response import new_session

    data = tmp_path / "in.jsonl"
    line = EXAMPLE_DATA.read_text().splitlines()[0]
    data.write_text("\n".join([line] * 30) + "\n")
    out = tmp_path / "out.jsonl"
    spec = CollectSpec(agent=AGENT, input_path=data, output_path=out, concurrency=8, num_repeats=2, processes=2)
    session = new_session()
    try:
        url = await resolve_agent(example_deployment.head_url, AGENT, session=session)
        collector = Collector(spec, url, session=session)
        summary = await collector.run()
        assert collector.processes == 2
        assert (summary.written, summary.failed, summary.rows_in_output) == (60, 0, 60)
        rows = [__import__("json").loads(x) for x in out.read_text().splitlines()]
        assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows) == sorted((t, r) for t in range(30) for r in range(2))
        again = await Collector(spec, url, session=session).run()  # resume: nothing left to do
        assert (again.written, again.resumed) == (0, 60)
    finally:
        await session.close()


def test_spread_processes_must_be_at_least_one(tmp_path):
    spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", processes=0)
    with pytest.raises(GymctlError, match="GYMCTL_COLLECT_PROCESSES=0"):
        spec.check()
