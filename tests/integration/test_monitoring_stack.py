"""`gymctl up --topology separated --monitoring` on real Docker: Prometheus (built from Debian's package) finds every instance
through the head's /prometheus_targets, scrapes them (with the token from its secret file: auth on, monitoring not public),
and fires the registration alert when a server is stopped. Bad input: a taken port, a logging driver the engine lacks."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import AGENT, StackUnderTest, collect, free_ports, gymctl, remove_project

pytestmark = pytest.mark.docker
INSTANCES = {"head", "example_single_tool_call", "policy_model", AGENT}


def prom(url: str, path: str, **query: str) -> dict:
    full = f"{url}{path}?{urllib.parse.urlencode(query)}" if query else url + path
    with urllib.request.urlopen(full, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_for(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as e:  # Prometheus still starting
            last = e
        else:
            if last:
                return last
        time.sleep(every_s)
    pytest.fail(f"{what} not within {timeout_s:.0f} s; last seen: {last!r}")


TOKEN = "i14-monitoring-token"


@pytest.fixture
def monitored(example_images, tmp_path: Path, monkeypatch):
    """A separated stack with auth on and `gymctl.monitoring.public: false`: Prometheus must use the token from its secret file."""
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", TOKEN)  # up passes it to the containers; collect sends it
    head, agent, prom_port = free_ports(3)
    st = StackUnderTest(f"gymctl-it-i14-{uuid.uuid4().hex[:6]}", head, agent)
    try:
        r = gymctl("up", "-p", st.project, "--topology", "separated", "--monitoring", "--monitoring-port", str(prom_port), "--timeout", "240",
                   *st.config_args("+gymctl.monitoring.public=false"), timeout=420, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert f"prometheus http://127.0.0.1:{prom_port}" in r.stderr
        yield st, f"http://127.0.0.1:{prom_port}"
    finally:
        remove_project(st.project)


def test_prometheus_scrapes_every_instance_through_the_head_and_fires_when_one_stops(monitored, tmp_path):
    st, url = monitored

    def all_up():
        targets = prom(url, "/api/v1/targets")["activeTargets"]
        seen = {t["labels"].get("gymctl_instance"): t["health"] for t in targets}
        return seen if set(seen) == INSTANCES and set(seen.values()) == {"up"} else None

    wait_for("every instance discovered through the head and up", all_up, 60)
    with pytest.raises(urllib.error.HTTPError) as refused:  # not public: the head's /metrics wants the token Prometheus has
        urllib.request.urlopen(st.head_url + "/metrics", timeout=5)
    assert refused.value.code == 401
    rows = collect(st, tmp_path / "out.jsonl", repeats=2)
    assert len(rows) == 10

    def runs_counted():
        result = prom(url, "/api/v1/query", query='sum(gymctl_http_requests_total{route="/run",status="200"})')["result"]
        return result and float(result[0]["value"][1]) >= 10

    wait_for("the agent's /run counter in Prometheus", runs_counted, 30)

    stop = subprocess.run(["docker", "compose", "-p", st.project, "stop", "example_single_tool_call"], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert stop.returncode == 0, stop.stderr
    stopped = time.monotonic()

    def firing():
        alerts = prom(url, "/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "GymctlRegistrationsBelowExpected" and a["state"] == "firing"]

    # Lease (6 s) + the rule's `for` (20 s) + evaluation every 5 s.
    [alert] = wait_for("GymctlRegistrationsBelowExpected firing", firing, 60)
    assert time.monotonic() - stopped < 60
    assert "fewer than expected" in alert["annotations"]["summary"]


def test_a_taken_monitoring_port_is_refused_before_anything_starts(example_images, tmp_path):
    head, agent = free_ports(2)
    st = StackUnderTest("gymctl-it-i14-port", head, agent)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        try:
            r = gymctl("up", "-p", st.project, "--monitoring", "--monitoring-port", str(taken), *st.config_args(), timeout=120, cwd=tmp_path)
            left = st.labelled()
        finally:
            remove_project(st.project)
    assert r.returncode != 0
    assert f"prometheus (--monitoring-port): port {taken} on 127.0.0.1 is already in use" in r.stderr
    assert "Traceback" not in r.stderr
    assert not left.get("containers"), left


def test_a_logging_driver_the_engine_lacks_is_refused_at_up_with_what_it_has(tmp_path):
    head, agent = free_ports(2)
    st = StackUnderTest("gymctl-it-i14-logdrv", head, agent)
    try:
        r = gymctl("up", "-p", st.project, *st.config_args("+gymctl.logging={driver: nosuchdriver}"), timeout=120, cwd=tmp_path)
        left = st.labelled()
    finally:
        remove_project(st.project)
    assert r.returncode != 0
    assert "gymctl.logging.driver: 'nosuchdriver' is not a logging driver of this Docker engine (it has: " in r.stderr
    assert "json-file" in r.stderr and "Traceback" not in r.stderr
    assert not left.get("containers"), left


def test_all_in_one_prometheus_shares_the_container_network_and_scrapes_every_instance(example_images, tmp_path):
    head, agent, prom_port = free_ports(3)
    st = StackUnderTest(f"gymctl-it-i14-aio-{uuid.uuid4().hex[:6]}", head, agent)
    try:
        r = gymctl("up", "-p", st.project, "--topology", "all-in-one", "--monitoring", "--monitoring-port", str(prom_port), *st.config_args(),
                   timeout=420, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        url = f"http://127.0.0.1:{prom_port}"

        def all_up():
            targets = prom(url, "/api/v1/targets")["activeTargets"]
            seen = {t["labels"].get("gymctl_instance"): t["health"] for t in targets}
            return seen if set(seen) == INSTANCES and set(seen.values()) == {"up"} else None

        found = wait_for("every in-process instance scraped at its 127.0.0.1 port", all_up, 60)
        assert found == dict.fromkeys(INSTANCES, "up")
    finally:
        remove_project(st.project)
