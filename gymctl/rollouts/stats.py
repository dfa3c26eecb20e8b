"""Running counts of a collection and its final summary: rewards, failures, latency percentiles, throughput."""

from __future__ import annotations

import resource
import time
from array import array  # array[float] appears in annotations only (subscriptable at run time from Python 3.12)
from dataclasses import dataclass, field


def process_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentile(sorted_values: list[float] | array[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None when empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = (n - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class RolloutStats:
    """What this run has done so far (8 bytes of latency per rollout; nothing else grows)."""

    total: int = 0  # pairs this run set out to do
    resumed: int = 0  # pairs already in the output when it started
    done: int = 0
    failed: int = 0
    deferred: int = 0  # answers "busy" (503 + Retry-After) waited out and tried again
    reward_sum: float = 0.0
    rewarded: int = 0
    started: float = field(default_factory=time.monotonic)
    cpu_started: float = field(default_factory=process_cpu_s)
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    failure_kinds: dict[str, int] = field(default_factory=dict)
    first_reasons: dict[str, str] = field(default_factory=dict)  # one example reason per kind

    def record_success(self, latency_s: float, reward: float | None) -> None:
        self.done += 1
        self.latencies_s.append(latency_s)
        if reward is not None:
            self.reward_sum += reward
            self.rewarded += 1

    def record_failure(self, latency_s: float | None, kind: str = "failed", reason: str = "") -> None:
        self.failed += 1
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1
        if kind not in self.first_reasons:
            self.first_reasons[kind] = reason
        if latency_s is not None:
            self.latencies_s.append(latency_s)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        e = self.elapsed_s
        return self.finished / e if e > 0 else 0.0

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewarded if self.rewarded else None

    def latency_percentiles(self) -> dict[str, float | None]:
        values = sorted(self.latencies_s)
        return {f"p{q}": percentile(values, q) for q in (50, 90, 99)}


@dataclass
class Summary:
    """The final report of a collection (what `gymctl collect` prints)."""

    output: str
    rows_in_output: int
    written: int
    failed: int
    resumed: int
    mean_reward: float | None  # over every row of the output
    mean_reward_this_run: float | None
    latency_s: dict[str, float | None]
    elapsed_s: float
    throughput: float
    failures_path: str | None = None
    aggregate_metrics_path: str | None = None
    aggregate_metrics_error: str | None = None
    interrupted: bool = False
    failure_kinds: dict[str, int] = field(default_factory=dict)
    first_reasons: dict[str, str] = field(default_factory=dict)
    torn_bytes: int = 0  # an incomplete last line an interrupted run left, cut away before appending
    bad_output_lines: list[int] = field(default_factory=list)  # output lines that are not rollouts (left in place)
    cpu_s: float | None = None  # CPU time of this process during the collection (user + system)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)
