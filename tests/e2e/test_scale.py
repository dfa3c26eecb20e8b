"""Scale, small enough for CI: 2,000 rollouts in flight against a server whose open-files limit (3,000) cannot hold
2,000 inbound plus 2,000 upstream connections. Before the connection budget this lost most rollouts to resets
(libuv drops what it cannot accept); now the server stays inside its limit, answers the excess 503 + Retry-After,
and both the bench's neutral client and `gymctl collect` finish every rollout. The full sweep (10,000 in flight
on a 20,000-file machine) is `python -m bench.scale`, see bench/README.md."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench.scale import probe
from tests.conftest import AGENT, EXAMPLE_DATA, REPO
from tests.e2e.test_separated_support import cli, wait_until

IN_FLIGHT = 2000
NOFILE = 3000


@pytest.mark.parametrize("driver", ["bench", "collect"])
def test_2000_in_flight_past_the_servers_open_files_limit_lose_nothing(tmp_path, driver):
    result = probe("gymctl_all_in_one", IN_FLIGHT, ideal=200.0, driver=driver, requests=2500, log_dir=tmp_path, system_nofile=NOFILE)
    assert result["failures"] == 0, result["failure_samples"]
    assert result["succeeded"] == 2500
    server_files = [n for label, n in result["peak_open_files"].items() if label.startswith("system:")]
    assert server_files and max(server_files) < NOFILE  # never at the limit, where connections are dropped
    if driver == "bench":
        assert result["deferred"] > 0  # the excess was told to wait, not dropped


def test_separated_workers_share_one_port_both_serve_and_status_lists_them(separated, tmp_path):
    """`workers: 2` on the agent: two processes on one port, one registration; a collection reaches both; `gymctl status`
    shows the workers; a worker killed -9 leaves the instance healthy (the other keeps its lease) and is restarted."""
    run = separated("--restart", "on-failure", "--set", f"gymctl.instances.{AGENT}.workers=2")
    serving = re.compile(rf"^{AGENT}/w(\d) +\| {AGENT}: serving at (\S+) \(pid (\d+)\)", re.M)
    found = {w: (url, int(pid)) for w, url, pid in serving.findall(run.output())}
    assert set(found) == {"1", "2"} and found["1"][0] == found["2"][0]  # two processes, one URL
    pids = {found["1"][1], found["2"][1]}
    assert re.search(r"\bworkers\b", run.output()) and f"{min(pids)}, {max(pids)}" in run.output()  # the ready table
    assert [i["url"] for i in run.instances() if i["process_name"] == AGENT] == [found["1"][0]]  # one registration, not two

    rows = tmp_path / "in.jsonl"
    rows.write_text("\n".join([EXAMPLE_DATA.read_text().splitlines()[0]] * 100) + "\n")
    out = tmp_path / "out.jsonl"
    collect = subprocess.Popen([sys.executable, "-m", "gymctl", "collect", "--head", run.head_url, "--agent", AGENT, "--input", str(rows),
                                "--output", str(out), "--concurrency", "32"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    idle = {pid: psutil.Process(pid).num_fds() for pid in pids}
    served: dict[int, int] = dict.fromkeys(pids, 0)  # sockets opened past the idle count: connections taken in and made for calls
    while collect.poll() is None:
        for pid in pids:
            served[pid] = max(served[pid], psutil.Process(pid).num_fds() - idle[pid])
        time.sleep(0.02)
    assert collect.wait() == 0, collect.stdout.read().decode() if collect.stdout else ""
    assert len(out.read_text().splitlines()) == 100
    assert all(n >= 4 for n in served.values()), served  # the kernel spread the collector's 32 connections over both workers

    st = cli("status", "--head", run.head_url)
    row = next(line for line in st.stdout.splitlines() if f" {AGENT} " in line)
    assert st.returncode == 0 and "workers" in st.stdout and re.search(r"│\s+2 │ healthy", row), st.stdout

    victim = found["2"][1]
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.0)  # past a heartbeat: the surviving worker renews the one registration
    assert [i["status"] for i in run.instances() if i["process_name"] == AGENT] == ["healthy"]
    wait_until(lambda: len(serving.findall(run.output())) == 3, 10, "the killed worker restarted")
    assert f"{AGENT}/w2 (pid {victim}) exited with code -9" in run.output() and f"restarting {AGENT}/w2" in run.output()
