"""`gymctl run` / `ng_run` / `ng_status` driven as a user would, including the mistakes a user makes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, free_port, http_json, start_deployment, stop_deployment

GYMCTL = [sys.executable, "-m", "gymctl"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*GYMCTL, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_user_error(res: subprocess.CompletedProcess, kind: str, needle: str, code: int | None = None) -> None:
    assert res.returncode != 0
    if code is not None:
        assert res.returncode == code, res.stderr
    assert f"{kind}:" in res.stderr, res.stderr
    assert needle in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_scripted_example_serves_runs_and_stops_cleanly(tmp_path):
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path)
    try:
        items = dep.instances()
        assert {i["process_name"] for i in items} >= {"example_single_tool_call", AGENT, "policy_model"}
        for item in items:  # every instance is listed with the real port it got
            assert item["port"] > 0 and item["url"].endswith(f":{item['port']}")
            with socket.create_connection(("127.0.0.1", item["port"]), timeout=2):
                pass
        status, out = http_json(dep.url_of(AGENT) + "/run", example_rows()[0])
        assert status == 200 and out["reward"] == 1.0
        st = cli("status", "--head", dep.head_url, "--json")
        assert st.returncode == 0, st.stdout + st.stderr
        assert '"ok": true' in st.stdout
        children = psutil.Process(dep.proc.pid).children(recursive=True)
    finally:
        code = stop_deployment(dep)
    assert code == 0, dep.log()
    assert "Stopped; nothing left running." in dep.log()
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(dep.head_url.rsplit(":", 1)[1])), timeout=1)


def test_ng_status_reports_every_instance_healthy(gymctl_deployment):
    port = gymctl_deployment.head_url.rsplit(":", 1)[1]
    res = subprocess.run([sys.executable, "-c", "from gymctl.cli.ng import ng_status; ng_status()", f"+head_server.port={port}"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 servers found (4 healthy, 0 unhealthy)" in res.stdout  # NeMo Gym's ng_status wording


def test_status_against_a_head_that_does_not_answer():
    port = free_port()
    res = cli("status", "--head", f"http://127.0.0.1:{port}")
    assert_user_error(res, "HeadUnreachableError", f"head at http://127.0.0.1:{port} unreachable")


def test_missing_config_file():
    assert_user_error(cli("run", "-c", "no/such/file.yaml"), "ConfigError", "'no/such/file.yaml' not found; looked in", code=2)


def test_ng_run_with_bad_override():
    res = subprocess.run([sys.executable, "-c", "from gymctl.cli.ng import ng_run; ng_run()", "policy_base_url"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_user_error(res, "UsageError", "is not an override", code=2)


def test_unknown_topology():
    assert_user_error(cli("run", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--topology", "mesh"), "UsageError", "--topology 'mesh' is not known")


def test_port_already_in_use_names_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = cli("run", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"policy_model.responses_api_models.scripted_model.port={port}",
                  "--set", f"head_server.port={free_port()}")
    assert_user_error(res, "PortInUseError", f"port {port} on 127.0.0.1 is already in use")
    assert "policy_model.responses_api_models.scripted_model.port" in res.stderr


def test_unset_environment_variable_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("policy_model:\n  responses_api_models:\n    scripted_model:\n      entrypoint: app.py\n      model_name: ${oc.env:GYMCTL_E2E_UNSET}\n")
    env = {k: v for k, v in os.environ.items() if k != "GYMCTL_E2E_UNSET"}
    res = subprocess.run([*GYMCTL, "run", "-c", str(cfg), "--set", f"head_server.port={free_port()}"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert_user_error(res, "ConfigError", "environment variable GYMCTL_E2E_UNSET is not set")


def test_serve_unknown_instance_did_you_mean():
    assert_user_error(cli("serve", "policy_modle", "-c", SCRIPTED_CONFIG), "UsageError", "did you mean 'policy_model'")


def test_sigterm_stops_the_runtime(tmp_path):
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path)
    dep.proc.send_signal(signal.SIGTERM)
    assert dep.proc.wait(15) == 0
    assert "Stopped; nothing left running." in dep.log()


def test_a_bad_flag_value_gets_usage_not_a_traceback():
    res = cli("status", "--expect", "x")
    assert res.returncode == 2
    assert "Invalid value for '--expect'" in res.stderr and "Traceback" not in res.stderr


def test_the_head_starts_without_the_servers_secrets(tmp_path):
    """In containers the head's environment holds no model key: it must not need one."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"config_paths: [{EXAMPLE_CONFIG}, responses_api_models/openai_model/configs/openai_model.yaml]\n"
                   "policy_base_url: http://127.0.0.1:9/v1\npolicy_model_name: m\npolicy_api_key: ${oc.env:GYMCTL_E2E_MODEL_KEY}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GYMCTL_E2E_MODEL_KEY"}
    proc = subprocess.Popen([*GYMCTL, "serve", "head", "-c", str(cfg), "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        from tests.conftest import wait_http

        wait_http(f"http://127.0.0.1:{port}/livez", timeout=30)
        code, body = http_json(f"http://127.0.0.1:{port}/health")
        assert code == 503 and "policy_model" in body["waiting_for"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0]
    assert "GYMCTL_E2E_MODEL_KEY" not in out and "Traceback" not in out


def test_serving_an_alias_points_at_its_agent():
    res = cli("serve", "example_single_tool_call_environment_server", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG)
    assert_user_error(res, "UsageError", f"run: gymctl serve {AGENT}")


def test_status_against_something_that_is_not_a_head(tmp_path):
    import functools
    import http.server
    import threading

    (tmp_path / "server_instances").write_text("<html>not a head</html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        res = cli("status", "--head", f"http://127.0.0.1:{srv.server_address[1]}")
    finally:
        srv.shutdown()
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "ServerError:" in res.stderr and "did not answer JSON" in res.stderr, res.stderr


def test_an_exported_gymctl_port_does_not_leak_into_all_in_one(tmp_path):
    dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG], tmp_path, env={"GYMCTL_PORT": str(free_port())})
    try:
        ports = {i["port"] for i in dep.instances()}
        assert len(ports) == 3  # resources, agent (its alias shares it), model: each its own port
    finally:
        stop_deployment(dep)
