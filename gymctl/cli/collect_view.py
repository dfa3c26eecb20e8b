"""What `gymctl collect` shows: a live progress bar on a terminal, plain periodic lines otherwise, and the final summary."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gymctl.rollouts.stats import RolloutStats, Summary


class ProgressView:
    """A rich progress bar on a terminal; plain periodic lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._bar: Any = None  # a rich Progress on a terminal
        self._task: Any = None
        self._last = 0.0
        self._seen_errors = 0

    def __enter__(self) -> ProgressView:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("collect"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _info(self, st: RolloutStats) -> str:
        reward = f"{st.mean_reward:.3f}" if st.mean_reward is not None else "-"
        return f"{st.rate:6.1f} rollouts/s  mean reward {reward}  failures {st.failed}"

    def update(self, st: RolloutStats) -> None:
        now = time.monotonic()
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("collect", total=st.total, info="")
            if now - self._last >= 0.1 or st.finished == st.total:
                self._last = now
                self._bar.update(self._task, completed=st.finished, info=self._info(st))
        elif now - self._last >= 5.0 or st.finished == st.total:
            self._last = now
            print(f"collect: {st.finished}/{st.total} done  {self._info(st)}", file=sys.stderr, flush=True)

    def input_error(self, message: str) -> None:
        self._seen_errors += 1
        if self._seen_errors <= 20:
            self.note(f"InputError: {message} (marked failed; collecting the rest)")
        elif self._seen_errors == 21:
            self.note("... more input errors; every one is in the failures file")

    def note(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)


def _ms(v: float | None) -> str:
    return f"{v * 1000:.0f} ms" if v is not None else "-"


def print_summary(s: Summary, as_json: bool, in_process: bool = False) -> None:
    if as_json:
        print(json.dumps(s.to_dict(), indent=2))
        return
    reward = f"{s.mean_reward:.4f}" if s.mean_reward is not None else "-"
    where = " (the servers ran in it too)" if in_process else ""
    lat = s.latency_s
    lines = [
        f"{'Interrupted' if s.interrupted else 'Collected'}: {s.written} rollouts written, {s.failed} failed, {s.resumed} already in the output (resumed)",
        f"  output      {s.output}: {s.rows_in_output} rows, mean reward {reward}",
        f"  latency     p50 {_ms(lat.get('p50'))}  p90 {_ms(lat.get('p90'))}  p99 {_ms(lat.get('p99'))}",
        f"  throughput  {s.throughput:.1f} rollouts/s over {s.elapsed_s:.2f} s",
    ]
    if s.cpu_s is not None and s.written + s.failed:
        lines.append(f"  cpu         {s.cpu_s * 1000 / (s.written + s.failed):.2f} ms per rollout in this process{where}")
    if s.torn_bytes:
        lines.append(f"  repaired    cut a torn last line ({s.torn_bytes} bytes) that an interrupted run left in the output")
    if s.bad_output_lines:
        lines.append(f"  warning     output lines {', '.join(map(str, s.bad_output_lines))} are not rollouts; they were left as they are")
    if s.failures_path:
        lines.append(f"  failures    {s.failures_path} (each with its reason); run the same command again to retry them")
        for kind, n in sorted(s.failure_kinds.items(), key=lambda kv: -kv[1]):
            lines.append(f"              {n} x {kind}, e.g. {s.first_reasons.get(kind, '')[:300]}")
    if s.aggregate_metrics_path:
        lines.append(f"  metrics     {s.aggregate_metrics_path}")
    elif s.aggregate_metrics_error:
        lines.append(f"  metrics     not written: {s.aggregate_metrics_error}")
    if s.interrupted:
        lines.append("  run the same command again to collect the rest")
    print("\n".join(lines), flush=True)
