"""The rollout collector: stream tasks to an agent's /run, write each finished rollout at once, resume after a crash."""

from __future__ import annotations

from gymctl.rollouts.collector import Collector, CollectResult, CollectSpec, Progress
from gymctl.rollouts.paths import aggregate_metrics_path_for, failures_path_for

__all__ = ["CollectResult", "CollectSpec", "Collector", "Progress", "aggregate_metrics_path_for", "failures_path_for"]
