"""The benchmark's report: medians over rounds, ratios to NeMo Gym, targets, and a failed system shown as failed."""

from __future__ import annotations

from bench import report


def _system(**figures):
    return {k: figures.get(k) for k in report.FIGURES}


def test_medians_over_rounds_ignore_missing_figures():
    m = report.median_of([{"rollouts_per_s": 100.0}, {"rollouts_per_s": 300.0}, {"rollouts_per_s": 200.0, "ready_s": 1.0}])
    assert m["rounds"] == 3 and m["rollouts_per_s"] == 200.0 and m["ready_s"] == 1.0 and m["p99_ms"] is None


def test_ratios_are_gymctl_over_nemo_gym_and_null_without_a_baseline():
    systems = {"nemo_gym": _system(rollouts_per_s=100.0, ready_s=20.0, pss_mib=1600.0, run_latency_ms=10.0),
               "gymctl_all_in_one": _system(rollouts_per_s=1600.0, ready_s=1.0, pss_mib=100.0, run_latency_ms=2.0, cpu_ms_per_rollout=0.9)}
    r = report.ratios(systems)
    assert r["gymctl_all_in_one"]["rollouts_per_s"] == 16.0 and r["gymctl_all_in_one"]["ready_s"] == 0.05
    assert r["gymctl_separated"]["rollouts_per_s"] is None
    targets = {t["target"]: t["met"] for t in report.check_targets(systems, r, {})}
    assert targets["throughput, all-in-one >= 15x"] is True
    assert targets["CPU per rollout, all-in-one <= 0.6 ms"] is False  # an absolute bound, not a ratio
    assert targets["PSS at ready, all-in-one <= 1/8"] is True
    assert targets["throughput, separated >= 8x"] is None  # not measured: neither met nor missed


def test_sweep_target_needs_ninety_percent_and_no_failures():
    sweep = {"10000": {"achieved_of_ideal": 0.95, "failures": 3}}
    [sweep_target] = [t for t in report.check_targets({}, {}, sweep) if t["target"].startswith("sweep")]
    assert sweep_target["met"] is False


def test_table_names_a_failed_system_and_its_reason():
    result = {"systems": {"nemo_gym": _system(rollouts_per_s=150.0),
                          "gymctl_containers": {**_system(), "failed": "gymctl up is not built yet"}},
              "ratios": {"gymctl_containers": {}}, "targets": []}
    text = report.table(result)
    assert "FAILED gymctl_containers: gymctl up is not built yet" in text
    assert text.splitlines()[0].split()[:3] == ["figure", "nemo_gym", "gymctl_containers"]
