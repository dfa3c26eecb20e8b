"""The collector's connections spread over processes when one process's open files cannot hold them.

One process may hold at most its open-files limit (20,000 here, not raisable), and one (source address,
destination address:port) pair at most 28,232 connections (the ephemeral port range). At a concurrency past
what one process holds with margin, the collector starts `python -m gymctl.rollouts.spread` processes: each
holds its share of the connections to the agent and, for an agent on loopback, makes them from a loopback
address of its own (127.2.0.K), so no pair passes the port range. The collecting process keeps everything
else -- the input, the one writer of the output and failures file, the lock, progress and the summary -- and
hands each rollout's request body to a process over a pipe, which answers with the agent's reply.

Frames on the pipes: to a process `ID LEN\\n` + LEN bytes of request body; back `[ID, status, deferred, latency,
kind, reason, LEN]\\n` + LEN bytes of reply (orjson writes no newline inside a line).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from gymctl.errors import UsageError
from gymctl.rollouts.posting import Posted, RunPoster, RunTarget

MARGIN = 0.8  # of what one process may hold: a process keeps 20% of its budget free (clients reconnecting, the loop's own files)
MAX_PROCESSES = 32  # more would not fit 2 cores' worth of event loops usefully, nor this machine's memory
PORT_RANGE = 28_232  # ephemeral ports (32768-60999): connections per (source address, destination address:port)
SOURCE_NET = "127.2.0."  # spread process K connects to a loopback agent from 127.2.0.K


def _port_range() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return PORT_RANGE


@dataclass(frozen=True)
class SpreadPlan:
    processes: int
    per_process: int  # connections one process may hold (its budget with margin)
    open_files: int  # the per-process limit that budget comes from


def per_process_connections() -> tuple[int, int]:
    """(connections one process holds with margin, its open-files limit) -- after raising the soft limit to the hard one."""
    from gymctl.server.capacity import raise_open_files_limit, reserve_files

    files = raise_open_files_limit()
    return max(1, int((files - reserve_files(files)) * MARGIN)), files


def spread_plan(concurrency: int, processes: int | None = None, *, agent_url: str | None = None) -> SpreadPlan:
    """How many processes hold `concurrency` connections to the agent; UsageError past what this machine can hold even spread."""
    from gymctl.server.capacity import hard_open_files_limit

    per, files = per_process_connections()
    ceiling = MAX_PROCESSES * per
    if concurrency > ceiling:
        raise UsageError(
            f"--concurrency {concurrency:,}: more than this machine can hold even spread over processes: at most {ceiling:,} "
            f"rollouts in flight ({MAX_PROCESSES} collector processes x {per:,} connections, from an open-files limit of "
            f"{files:,} per process, hard limit {hard_open_files_limit():,}); lower --concurrency to {ceiling:,} or less, "
            "or collect from several machines")
    n = processes if processes is not None else max(1, math.ceil(concurrency / per))
    if processes is not None and math.ceil(concurrency / processes) > per:
        raise UsageError(f"--concurrency {concurrency:,} over GYMCTL_COLLECT_PROCESSES={processes}: {math.ceil(concurrency / processes):,} "
                         f"connections per process, more than one holds here ({per:,}); use at least {math.ceil(concurrency / per)} processes")
    if agent_url is not None and n > 1 and not _loopback_agent(agent_url):
        ports = _port_range()
        if concurrency > ports:
            raise UsageError(
                f"--concurrency {concurrency:,}: the agent at {agent_url} is not on loopback, so every connection to it leaves from "
                f"this host's one address, and one (source, destination) pair holds at most {ports:,} (the ephemeral port range); "
                f"lower --concurrency to {ports:,}, or run the agent with several replicas (each its own port) and collect from each")
    return SpreadPlan(n, per, files)


def _loopback_agent(agent_url: str) -> bool:
    from urllib.parse import urlsplit

    from gymctl.server.connector import _is_loopback_v4

    return _is_loopback_v4(urlsplit(agent_url).hostname or "")


class _Process:
    """One spread process: its pipes, the rollouts it holds, what it printed last."""

    def __init__(self, proc: asyncio.subprocess.Process, index: int) -> None:
        self.proc = proc
        self.index = index
        self.pending: dict[int, asyncio.Future[Posted]] = {}
        self.tail: deque[str] = deque(maxlen=5)
        self.dead: str | None = None
        self.reader = asyncio.create_task(self._read())
        self.errors = asyncio.create_task(self._read_stderr())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                head = await self.proc.stdout.readline()
                if not head:
                    break
                rid, status, deferred, latency, kind, reason, n = orjson.loads(head)
                raw = await self.proc.stdout.readexactly(n) if n else b""
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(Posted(status, raw, latency, deferred, kind, reason))
        except (asyncio.IncompleteReadError, ValueError, OSError):
            pass
        code = await self.proc.wait()
        last = next((line for line in reversed(self.tail) if line.strip()), "")
        self.dead = f"collector process {self.index + 1} (pid {self.proc.pid}) exited with code {code}" + (f": {last}" if last else "")
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result(Posted(None, b"", 0.0, 0, "agent_request_failed", self.dead))
        self.pending.clear()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.tail.append(line.decode(errors="replace").rstrip())


class SpreadPoster:
    """Posts each rollout through one of several processes (slot K -> process K mod N), the same `post` as RunPoster."""

    def __init__(self, procs: list[_Process]) -> None:
        self.procs = procs
        self._ids = 0
        self.cpu_s = 0.0  # the processes' CPU time, once they have exited (close)

    @classmethod
    async def start(cls, target: RunTarget, plan: SpreadPlan) -> SpreadPoster:
        procs: list[_Process] = []
        try:
            for k in range(plan.processes):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gymctl.rollouts.spread", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, start_new_session=True,  # Ctrl-C reaches the collector, which stops them
                    limit=1 << 24)
                assert proc.stdin is not None
                setup = {**target.to_dict(), "source_address": f"{SOURCE_NET}{k + 1}", "connections": plan.per_process}
                proc.stdin.write(orjson.dumps(setup) + b"\n")  # the token travels on the pipe, never on a command line
                procs.append(_Process(proc, k))
        except BaseException:
            await cls(procs).close()
            raise
        return cls(procs)

    async def post(self, data: bytes, slot: int = 0) -> Posted:
        p = self.procs[slot % len(self.procs)]
        if p.dead:
            return Posted(None, b"", 0.0, 0, "agent_request_failed", p.dead)
        self._ids += 1
        rid = self._ids
        fut: asyncio.Future[Posted] = asyncio.get_running_loop().create_future()
        p.pending[rid] = fut
        assert p.proc.stdin is not None
        p.proc.stdin.write(b"%d %d\n" % (rid, len(data)) + data)
        try:
            return await fut
        finally:
            p.pending.pop(rid, None)

    async def close(self) -> None:
        """Stop the processes (what they hold in flight is abandoned, as a stopped collection's is) and count their CPU."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.proc.terminate()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.kill()
                await p.proc.wait()
            p.reader.cancel()
            p.errors.cancel()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


async def _serve() -> None:
    """A spread process: read the setup line, then post each framed body and write back the reply, until stdin ends."""
    import os

    from gymctl.server.response import new_session

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
    setup: dict[str, Any] = orjson.loads(await reader.readline())
    target = RunTarget(setup["agent"], setup["agent_url"], setup["headers"], setup["timeout_s"], setup["retries"])
    os.environ["GYMCTL_SOURCE_ADDRESS"] = setup["source_address"]  # this process's own loopback address (gymctl.server.connector)
    session = new_session(limit=int(setup["connections"]))
    poster = RunPoster(target, session)
    tasks: set[asyncio.Task[None]] = set()

    async def one(rid: int, data: bytes) -> None:
        p = await poster.post(data)
        writer.write(orjson.dumps([rid, p.status, p.deferred, p.latency_s, p.kind, p.reason, len(p.raw)]) + b"\n" + p.raw)

    try:
        while head := await reader.readline():
            rid, n = (int(x) for x in head.split())
            data = await reader.readexactly(n)
            t = asyncio.create_task(one(rid, data))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()
        await session.close()


def main() -> None:
    """SIGTERM (the collector's stop) ends it at once; so does the end of its stdin (the collector gone)."""
    import gc

    from gymctl.server.capacity import raise_open_files_limit

    raise_open_files_limit()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)  # thousands of live requests: rescan them rarely (gymctl.runtime.loop.tune_gc)
    with contextlib.suppress(KeyboardInterrupt, asyncio.IncompleteReadError, BrokenPipeError):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_serve())
            return
        uvloop.run(_serve())


if __name__ == "__main__":
    main()
