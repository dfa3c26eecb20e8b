"""Admission control on a real deployment: 10x past its concurrency limit a server answers 503 + Retry-After at
once, stays alive and small, keeps answering /health, and gymctl's clients wait the 503s out: 0 failures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import psutil
import pytest

from bench.load_client import load_rows, run_load
from bench.upstream_stub import StubProcess
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, OPENAI_CONFIG, REPO, http_json, start_deployment, stop_deployment

LIMIT = 20
OVERLOAD = 10 * LIMIT


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """All-in-one on the stub (0.25 s per model call: a rollout holds its slot ~0.5 s), limit 20 per server."""
    tmp = tmp_path_factory.mktemp("gymctl-i16-admission")
    with StubProcess(delay_s=0.25) as stub:
        dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={stub.url}/v1",
                                "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"], tmp,
                               env={"GYMCTL_MAX_CONCURRENCY": str(LIMIT)})
        try:
            yield dep, tmp
        finally:
            stop_deployment(dep)


async def _blast(url: str, n: int, body: bytes) -> list[tuple[int, dict[str, str]]]:
    """`n` requests at once from a client that does not wait 503s out."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> tuple[int, dict[str, str]]:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                return r.status, {k.lower(): v for k, v in r.headers.items()}

        return await asyncio.gather(*(one() for _ in range(n)))


def test_ten_times_the_limit_is_answered_503_with_retry_after_at_once(limited):
    dep, _ = limited
    run_url = dep.url_of(AGENT) + "/run"
    body = json.dumps(load_rows()[0]).encode()
    t0 = time.monotonic()
    replies = asyncio.run(_blast(run_url, OVERLOAD, body))
    statuses = [s for s, _ in replies]
    assert set(statuses) <= {200, 503}
    assert LIMIT <= statuses.count(200) < 2 * LIMIT, statuses  # the limit admitted, at most a second wave as slots freed
    busy = [h for s, h in replies if s == 503]
    assert busy and all(h.get("retry-after") == "1" and h.get("connection") == "close" for h in busy)
    assert time.monotonic() - t0 < 30
    assert http_json(dep.head_url + "/health")[0] == 200


def test_overload_leaves_the_server_alive_small_and_healthy(limited):
    dep, _ = limited
    run_url = dep.url_of(AGENT) + "/run"
    body = json.dumps(load_rows()[0]).encode()
    server = psutil.Process(dep.proc.pid)
    asyncio.run(_blast(run_url, OVERLOAD, body))  # warm: the first wave allocates what a full server holds
    rss_before = server.memory_info().rss
    for _ in range(5):  # 1,000 more requests at 10x the limit
        asyncio.run(_blast(run_url, OVERLOAD, body))
    grown_mib = (server.memory_info().rss - rss_before) / 2**20
    assert dep.proc.poll() is None
    assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB under overload"
    status, agent_health = http_json(dep.url_of(AGENT) + "/health")
    assert status == 200 and agent_health["status"] == "ok"


def test_clients_wait_503s_out_bench_client_and_gymctl_collect(limited):
    dep, tmp = limited
    run_url = dep.url_of(AGENT) + "/run"
    load = asyncio.run(run_load(run_url, load_rows(), OVERLOAD, OVERLOAD, timeout_s=120))
    assert load.failures == 0, load.failure_samples
    assert load.deferred > 0  # the server did say "busy", and the client waited

    out = tmp / "collected.jsonl"
    rows = EXAMPLE_DATA.read_text().splitlines()
    data = tmp / "input.jsonl"
    data.write_text("\n".join(rows * (OVERLOAD // len(rows))) + "\n")
    proc = subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", dep.head_url, "--agent", AGENT, "--input", str(data),
                           "--output", str(out), "--concurrency", str(OVERLOAD), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(out.read_text().splitlines()) == OVERLOAD
    assert not (tmp / "collected_failures.jsonl").exists()
