"""The Ray co-location example, run as a new user would: it starts a local cluster, trains three GRPO-shaped steps on
rollouts with token ids, and leaves no Ray process and no Ray files behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.conftest import IN_CI, REPO, interrupt

__import__("ray") if IN_CI else pytest.importorskip("ray")  # in CI a missing Ray fails, never skips


def test_the_grpo_shaped_example_collects_token_ids_and_cleans_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    run = subprocess.run([sys.executable, str(REPO / "examples/trainer/ray_grpo.py"), "--steps", "2", "--prompts", "2", "--group", "3"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = [json.loads(line) for line in run.stdout.splitlines()]
    assert [s["step"] for s in steps] == [0, 1] and all(s["rollouts"] == 6 and s["mean_reward"] == 1.0 for s in steps)
    assert all(s["generated_tokens"] == 6 * 2 * 5 for s in steps)  # two model turns per rollout, five token ids each
    temp = re.search(r"removed (\S+)", run.stderr)
    assert temp, run.stderr[-2000:]
    assert not Path(temp.group(1)).exists()
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if temp.group(1) in " ".join(p.info["cmdline"] or [])]
    assert not left


def test_run_topology_ray_without_an_address_starts_a_local_cluster_and_stops_it(tmp_path):
    import glob

    from tests.conftest import AGENT, EXAMPLE_CONFIG, SCRIPTED_CONFIG, free_port, http_json, wait_http

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "gymctl-ray-*")))
    port = free_port()
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 -- held by the child until it exits
    proc = subprocess.Popen([sys.executable, "-m", "gymctl", "run", "--topology", "ray", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG,
                             "--set", f"head_server.port={port}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import ray

        head = f"http://{ray.util.get_node_ip_address()}:{port}"
        wait_http(head + "/health", timeout=90)
        names = {i["process_name"] for i in http_json(head + "/server_instances")[1]}
        assert {AGENT, "policy_model", "example_single_tool_call"} <= names
        ray_procs = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() in ("gcs_server", "raylet")]
        assert {p.name() for p in ray_procs} == {"gcs_server", "raylet"}  # its own cluster
        created = set(glob.glob(os.path.join(tempfile.gettempdir(), "gymctl-ray-*"))) - before
        assert len(created) == 1
    finally:
        interrupt(proc, 60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    psutil.wait_procs(ray_procs, timeout=10)
    assert not [p for p in ray_procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not any(Path(d).exists() for d in created)  # its files (sessions, ray_current_cluster) removed
