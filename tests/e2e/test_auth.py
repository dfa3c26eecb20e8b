"""GYMCTL_AUTH_TOKEN on a separated deployment: curl without it gets 401 everywhere; gymctl's own clients work."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from gymctl.server.client import ServerClient
from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows, http_json
from tests.e2e.test_separated_support import cli, wait_until

TOKEN = "e2e-Secret-7f3a9c"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
# One call per process that a user with curl might try, each needing the token.
GUARDED = {
    "head": ("GET", "/server_instances"),
    "example_single_tool_call": ("POST", "/verify"),
    AGENT: ("POST", "/run"),
    "policy_model": ("POST", "/v1/responses"),
}


def test_every_server_refuses_a_request_without_the_token_and_gymctl_clients_work(separated, tmp_path):
    logs = tmp_path / "logs"
    run = separated("--log-dir", str(logs), env={"GYMCTL_AUTH_TOKEN": TOKEN})
    items = {i["process_name"]: i["url"] for i in run.instances(TOKEN)}
    urls = {"head": run.head_url, **items}
    body = {"responses_create_params": {"input": "hi"}, "response": {"output": []}}
    for name, (method, path) in GUARDED.items():
        code, reply = http_json(urls[name] + path, body if method == "POST" else None)
        assert code == 401, (name, code, reply)
        assert reply["detail"].startswith("unauthorized: missing Authorization header")
        code, reply = http_json(urls[name] + path, body if method == "POST" else None, headers={"Authorization": "Bearer wrong"})
        assert code == 401 and "wrong bearer token" in reply["detail"] and "wrong" not in reply["detail"].split(";")[1]
        assert http_json(urls[name] + "/health")[0] in (200, 503)  # probes stay open (the head's readiness too)
    # gymctl's clients send the token: status, and a rollout through ServerClient (agent -> model/resources too).
    st = cli("status", "--head", run.head_url, env={"GYMCTL_AUTH_TOKEN": TOKEN})
    assert st.returncode == 0 and "4 servers found (4 healthy, 0 unhealthy)" in st.stdout, st.stdout + st.stderr

    async def one_rollout() -> float:
        client = ServerClient(run.head_url, token=TOKEN, use_host_url=True)
        try:
            r = await client.post(AGENT, "/run", json=example_rows()[0])
            return r.raise_for_status().json()["reward"]
        finally:
            await client.close()

    assert asyncio.run(one_rollout()) == 1.0
    code, reply = http_json(urls[AGENT] + "/run", example_rows()[1], headers=BEARER)
    assert code == 200 and reply["reward"] == 1.0
    # The token is in no output, no log file, no reply.
    assert TOKEN not in run.output() + st.stdout + st.stderr
    for log in logs.iterdir():
        assert TOKEN not in log.read_text()
    assert TOKEN not in str(http_json(run.head_url + "/global_config_dict_yaml", headers=BEARER)[1])


def test_status_says_the_token_is_the_problem(separated):
    run = separated(env={"GYMCTL_AUTH_TOKEN": TOKEN})
    env = {k: v for k, v in os.environ.items() if k != "GYMCTL_AUTH_TOKEN"}
    missing = subprocess.run([sys.executable, "-m", "gymctl", "status", "--head", run.head_url], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert f"ServerError: head at {run.head_url} answered 401: the auth token is missing; set GYMCTL_AUTH_TOKEN" in missing.stderr
    wrong = cli("status", "--head", run.head_url, env={"GYMCTL_AUTH_TOKEN": "not-it"})
    assert wrong.returncode == 1
    assert "answered 401: the auth token is wrong; set GYMCTL_AUTH_TOKEN to the deployment's token" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr and TOKEN not in wrong.stderr


def test_a_server_with_a_wrong_token_is_refused_and_says_why(separated, tmp_path):
    run = separated(env={"GYMCTL_AUTH_TOKEN": TOKEN})
    env = {**os.environ, "GYMCTL_HEAD_URL": run.head_url, "GYMCTL_AUTH_TOKEN": "not-it"}
    out = tmp_path / "hand.log"
    with open(out, "wb") as f:
        hand = subprocess.Popen([sys.executable, "-m", "gymctl", "serve", "policy_model", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG],
                                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "refused registration: wrong or missing GYMCTL_AUTH_TOKEN" in out.read_text(), 20, "refusal logged")
        assert [i["pid"] for i in run.instances(TOKEN) if i["process_name"] == "policy_model"] == [run.pid_of("policy_model")]
    finally:
        hand.send_signal(signal.SIGTERM)
        hand.wait(15)
    assert "not-it" not in out.read_text() and TOKEN not in out.read_text()
