"""A policy upstream that misbehaves: each bad rollout is marked failed with its reason, the collection carries on.

The upstream is a test double of an OpenAI-compatible LLM (`FaultyLLM`); its behaviour per request is chosen by
the task's user message. The example environment runs with `openai_model` in front of it, as a user would run it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import pytest
from aiohttp import web

from tests.conftest import AGENT, EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, example_rows, start_deployment, stop_deployment


class FaultyLLM:
    """Test double of the LLM: a Responses API that calls get_weather then answers, or fails as the message asks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        items = body.get("input") or []
        user = next((i.get("content") for i in items if isinstance(i, dict) and i.get("role") == "user"), "")
        if user == "please time out":
            await asyncio.sleep(3)  # past the model server's 1 s timeout
        if user == "please fail with 500":
            return web.json_response({"error": "the model crashed"}, status=500)
        if user == "please answer garbage":
            return web.Response(body=b'{"id": "resp_1", "output": [', content_type="application/json")
        if user == "please hang up":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if items and isinstance(items[-1], dict) and items[-1].get("type") == "function_call_output":
            output = [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": "It is cold.", "annotations": []}]}]
        else:
            output = [{"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather",
                       "arguments": '{"city": "San Francisco"}', "status": "completed"}]
        return web.json_response({"id": "resp_1", "object": "response", "created_at": int(time.time()), "status": "completed",
                                  "model": "stub", "output": output})

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/responses", self.responses)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> FaultyLLM:
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)  # type: ignore[union-attr]
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def faulty_deployment(tmp_path):
    with FaultyLLM() as llm:
        model = "policy_model.responses_api_models.openai_model"
        dep = start_deployment(["-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={llm.url}", "--set", "policy_api_key=dummy",
                                "--set", "policy_model_name=stub", "--set", f"{model}.timeout_s=1", "--set", f"{model}.max_retries=1",
                                "--set", f"{model}.retry_backoff_s=0.05"], tmp_path)
        yield dep
        stop_deployment(dep)


def task(message: str) -> dict:
    row = example_rows()[0]
    row["responses_create_params"]["input"][-1]["content"] = message
    return row


def collect(dep, src, out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", dep.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_upstream_timeout_500_garbage_and_hang_up_each_fail_with_a_reason_and_the_rest_lands(faulty_deployment, tmp_path):
    messages = ["weather?", "please time out", "please fail with 500", "please answer garbage", "please hang up", "weather again?"]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(task(m)) + "\n" for m in messages))
    out = tmp_path / "out.jsonl"
    res = collect(faulty_deployment, src, out)
    assert res.returncode == 1, res.stderr  # failures happened: non-zero, but everything else was collected
    assert "Collected: 2 rollouts written, 4 failed" in res.stdout
    assert f"4 x agent_run_error, e.g. agent {AGENT} /run answered 502" in res.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["_ng_task_index"] for r in rows) == [0, 5] and all(r["reward"] == 1.0 for r in rows)
    reasons = {f["_ng_task_index"]: f["reason"] for f in map(json.loads, (tmp_path / "out_failures.jsonl").read_text().splitlines())}
    assert set(reasons) == {1, 2, 3, 4}
    prefix = f"agent {AGENT} /run answered 502: model server policy_model answered 502"
    assert all(r.startswith(prefix) for r in reasons.values()), reasons
    assert "failed after 2 attempts: TimeoutError" in reasons[1]
    assert "HTTP 500" in reasons[2] and "the model crashed" in reasons[2]
    assert "malformed JSON from upstream" in reasons[3]
    assert "ServerDisconnectedError" in reasons[4] or "ClientOSError" in reasons[4] or "ClientPayloadError" in reasons[4]


def test_a_rollout_slower_than_the_collector_timeout_fails_and_is_retried_on_rerun(faulty_deployment, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(task("please time out")) + "\n" + json.dumps(task("weather?")) + "\n")
    out = tmp_path / "out.jsonl"
    res = collect(faulty_deployment, src, out, "--timeout", "0.3")
    assert res.returncode == 1
    (failure,) = [json.loads(line) for line in (tmp_path / "out_failures.jsonl").read_text().splitlines()]
    assert failure["_ng_task_index"] == 0 and failure["reason"] == "rollout timed out after 0.3 s (--timeout)"
    res = collect(faulty_deployment, src, out, "--timeout", "0.3")  # the rerun retries only the failed pair
    assert "Collected: 0 rollouts written, 1 failed, 1 already in the output (resumed)" in res.stdout
    assert len(out.read_text().splitlines()) == 1
