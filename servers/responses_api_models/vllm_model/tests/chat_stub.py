"""A test double of an OpenAI-compatible Chat Completions server (vLLM-like): real aiohttp on 127.0.0.1.

By default it plays a tool-calling policy: while the last message is not a tool result it calls the first
offered tool (reasoning in `reasoning_content`), then it answers with `<think>...</think>` text. Every
reply carries `token_id:<n>` logprobs; `/tokenize` answers token ids for the prompt. Tests can queue
faults (`fail_next`) and see every request it got (`requests`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

Reply = tuple[int, Any]  # (status, JSON body | raw bytes | "close")


def default_policy(body: dict[str, Any], turn: int) -> dict[str, Any]:
    """The assistant message: call the first tool until a tool result arrives, then answer."""
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    if tools and messages and messages[-1].get("role") != "tool":
        fn = tools[0]["function"]
        args = {p: "sf" for p in (fn.get("parameters") or {}).get("required", [])}
        return {"role": "assistant", "content": None, "reasoning_content": f"I should call {fn['name']}.",
                "tool_calls": [{"id": f"chatcmpl-tool-{turn}", "type": "function",
                                "function": {"name": fn["name"], "arguments": json.dumps(args)}}]}
    return {"role": "assistant", "content": "<think>The tool answered.</think>It is sunny in sf."}


def generation_ids(turn: int) -> list[int]:
    return [100 * turn + i for i in range(1, 6)]


def prompt_ids(messages: list[Any]) -> list[int]:
    return [7, len(messages), len(json.dumps(messages)) % 997]


class ChatStub:
    """Serve the double on a free port; `base_url` ends in /v1 like vLLM's."""

    def __init__(self, policy: Callable[[dict[str, Any], int], dict[str, Any]] = default_policy, *,
                 inline_token_ids: bool = False, finish_reason: str | None = None) -> None:
        self.policy = policy
        self.inline_token_ids = inline_token_ids
        self.finish_reason = finish_reason
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.faults: list[Reply] = []
        self.turns = 0
        self.delay_s = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [body for path, body, _ in self.requests if path == "/v1/chat/completions"]

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def fail_next(self, *replies: Reply) -> None:
        self.faults.extend(replies)

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        self.requests.append((request.path, body, dict(request.headers)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.faults:
            status, payload = self.faults.pop(0)
            if payload == "close":
                request.transport.close()  # type: ignore[union-attr]
                return web.Response(status=200)
            if isinstance(payload, bytes):
                return web.Response(status=status, body=payload, content_type="application/json")
            return web.json_response(payload, status=status)
        if request.path.endswith("/tokenize"):
            return web.json_response({"tokens": prompt_ids(body.get("messages") or []), "count": 3})
        self.turns += 1
        message = self.policy(body, self.turns)
        gen = generation_ids(self.turns)
        choice: dict[str, Any] = {
            "index": 0, "message": message,
            "finish_reason": self.finish_reason or ("tool_calls" if message.get("tool_calls") else "stop"),
            "logprobs": {"content": [{"token": f"token_id:{t}", "logprob": -0.5 / t, "bytes": None, "top_logprobs": []}
                                     for t in gen]} if body.get("logprobs") else None,
        }
        reply: dict[str, Any] = {"id": f"chatcmpl-{self.turns}", "object": "chat.completion", "created": int(time.time()),
                                 "model": body.get("model"), "choices": [choice],
                                 "usage": {"prompt_tokens": 30, "completion_tokens": len(gen), "total_tokens": 30 + len(gen)}}
        if self.inline_token_ids:
            reply["prompt_token_ids"] = prompt_ids(body.get("messages") or [])
            choice["token_ids"] = gen
        return web.json_response(reply)

    async def start(self, port: int = 0) -> ChatStub:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._respond)
        app.router.add_post("/tokenize", self._respond)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @contextmanager
    def in_thread(self) -> Iterator[ChatStub]:
        """Serve from a background thread (for tests that drive subprocesses synchronously)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
