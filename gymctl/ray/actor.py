"""GymActor: the Ray actor a trainer creates in its own cluster; it serves the environment and runs rollouts of the trainer's rows.

    actor = GymActor.remote(config_paths, overrides, base_urls=vllm_urls, model_name="policy")
    head_url = ray.get(actor.start.remote())
    results = ray.get(actor.run_rollouts.remote(rows))              # input order
    for ref in actor.run_rollouts_streaming.remote(rows):            # as each finishes
        index, result = ray.get(ref)
    ray.get(actor.health_check.remote()); ray.get(actor.shutdown.remote())
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import ray

from gymctl.api.deployment import Deployment, Topology
from gymctl.errors import UsageError

DUMMY_API_KEY = "dummy_key"  # a trainer's own vLLM servers need no key (NeMo RL passes the same)
T = TypeVar("T")
Item = tuple[int, dict[str, Any]]


class _LoopThread:
    """The deployment's own event loop (uvloop when installed: ~1.3-1.5x the rollouts/s of Ray's asyncio loop) in a thread.

    Ray runs an async actor's methods on its own asyncio loop; they only hand work over to this one.
    """

    def __init__(self) -> None:
        from gymctl.runtime.loop import raise_open_files_limit

        raise_open_files_limit()  # thousands of rollouts in flight hold thousands of sockets
        try:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gymctl-deployment", daemon=True)
        self.thread.start()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stream(self, items: AsyncGenerator[Item, None]) -> AsyncIterator[Item]:
        async def step() -> Item:
            return await items.__anext__()

        try:
            while True:
                try:
                    yield await self.call(step())
                except StopAsyncIteration:
                    return
        finally:
            await self.call(items.aclose())


class GymActorImpl:
    """The actor's body (`GymActor` is this class under `ray.remote`): one all-in-one deployment in the actor's process.

    The head binds 0.0.0.0 on a free port and every server advertises the node's address, so the trainer's other
    nodes reach them. `base_urls` (one per data-parallel vLLM rank, each ending in /v1) become `policy_base_url`;
    vllm_model spreads sessions over them. Absent, the config's own `policy_base_url` is used.
    """

    def __init__(self, config_paths: Sequence[str | Path], overrides: Mapping[str, Any] | None = None, base_urls: Sequence[str] | None = None,
                 *, model_name: str | None = None, topology: Topology = "all-in-one", cwd: str | None = None, concurrency: int = 256,
                 timeout_s: float | None = 600.0, head_port: int = 0) -> None:
        self.config_paths = [str(p) for p in config_paths]  # relative ones resolve against `cwd`, then the servers shipped with gymctl
        merged = dict(overrides or {})
        if base_urls is not None:
            if isinstance(base_urls, str) or not base_urls:
                raise UsageError(f"base_urls must be a non-empty list of URLs (one per vLLM data-parallel rank), got {base_urls!r}")
            merged["policy_base_url"] = list(base_urls)
            merged.setdefault("policy_api_key", DUMMY_API_KEY)
        if model_name:
            merged["policy_model_name"] = model_name
        self.overrides = merged
        self.topology: Topology = topology
        self.cwd = cwd
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.head_port = head_port
        self.deployment: Deployment | None = None
        self.runner = _LoopThread()

    async def start(self) -> str:
        """Start every server of the config here; the head's URL (http://<node address>:<port>). Calling it again returns the same URL."""
        if self.deployment is None:
            node_ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
            self.deployment = await self.runner.call(Deployment.start(
                self.config_paths, self.overrides, topology=self.topology, head_host=node_ip, head_port=self.head_port,
                bind_host="0.0.0.0", advertise_host=node_ip, cwd=self.cwd, concurrency=self.concurrency, timeout_s=self.timeout_s,
            ))
        return self.deployment.head_url

    def _running(self) -> Deployment:
        if self.deployment is None:
            raise UsageError("GymActor is not started (or Ray restarted it, which starts no servers): call start() first")
        return self.deployment

    async def node(self) -> dict[str, Any]:
        """Where the actor runs: {node_ip, node_id, pid} (what `ray list actors` would say, without the dashboard)."""
        return {"node_ip": str(ray.util.get_node_ip_address()), "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}  # type: ignore[no-untyped-call]

    async def head_url(self) -> str:
        return self._running().head_url

    async def run_rollouts(self, rows: Sequence[Mapping[str, Any]], agent: str | None = None) -> list[dict[str, Any]]:
        """The agent's reply (with `reward`; token ids and logprobs on output items where the model server returns them) per row, in input order."""
        return await self.runner.call(self._running().collect(rows, agent=agent))

    async def run_rollouts_streaming(self, rows: Sequence[Mapping[str, Any]], agent: str | None = None) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """(row position, reply) as each rollout finishes: a Ray streaming generator (iterate the refs, ray.get each)."""
        async for item in self.runner.stream(self._running().run_rollouts(rows, agent=agent)):
            yield item

    async def health_check(self) -> dict[str, Any]:
        """The deployment's status (as `gymctl status --json`); raises NotReadyError naming what died or is unhealthy."""
        return (await self.runner.call(self._running().check_health())).to_dict()

    async def shutdown(self) -> None:
        """Stop every server; the actor stays (ray.kill it, or let its handle go). A second call does nothing."""
        dep, self.deployment = self.deployment, None
        if dep is not None:
            await self.runner.call(dep.stop())


GymActor = ray.remote(GymActorImpl)
