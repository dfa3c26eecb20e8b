"""The upstream model misbehaving during a real collection (`gymctl run --topology separated`, openai_model in front of
bench/upstream_stub.py): it answers 5xx, hangs, or drips its reply one byte at a time for a few seconds, then is well.
The run completes or stops with typed failures (the agent's error naming the model, or the collector's --timeout), and a
rerun of the same command leaves exactly one row per (task, repeat), nothing doubled. The same faults at full size, with
recovery times: `python -m bench.faults --faults upstream:error,upstream:hang,upstream:drip`."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from bench.upstream_stub import StubProcess
from tests.conftest import AGENT, EXAMPLE_CONFIG, OPENAI_CONFIG
from tests.e2e.test_faults_separated import pairs, wait_rows, write_tasks
from tests.e2e.test_separated_support import FAST_LEASES, GYMCTL, cli

ROWS = 300
FAULT_S = 3.0
TIMEOUT_S = "4"  # the collector's --timeout: a hung upstream call fails typed within it
TYPED = {"agent_run_error", "timeout"}


def upstream(stub: StubProcess, **config: object) -> None:
    req = urllib.request.Request(stub.url + "/_stub/config", data=json.dumps(config).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5):
        pass


@pytest.mark.parametrize("mode", ["error", "hang", "drip"])
def test_upstream_fault_mid_collection_fails_typed_and_the_rerun_leaves_one_row_per_pair(separated, tmp_path, mode):
    with StubProcess() as stub:
        run = separated("--restart", "on-failure", env=FAST_LEASES, args=[
            "-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={stub.url}/v1", "--set", "policy_api_key=dummy",
            "--set", "policy_model_name=stub"])
        src, out = write_tasks(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
        argv = ["collect", "--head", run.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out), "--concurrency", "16",
                "--timeout", TIMEOUT_S, "--json"]
        with open(tmp_path / "collect.log", "wb") as log:
            proc = subprocess.Popen([*GYMCTL, *argv], stdout=subprocess.PIPE, stderr=log, text=True)
        wait_rows(out, ROWS // 4)
        upstream(stub, fault=mode, drip_s=0.05)
        time.sleep(FAULT_S)
        upstream(stub, fault="")
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1), (tmp_path / "collect.log").read_text()[-2000:]
        first = json.loads(stdout)
        failures = tmp_path / "out_failures.jsonl"
        kinds = {json.loads(line)["_ng_failure_class"] for line in failures.read_text().splitlines()} if failures.exists() else set()
        assert kinds <= TYPED, kinds  # typed: the agent's error naming the model, or the collector's --timeout
        if mode in ("hang", "drip"):  # in flight when it froze: those rollouts time out (a 5xx is retried by the model server)
            assert first["failed"] > 0 and kinds == {"timeout"}, (first, kinds)
        rerun = cli(*argv, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert json.loads(rerun.stdout)["written"] == first["failed"]
        got = pairs(out)
        assert len(got) == len(set(got)) == ROWS
        metrics = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
        assert metrics[0]["num_rollouts"] == ROWS  # counted once
        print(f"upstream {mode} for {FAULT_S:g} s: {first['failed']} failed ({', '.join(sorted(kinds))}), filled by the rerun")
