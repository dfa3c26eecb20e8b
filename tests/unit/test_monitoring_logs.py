"""Logs ready to ship: --log-format json (one JSON object per line, request ids), gymctl.logging rendered, bad input said clearly."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gymctl.compose.model import RenderSettings
from gymctl.compose.render import render
from gymctl.config import load_config
from gymctl.server.logformat import JsonFormatter, install_request_ids
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, free_port, wait_http
from tests.unit.cli_runner import invoke

CONFIG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]
FIELDS = {"time", "level", "instance", "message", "request_id"}


def test_serve_with_json_logs_writes_only_json_objects_one_per_line():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gymctl", "serve", "head", *CONFIG, "--port", str(port), "--log-format", "json", "--log-level", "info"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/livez", timeout=30)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) >= 3, out
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(set(e) >= FIELDS and e["instance"] == "head" for e in entries), entries
    assert any(e["message"].startswith(f"head: serving at http://127.0.0.1:{port}") for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own lines too


def test_a_request_id_follows_the_lines_logged_while_serving_it(monkeypatch):
    monkeypatch.setenv("GYMCTL_LOG_FORMAT", "json")
    app = FastAPI()
    seen: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(JsonFormatter("tools").format(record))

    log = logging.getLogger("gymctl.test.requestid")
    log.addHandler(Capture())
    log.setLevel(logging.INFO)

    @app.get("/work")
    async def work() -> dict[str, str]:
        log.info("working")
        return {"ok": "yes"}

    install_request_ids(app, "tools")
    client = TestClient(app)
    client.get("/work", headers={"X-Request-ID": "trace-42"})
    client.get("/work")
    first, second = (json.loads(s) for s in seen)
    assert first["request_id"] == "trace-42" and first["message"] == "working" and first["level"] == "info"
    assert second["request_id"] == "tools-1"  # none sent: one made here


def test_an_unknown_log_format_is_a_usage_error_on_the_flag_and_a_config_error_in_the_environment():
    r = invoke("serve", "head", *CONFIG, "--log-format", "xml")
    assert r.code == 2 and "'xml' is not a log format; choose one of: text, json" in r.err and "Traceback" not in r.err
    r = invoke("run", *CONFIG, "--log-format", "yaml")
    assert r.code == 2 and "'yaml' is not a log format" in r.err
    env = {**os.environ, "GYMCTL_LOG_FORMAT": "xml"}
    res = subprocess.run([sys.executable, "-m", "gymctl", "serve", "head", *CONFIG, "--port", str(free_port())], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "GYMCTL_LOG_FORMAT: " in res.stderr and "not a log format" in res.stderr and "Traceback" not in res.stderr


def test_gymctl_logging_is_rendered_into_every_container():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], ["+gymctl.logging={driver: fluentd, options: {fluentd-address: '127.0.0.1:24224', fluentd-async: true}}"],
                      cwd=REPO)
    doc = yaml.safe_load(render(cfg, "separated", RenderSettings(project="p", monitoring=True)).compose_yaml)
    for name, service in doc["services"].items():
        assert service["logging"] == {"driver": "fluentd", "options": {"fluentd-address": "127.0.0.1:24224", "fluentd-async": "true"}}, name


@pytest.mark.parametrize(("value", "says"), [
    ("+gymctl.logging=gelf", "gymctl.logging: 'gelf' is not a mapping"),
    ("+gymctl.logging={driver: 'no such'}", "gymctl.logging.driver: 'no such' is not a logging driver name"),
    ("+gymctl.logging={driver: gelf, opts: {}}", "gymctl.logging: unknown setting(s) opts (known: driver, options)"),
    ("+gymctl.logging={driver: gelf, options: {tag: [a, b]}}", "gymctl.logging.options.tag:"),
])
def test_bad_logging_settings_name_the_key(value, says):
    r = invoke("render", *CONFIG, value)
    assert r.code == 2 and says in r.err and "Traceback" not in r.err, r.err
