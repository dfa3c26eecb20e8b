"""A test double of an OpenAI-compatible LLM upstream (aiohttp), for the benchmark and the project's tests.

It plays a policy that calls one tool and then answers, deterministically and fast (it is
measured alone first, so it is never the bottleneck of what it drives).

Endpoints
  POST /v1/responses         Responses API. If the last input item is a `function_call_output`,
                             an assistant `message`; else if tools are offered, one
                             `function_call` of `get_weather` (or the first tool offered when
                             `get_weather` is not) with arguments `{"city": "San Francisco"}`;
                             else a short `message`.
  POST /v1/chat/completions  the same decisions in Chat Completions form (`tool_calls`,
                             `finish_reason`). With `logprobs: true` the choice carries
                             `logprobs.content` whose tokens are `token_id:<n>`; with
                             `return_token_ids: true` the reply carries top-level
                             `prompt_token_ids` and the choice `token_ids` (vLLM's fields); with
                             reasoning on, the message carries `reasoning_content`.
  POST /tokenize             vLLM's tokenizer endpoint: `{"tokens": [...], "count": n}`.
  GET  /v1/models            one model, `stub` (or whatever model was last asked for).
  GET  /_stub/requests       what the stub got: `{"count", "by_path", "last": [{"path", "body",
                             "authorization", "t"}]}` (the last `keep` requests, oldest first; `t` is
                             the arrival time, epoch seconds).
  DELETE /_stub/requests     forget them.
  POST /_stub/config         `{"delay_s": float, "reasoning": bool, "fault": "", "fault_status": 503, "drip_s": 0.05}`:
                             change behaviour at run time. `fault` (the model routes only, for fault tests): `error`
                             answers `fault_status` with an OpenAI-style error body, `hang` never answers, `drip`
                             sends the normal reply one byte every `drip_s` seconds; "" is normal again.
  The `/v1` routes also answer without the prefix.

Python API
  stub = UpstreamStub(delay_s=0.0, reasoning=False, keep=100)   # keep: how many requests to remember
  url = await stub.start(host="127.0.0.1", port=0)   # -> "http://127.0.0.1:PORT" (no /v1)
  await stub.stop();  stub.requests() -> the same dict as GET /_stub/requests
  runner, url = await start_stub(host, port, delay_s)            # aiohttp AppRunner + url
  with StubThread(delay_s=0.0) as stub: stub.url ...             # own loop in a daemon thread
  with StubProcess(delay_s=0.0, keep=100) as stub: stub.url ...            # `python -m bench.upstream_stub`

CLI: `python -m bench.upstream_stub --port P [--host H] [--delay-s D] [--reasoning] [--keep N]`; it prints
`upstream stub listening on http://H:P` once it is listening.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

MODEL = "stub"
TOOL_ARGUMENTS = '{"city": "San Francisco"}'
ANSWER = "The weather in San Francisco is cold and foggy."
PLAIN_ANSWER = "Hello from the stub."


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _tool_name(tools: list[dict] | None) -> str | None:
    names = [t.get("name") or (t.get("function") or {}).get("name") for t in tools or [] if isinstance(t, dict)]
    names = [n for n in names if n]
    if not names:
        return None
    return "get_weather" if "get_weather" in names else names[0]


def _last_responses_item_is_tool_output(items: Any) -> bool:
    if not isinstance(items, list) or not items:
        return False
    last = items[-1]
    return isinstance(last, dict) and last.get("type") == "function_call_output"


class UpstreamStub:
    """The stub's state (delay, recorded requests) and its aiohttp app."""

    def __init__(self, delay_s: float = 0.0, reasoning: bool = False, keep: int = 100) -> None:
        self.delay_s = delay_s
        self.reasoning = reasoning
        self.count = 0
        self.by_path: collections.Counter[str] = collections.Counter()
        self.last: collections.deque[dict] = collections.deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.fault = ""  # "" | error | hang | drip (bench.faults)
        self.fault_status = 503
        self.drip_s = 0.05
        self.app = self._build_app()

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.fault or not request.path.endswith(("/responses", "/chat/completions")):
            return await handler(request)
        if self.fault == "error":
            await request.read()
            return _json({"error": {"message": "stub: upstream unavailable", "type": "server_error"}}, status=self.fault_status)
        if self.fault == "hang":
            await asyncio.sleep(3600)  # until the client gives up
        reply = await handler(request)  # drip: the normal reply, one byte at a time
        body = reply.body if isinstance(reply.body, bytes) else b""
        out = web.StreamResponse(status=reply.status, headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
        await out.prepare(request)
        for i in range(len(body)):
            await out.write(body[i:i + 1])
            await asyncio.sleep(self.drip_s)
        await out.write_eof()
        return out

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._faults])
        for prefix in ("/v1", ""):
            app.router.add_post(prefix + "/responses", self._responses)
            app.router.add_post(prefix + "/chat/completions", self._chat)
            app.router.add_get(prefix + "/models", self._models)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_stub/requests", self._requests)
        app.router.add_delete("/_stub/requests", self._reset)
        app.router.add_post("/_stub/config", self._config)
        return app

    def requests(self) -> dict:
        return {"count": self.count, "by_path": dict(self.by_path), "last": list(self.last)}

    async def start(self, host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False) -> str:
        """Listen on host:port; `reuse_port`: beside other stub processes on the same port (SO_REUSEPORT; bench.scale's stub group)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=16384, reuse_address=True, reuse_port=reuse_port or None)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _record(self, request: web.Request) -> dict:
        body = orjson.loads(await request.read() or b"{}")
        self.count += 1
        self.by_path[request.path] += 1
        self.last.append({"path": request.path, "body": body, "authorization": request.headers.get("Authorization"),
                          "t": time.time()})
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        return body

    def _next_id(self) -> str:
        return f"{next(self._ids):08x}"

    async def _responses(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        n = self._next_id()
        tool = _tool_name(body.get("tools"))
        items = body.get("input")
        if _last_responses_item_is_tool_output(items):
            output = [_message_item(n, ANSWER)]
        elif tool:
            output = [{"id": f"fc_{n}", "type": "function_call", "call_id": f"call_{n}", "name": tool,
                       "arguments": TOOL_ARGUMENTS, "status": "completed"}]
        else:
            output = [_message_item(n, PLAIN_ANSWER)]
        return _json({
            "id": f"resp_{n}", "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": body.get("model") or MODEL, "output": output, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "metadata": body.get("metadata") or {},
            "parallel_tool_calls": body.get("parallel_tool_calls", True), "temperature": body.get("temperature"),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_p": body.get("top_p"), "max_output_tokens": body.get("max_output_tokens"),
            "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 10,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 30},
        })

    async def _chat(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        n = self._next_id()
        messages = body.get("messages") or []
        tool = _tool_name(body.get("tools"))
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
            message["content"], finish = ANSWER, "stop"
        elif tool:
            message["tool_calls"] = [{"id": f"call_{n}", "type": "function",
                                      "function": {"name": tool, "arguments": TOOL_ARGUMENTS}}]
            finish = "tool_calls"
        else:
            message["content"], finish = PLAIN_ANSWER, "stop"
        if self.reasoning:
            message["reasoning_content"] = "The user wants the weather; I should use the tool."
        generated = [101, 102, 103, 104, 105]
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": f"token_id:{t}", "logprob": -0.25, "bytes": None,
                                               "top_logprobs": []} for t in generated]}
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or MODEL, "choices": [choice],
            "usage": {"prompt_tokens": 20, "completion_tokens": len(generated), "total_tokens": 20 + len(generated)},
        }
        if body.get("return_token_ids"):
            reply["prompt_token_ids"] = list(range(1, 21))
            choice["token_ids"] = generated
        return _json(reply)

    async def _tokenize(self, request: web.Request) -> web.Response:
        await self._record(request)
        tokens = list(range(1, 21))
        return _json({"tokens": tokens, "count": len(tokens), "max_model_len": 32768})

    async def _models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "stub"}]})

    async def _health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def _requests(self, request: web.Request) -> web.Response:
        return _json(self.requests())

    async def _reset(self, request: web.Request) -> web.Response:
        self.count = 0
        self.by_path.clear()
        self.last.clear()
        return _json(self.requests())

    async def _config(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")
        self.delay_s = float(body.get("delay_s", self.delay_s))
        self.reasoning = bool(body.get("reasoning", self.reasoning))
        self.fault = str(body.get("fault", self.fault) or "")
        self.fault_status = int(body.get("fault_status", self.fault_status))
        self.drip_s = float(body.get("drip_s", self.drip_s))
        return _json({"delay_s": self.delay_s, "reasoning": self.reasoning, "fault": self.fault, "fault_status": self.fault_status,
                      "drip_s": self.drip_s})


def _message_item(n: str, text: str) -> dict:
    return {"id": f"msg_{n}", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


async def start_stub(host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0) -> tuple[web.AppRunner, str]:
    """Start a stub in the running loop; returns its runner (`await runner.cleanup()` stops it) and URL."""
    stub = UpstreamStub(delay_s=delay_s)
    url = await stub.start(host, port)
    assert stub._runner is not None
    return stub._runner, url


class StubThread:
    """A stub on its own event loop in a daemon thread (for synchronous tests)."""

    def __init__(self, delay_s: float = 0.0, reasoning: bool = False, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stub = UpstreamStub(delay_s=delay_s, reasoning=reasoning)
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="upstream-stub", daemon=True)
        self.url = ""

    def start(self) -> str:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.stub.start(self._host, self._port), self._loop).result(10)
        return self.url

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.stub.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def requests(self) -> dict:
        return self.stub.requests()

    def __enter__(self) -> StubThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubProcess:
    """The stub as a child process (`python -m bench.upstream_stub`), so it has its own core to run on."""

    def __init__(self, delay_s: float = 0.0, host: str = "127.0.0.1", port: int = 0, keep: int = 100, reuse_port: bool = False) -> None:
        self.argv = [sys.executable, "-m", "bench.upstream_stub", "--host", host, "--port", str(port),
                     "--delay-s", str(delay_s), "--keep", str(keep), *(["--reuse-port"] if reuse_port else [])]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=root, env=env, start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("upstream stub listening on "):
                self.url = line.split()[-1]
                return self.url
        self.stop()
        raise RuntimeError(f"upstream stub did not start: {' '.join(self.argv)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> StubProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_stub", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0, help="fixed delay before every model reply")
    parser.add_argument("--reasoning", action="store_true", help="add reasoning_content to chat replies")
    parser.add_argument("--keep", type=int, default=100, help="how many requests GET /_stub/requests shows")
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT: several stub processes share --port")
    args = parser.parse_args(argv)

    async def serve() -> None:
        stub = UpstreamStub(delay_s=args.delay_s, reasoning=args.reasoning, keep=args.keep)
        url = await stub.start(args.host, args.port, reuse_port=args.reuse_port)
        print(f"upstream stub listening on {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await stub.stop()

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
