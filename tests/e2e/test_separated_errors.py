"""The separated runtime's bad inputs: a child that dies at start, a port taken, an unknown --restart, SIGTERM twice."""

from __future__ import annotations

import signal
import socket
import textwrap
import time

import psutil

from tests.conftest import AGENT, free_port
from tests.e2e.test_separated_support import EXAMPLE_ARGS, cli, kill_leftovers, start_separated, stop_separated, wait_until


def assert_no_traceback(text: str) -> None:
    """gymctl's own lines (not a child's `name | ...` lines) show no traceback."""
    own = "\n".join(line for line in text.splitlines() if " | " not in line[:60])
    assert "Traceback" not in own, text


def finish(run, timeout: float = 40.0) -> str:
    """Wait for a runtime that should exit by itself; its output."""
    try:
        run.proc.wait(timeout)
    finally:
        stop_separated(run)
        kill_leftovers(run)
    return run.output()


def test_unknown_restart_value_is_a_usage_error():
    res = cli("run", "--topology", "separated", *EXAMPLE_ARGS, "--set", f"head_server.port={free_port()}", "--restart", "always")
    assert res.returncode == 2
    assert "UsageError: --restart 'always' is not known; choose one of: no, on-failure" in res.stderr
    assert_no_traceback(res.stderr)


def test_child_that_exits_at_start_shows_its_last_lines_and_stops_the_others(tmp_path):
    logs = tmp_path / "logs"
    run = start_separated(tmp_path, "--log-dir", str(logs), "--set", f"{AGENT}.responses_api_agents.simple_agent.max_steps=0", wait_ready=False)
    out = finish(run)
    assert run.proc.returncode == 1
    assert f"StartupError: {AGENT} exited with code 2 while starting: ConfigError:" in out
    assert "max_steps: Input should be greater than or equal to 1" in out
    assert "--- last log lines ---" in out and f"full log: {logs / (AGENT + '.log')}" in out
    assert "stopped the other processes" in out
    assert "ready in" not in out
    assert not run.leftovers()
    assert_no_traceback(out)


def test_instance_port_taken_after_the_config_check_is_named(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = start_separated(tmp_path, "--set", f"policy_model.responses_api_models.scripted_model.port={port}", wait_ready=False)
        out = finish(run)
    assert run.proc.returncode == 1
    assert "StartupError: policy_model exited with code 1 while starting: PortInUseError:" in out
    assert f"port {port} on 127.0.0.1 is already in use" in out
    assert not run.leftovers()
    assert_no_traceback(out)


def test_head_port_taken_is_refused_before_anything_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        res = cli("run", "--topology", "separated", *EXAMPLE_ARGS, "--set", f"head_server.port={port}")
    assert res.returncode == 1
    assert f"PortInUseError: head_server.port: port {port} on 127.0.0.1 is already in use" in res.stderr
    assert_no_traceback(res.stderr)


SPAWNER_APP = textwrap.dedent('''
    """A resources server that starts a helper process of its own, which ignores SIGTERM."""
    import subprocess
    import sys

    from fastapi import FastAPI
    from pydantic import BaseModel, ConfigDict


    class Config(BaseModel):
        model_config = ConfigDict(extra="allow")
        pid_file: str


    def create_app(config, kit):
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        helper = subprocess.Popen([sys.executable, "-c", code])
        with open(config.pid_file, "w") as f:
            f.write(str(helper.pid))
        return FastAPI()
''')


def test_sigterm_stops_every_process_including_grandchildren(tmp_path):
    (tmp_path / "resources_servers" / "spawner").mkdir(parents=True)
    (tmp_path / "resources_servers" / "spawner" / "app.py").write_text(SPAWNER_APP)
    pid_file = tmp_path / "helper.pid"
    (tmp_path / "spawner.yaml").write_text(f"spawner:\n  resources_servers:\n    spawner:\n      entrypoint: app.py\n      pid_file: {pid_file}\n")
    run = start_separated(tmp_path, args=["-c", "spawner.yaml"], cwd=tmp_path)
    helper = psutil.Process(int(pid_file.read_text()))
    assert helper.is_running() and helper.pid in {p.pid for p in run.children()}
    code = stop_separated(run, signal.SIGTERM)
    assert code == 0, run.output()
    wait_until(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE, 5, "grandchild gone")
    assert not run.leftovers()
    assert "stopped; exit codes: head code 0, spawner code 0" in run.output()


def test_second_sigterm_forces_the_stop(separated):
    run = separated()
    run.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(10)
    left = run.leftovers()
    assert run.proc.returncode == 130, run.output()
    out = run.output()
    assert "SIGTERM: stopping every process (again to force)" in out
    assert "SIGTERM again: forcing the stop (SIGKILL to every process group)" in out
    assert not left


def test_children_do_not_outlive_a_runtime_killed_with_sigkill(separated):
    run = separated()
    pids = [run.pid_of(n) for n in ("head", "policy_model")]
    run.proc.kill()
    run.proc.wait(5)
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids), 15, "children gone")
    wait_until(lambda: not run.leftovers(), 15, "every process gone")
