"""`gymctl collect --metrics-port`: the run's figures on /metrics while it runs; a taken port is one clear line."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import aiohttp

from gymctl.config.model import load_config
from gymctl.rollouts import CollectSpec
from gymctl.rollouts.exporter import CollectionFigures, MetricsExporter
from gymctl.runtime import embedded, inprocess
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG
from tests.unit.test_metrics import samples, total


async def test_the_figures_are_on_metrics_while_the_collection_runs_and_match_its_summary(tmp_path):
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG])
    dep = await embedded.start_embedded(cfg)
    figures = CollectionFigures(AGENT, concurrency=16)
    exporter = MetricsExporter(figures, "127.0.0.1", 0)
    url = await exporter.start()
    try:
        spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=tmp_path / "out.jsonl", num_repeats=60, concurrency=16)
        run = asyncio.create_task(embedded.collect(spec, dep.head_url, cfg, start_if_absent=False, on_progress=figures.update))
        during = []
        async with aiohttp.ClientSession() as session:
            while not run.done():
                async with session.get(url) as r:
                    assert r.status == 200
                    during.append(samples(await r.text()))
                await asyncio.sleep(0.02)
            summary = (await run).summary
            async with session.get(url) as r:
                after = samples(await r.text())
    finally:
        await exporter.stop()
        await inprocess.stop(dep)
    assert any(0 < total(d, "gymctl_collect_rollouts_total") < 300 and total(d, "gymctl_collect_in_flight") > 0 for d in during), \
        "no scrape saw the run part-way"
    assert summary.written == 300
    assert total(after, "gymctl_collect_rollouts_total", agent=AGENT) == total(after, "gymctl_collect_written_total") == 300
    assert total(after, "gymctl_collect_in_flight") == 0
    assert total(after, "gymctl_collect_mean_reward") == summary.mean_reward_this_run == 1.0
    assert total(after, "gymctl_collect_rollouts_per_second") > 0
    assert "gymctl_collect_failures_total" not in after  # no failure kind yet: the family is empty


def test_failures_are_counted_by_kind():
    from gymctl.rollouts.stats import RolloutStats

    st = RolloutStats(total=4)
    st.record_success(0.1, 1.0)
    st.record_failure(0.2, "timeout", "rollout timed out")
    st.record_failure(0.2, "agent_run_error", "HTTP 500")
    st.record_failure(0.2, "timeout", "rollout timed out")
    figures = CollectionFigures("a", concurrency=8)
    figures.update(st)
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    reg.register(figures)
    found = samples(generate_latest(reg).decode())
    assert total(found, "gymctl_collect_failures_total", kind="timeout") == 2
    assert total(found, "gymctl_collect_failures_total", kind="agent_run_error") == 1
    assert total(found, "gymctl_collect_rollouts_total") == 4 and total(found, "gymctl_collect_in_flight") == 0


def test_a_metrics_port_in_use_is_one_clear_line_and_nothing_runs(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "gymctl", "collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--agent", AGENT,
                            "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "out.jsonl"), "--metrics-port", str(port)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert f"gymctl collect --metrics-port: port {port} on 127.0.0.1 is already in use" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()
