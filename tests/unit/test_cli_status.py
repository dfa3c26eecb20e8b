"""`ng_status` / `gymctl status` against a real head on loopback: NeMo Gym's summary line above the table, exit codes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from gymctl.cli.ng import ng_command
from gymctl.head.app import create_head_app
from tests.conftest import free_port, http_json
from tests.unit.cli_runner import invoke


@pytest.fixture
def head() -> Iterator[str]:
    """A bare head (every registration accepted) served by uvicorn in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_head_app(None), host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "head did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def register(head_url: str, name: str, url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    status, _ = http_json(f"{head_url}/register", {"process_name": name, "server_type": "resources_servers", "name": "probe",
                                                   "url": url, "host": "127.0.0.1", "port": port})
    assert status == 200


def test_ng_status_prints_nemo_gyms_summary_above_the_table(head):
    register(head, "alive", head)  # the head's own /health answers 200
    register(head, "gone", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    port = head.rsplit(":", 1)[1]
    r = invoke(f"+head_server.port={port}", command=ng_command("status"), prog="ng_status", env={"COLUMNS": "200"})
    assert r.code == 1, r.out + r.err  # one unhealthy instance
    lines = r.out.splitlines()
    assert lines[0] == "2 servers found (1 healthy, 1 unhealthy)", r.out
    assert any("alive" in line for line in lines[1:]) and any("gone" in line for line in lines[1:])


def test_status_all_healthy_exits_0_and_json_is_unchanged(head):
    register(head, "alive", head)
    r = invoke("status", "--head", head, "-t", "separated", "-p", "ignored")  # up's options are accepted
    assert r.code == 0, r.out + r.err
    assert r.out.startswith("1 servers found (1 healthy, 0 unhealthy)\n")
    r = invoke("status", "--head", head, "--json")
    assert r.code == 0 and json.loads(r.out)["ok"] is True
