"""Collector: tasks x repeats -> the agent's /run, bounded concurrency over one pooled session, each rollout written as it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gymctl.errors import InputError, UsageError
from gymctl.rollouts.lock import OutputLock
from gymctl.rollouts.metrics import (
    digest_output,
    fetch_aggregate_metrics,
    write_aggregate_metrics,
)
from gymctl.rollouts.paths import (
    aggregate_metrics_path_for,
    check_paths,
    failures_path_for,
)
from gymctl.rollouts.posting import Posted, RunPoster, RunTarget
from gymctl.rollouts.resume import ROLLOUT_INDEX, TASK_INDEX, ResumeState, scan_output
from gymctl.rollouts.stats import RolloutStats, Summary, process_cpu_s
from gymctl.rollouts.tasks import RESPONSES_CREATE_PARAMS, Task, count_tasks, iter_tasks
from gymctl.rollouts.writer import JsonlAppender

Progress = RolloutStats
CollectResult = Summary


@dataclass
class CollectSpec:
    """What to collect: every (task, repeat) of the input that the output does not hold yet."""

    agent: str
    input_path: Path
    output_path: Path
    num_repeats: int = 1
    concurrency: int = 64
    limit: int | None = None
    timeout_s: float | None = 600.0  # per rollout; None: no limit
    retries: int = 2  # connection-level retries of one /run
    params: dict[str, Any] = field(default_factory=dict)  # merged into every row's responses_create_params
    overwrite: bool = False  # start over: empty the output instead of resuming it
    processes: int | None = None  # processes holding the connections to the agent (None: as many as the concurrency needs)

    def check(self) -> None:
        if self.num_repeats < 1:
            raise UsageError(f"--num-repeats {self.num_repeats}: repeat each task at least once")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency {self.concurrency}: run at least one rollout at a time")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit {self.limit}: take at least one task (or leave --limit out for all)")
        if self.timeout_s is not None and not 0 < self.timeout_s < float("inf"):  # also NaN
            raise UsageError(f"--timeout {self.timeout_s}: give a positive number of seconds")
        if self.processes is not None and self.processes < 1:
            raise UsageError(f"GYMCTL_COLLECT_PROCESSES={self.processes}: use at least one process (or unset it: as many as needed)")
        check_paths(self.input_path, self.output_path)
        from gymctl.rollouts.spread import spread_plan

        spread_plan(self.concurrency, self.processes)  # one connection per rollout in flight: refused past what the machine holds


class Collector:
    """Runs one collection against an agent's base URL; progress and input problems are reported by callback."""

    def __init__(
        self,
        spec: CollectSpec,
        agent_url: str,
        *,
        session: aiohttp.ClientSession,
        headers: dict[str, str] | None = None,
        on_progress: Callable[[RolloutStats], None] | None = None,
        on_input_error: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.agent_url = agent_url.rstrip("/")
        self.session = session
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.on_progress = on_progress
        self.on_input_error = on_input_error
        self.stats = RolloutStats()
        self.resume = ResumeState()
        self._agent_ref = {"type": "responses_api_agents", "name": spec.agent}
        self._stopping = asyncio.Event()
        self.target = RunTarget(spec.agent, self.agent_url, self.headers, spec.timeout_s, spec.retries)
        self._poster: Any = None  # RunPoster here, or SpreadPoster over processes (gymctl.rollouts.spread)
        self.processes = 1  # how many processes held the agent connections
        self._out: JsonlAppender | None = None
        self._failures: JsonlAppender | None = None

    def stop(self) -> None:
        """Stop starting rollouts; in-flight ones are abandoned (they are retried by the next run)."""
        self._stopping.set()

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> Summary:
        spec = self.spec
        spec.check()
        n_tasks = count_tasks(spec.input_path, spec.limit)
        if n_tasks == 0:
            raise InputError("the input has no tasks (the file is empty); write one JSON object with responses_create_params per line", source=str(spec.input_path))
        from gymctl.rollouts.spread import SpreadPoster, spread_plan

        plan = spread_plan(min(spec.concurrency, n_tasks * spec.num_repeats), spec.processes, agent_url=self.agent_url)
        with OutputLock(spec.output_path):  # a second collection on this output refuses to start (gymctl.rollouts.lock)
            if plan.processes == 1:
                self._poster = RunPoster(self.target, self.session)
            else:  # past one process's open files: the connections live in `plan.processes` processes, rows are written here
                self._poster = await SpreadPoster.start(self.target, plan)
            self.processes = plan.processes
            try:
                return await self._run(n_tasks)
            finally:
                await self._poster.close()

    async def _run(self, n_tasks: int) -> Summary:
        spec = self.spec
        if spec.overwrite and spec.output_path.exists():
            spec.output_path.write_bytes(b"")
        self.resume = scan_output(spec.output_path)
        in_range = sum(1 for t, r in self.resume.done if t < n_tasks and r < spec.num_repeats)
        self.stats = RolloutStats(total=n_tasks * spec.num_repeats - in_range, resumed=in_range)
        failures_path = failures_path_for(spec.output_path)
        self._out = JsonlAppender(spec.output_path)
        self._failures = JsonlAppender(failures_path, truncate=True)  # this run's failures; earlier ones are being retried
        interrupted = False
        queue: asyncio.Queue[tuple[Task, int] | None] = asyncio.Queue(maxsize=spec.concurrency * 2)
        workers = [asyncio.create_task(self._worker(queue, slot)) for slot in range(min(spec.concurrency, max(self.stats.total, 1)))]
        producer = asyncio.create_task(self._produce(queue, len(workers)))
        stopper = asyncio.create_task(self._stopping.wait())
        running: set[asyncio.Task[Any]] = {*workers, producer}
        try:
            while running - {producer} and not self._stopping.is_set():
                done, _ = await asyncio.wait({*running, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for t in done - {stopper}:
                    running.discard(t)
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            interrupted = self._stopping.is_set()
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            for t in [*running, stopper]:
                t.cancel()
            await asyncio.gather(*running, stopper, return_exceptions=True)
            self._out.close()
            self._failures.close()
        return await self._finish(failures_path, interrupted)

    async def _produce(self, queue: asyncio.Queue[tuple[Task, int] | None], n_workers: int) -> None:
        done = self.resume.done
        repeats = self.spec.num_repeats
        for task in iter_tasks(self.spec.input_path, self.spec.limit):
            if task.error and self.on_input_error:
                self.on_input_error(task.error)
            if task.row is not None and self.spec.params:
                task.row = {**task.row, RESPONSES_CREATE_PARAMS: {**task.row[RESPONSES_CREATE_PARAMS], **self.spec.params}}
            for r in range(repeats):
                if (task.index, r) not in done:
                    await queue.put((task, r))
        for _ in range(n_workers):  # only on a normal end: a cancelled producer must not block on a full queue
            await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[tuple[Task, int] | None], slot: int) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            task, repeat = item
            await self._rollout(task, repeat, slot)
            if self.on_progress:
                self.on_progress(self.stats)

    async def _rollout(self, task: Task, repeat: int, slot: int = 0) -> None:
        if task.row is None:
            self._fail(task, repeat, task.error or "bad input line", "input_error", None)
            return
        body = {**task.row, TASK_INDEX: task.index, ROLLOUT_INDEX: repeat, "agent_ref": self._agent_ref}
        posted: Posted = await self._poster.post(orjson.dumps(body), slot)
        self.stats.deferred += posted.deferred
        if posted.status is None:
            self._fail(task, repeat, posted.reason, posted.kind or "agent_request_failed", posted.latency_s)
            return
        status, raw = posted.status, posted.raw
        latency = posted.latency_s
        if status != 200:
            self._fail(task, repeat, f"agent {self.spec.agent} /run answered {status}: {_detail(raw)}", "agent_run_error", latency, status)
            return
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._fail(task, repeat, f"agent {self.spec.agent} /run answered 200 with a body that is not JSON: {raw[:200]!r}", "agent_run_error", latency, status)
            return
        if not isinstance(reply, dict):
            self._fail(task, repeat, f"agent {self.spec.agent} /run answered a JSON {type(reply).__name__}, not an object", "agent_run_error", latency, status)
            return
        reply[TASK_INDEX] = task.index
        reply[ROLLOUT_INDEX] = repeat
        reply["agent_ref"] = self._agent_ref
        assert self._out is not None
        self._out.write(reply)
        reward = reply.get("reward")
        self.stats.record_success(latency, float(reward) if isinstance(reward, (int, float)) and not isinstance(reward, bool) else None)

    def _fail(self, task: Task, repeat: int, reason: str, kind: str, latency: float | None, status: int | None = None) -> None:
        assert self._failures is not None
        row: dict[str, Any] = {
            TASK_INDEX: task.index, ROLLOUT_INDEX: repeat, "agent_ref": self._agent_ref,
            "input_line": task.line, "_ng_failure_class": kind, "reason": reason,
        }
        if status is not None:
            row["status"] = status
        self._failures.write(row)
        self.stats.record_failure(latency, kind, reason)

    async def _finish(self, failures_path: Path, interrupted: bool) -> Summary:
        spec, st = self.spec, self.stats
        elapsed = st.elapsed_s
        cpu_s = process_cpu_s() - st.cpu_started + getattr(self._poster, "cpu_s", 0.0)  # the spread processes' too
        digest = await asyncio.to_thread(digest_output, spec.output_path)
        summary = Summary(
            output=str(spec.output_path), rows_in_output=digest.rows, written=st.done, failed=st.failed, resumed=st.resumed,
            mean_reward=digest.mean_reward, mean_reward_this_run=st.mean_reward, latency_s=st.latency_percentiles(),
            elapsed_s=elapsed, throughput=(st.finished / elapsed if elapsed > 0 else 0.0),
            failures_path=str(failures_path) if st.failed else None, interrupted=interrupted, cpu_s=cpu_s,
            torn_bytes=self.resume.torn_bytes, failure_kinds=dict(st.failure_kinds), first_reasons=dict(st.first_reasons), bad_output_lines=self.resume.bad_lines[:20],
        )
        if not st.failed:
            failures_path.unlink(missing_ok=True)  # noqa: ASYNC240 -- one unlink of a local file, once per run
        try:
            if digest.rows and digest.body_path and not interrupted:
                path = aggregate_metrics_path_for(spec.output_path)
                try:
                    entry = await fetch_aggregate_metrics(self.session, self.agent_url, spec.agent, digest.body_path, headers=self.headers)
                    write_aggregate_metrics(path, entry)
                    summary.aggregate_metrics_path = str(path)
                except RuntimeError as e:
                    summary.aggregate_metrics_error = str(e)
        finally:
            if digest.body_path:
                digest.body_path.unlink(missing_ok=True)
        return summary


def _detail(raw: bytes) -> str:
    """The readable part of an error body (FastAPI's {"detail": ...} unwrapped)."""
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict) and "detail" in data:
            detail = data["detail"]
            return detail if isinstance(detail, str) else orjson.dumps(detail).decode()[:500]
    except orjson.JSONDecodeError:
        pass
    return raw[:500].decode(errors="replace") or "(empty body)"
