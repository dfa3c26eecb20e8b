"""Aggregates rounds into medians and ratios, checks the issue's targets, prints the table and draws the chart."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

FIGURES = ("ready_s", "pss_mib", "pss_load_mib", "run_latency_ms", "rollouts_per_s", "p50_ms", "p99_ms",
           "cpu_ms_per_rollout", "shutdown_s", "processes", "failures", "leftover_processes")
GYMCTL = ("gymctl_all_in_one", "gymctl_separated", "gymctl_containers")
BASELINE = "nemo_gym"

# (label, system, figure, "ratio" to NeMo Gym or "abs", comparison, bound)
TARGETS = (
    ("throughput, all-in-one >= 15x", "gymctl_all_in_one", "rollouts_per_s", "ratio", ">=", 15.0),
    ("throughput, separated >= 8x", "gymctl_separated", "rollouts_per_s", "ratio", ">=", 8.0),
    ("CPU per rollout, all-in-one <= 0.6 ms", "gymctl_all_in_one", "cpu_ms_per_rollout", "abs", "<=", 0.6),
    ("separated containers, up to healthy <= 5 s", "gymctl_containers", "ready_s", "abs", "<=", 5.0),
    ("one /run latency, all-in-one <= 1/3", "gymctl_all_in_one", "run_latency_ms", "ratio", "<=", 1 / 3),
    ("start to ready head, all-in-one <= 1/10", "gymctl_all_in_one", "ready_s", "ratio", "<=", 0.1),
    ("PSS at ready, all-in-one <= 1/8", "gymctl_all_in_one", "pss_mib", "ratio", "<=", 1 / 8),
)


def median_of(rounds: list[dict]) -> dict:
    """Median of every numeric figure over the rounds that succeeded."""
    out: dict = {"rounds": len(rounds)}
    for key in FIGURES:
        values = [r[key] for r in rounds if isinstance(r.get(key), (int, float))]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def ratios(systems: dict[str, dict]) -> dict[str, dict]:
    base = systems.get(BASELINE) or {}
    out: dict[str, dict] = {}
    for name in GYMCTL:
        mine = systems.get(name) or {}
        out[name] = {}
        for key in ("ready_s", "pss_mib", "pss_load_mib", "run_latency_ms", "rollouts_per_s", "p50_ms", "p99_ms",
                    "cpu_ms_per_rollout", "shutdown_s"):
            a, b = mine.get(key), base.get(key)
            out[name][key] = round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    return out


def check_targets(systems: dict[str, dict], ratio_table: dict[str, dict], sweep: dict) -> list[dict]:
    results = []
    for label, system, figure, kind, op, bound in TARGETS:
        value = ratio_table.get(system, {}).get(figure) if kind == "ratio" else (systems.get(system) or {}).get(figure)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        results.append({"target": label, "value": value, "met": met})
    top = sweep.get("10000") or {}
    if top:
        value = top.get("achieved_of_ideal")
        met = value is not None and value >= 0.9 and top.get("failures") == 0
        results.append({"target": "sweep, 10,000 in flight >= 90% of ideal, 0 failures",
                        "value": value, "failures": top.get("failures"), "met": met})
    else:
        results.append({"target": "sweep, 10,000 in flight >= 90% of ideal, 0 failures", "value": None, "met": None})
    return results


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(result: dict) -> str:
    """The console table: each figure per system, and each gymctl figure as a ratio to NeMo Gym."""
    names = [n for n in (BASELINE, *GYMCTL) if n in result["systems"]]
    head = ["figure"] + [c for n in names for c in ([n] if n == BASELINE else [n, "x NG"])]
    rows = [head]
    for key in FIGURES:
        row = [key]
        for n in names:
            row.append(_fmt(result["systems"][n].get(key)))
            if n != BASELINE:
                row.append(_fmt(result["ratios"].get(n, {}).get(key)))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for n, sysres in result["systems"].items():
        if sysres.get("failed"):
            lines.append(f"FAILED {n}: {sysres['failed']}")
    floor = result.get("floor") or {}
    if floor:
        lines.append(f"floor: bare ASGI echo {floor.get('echo_rps')} req/s -> at most "
                     + ", ".join(f"{k} {v}/s" for k, v in floor.get("limit_rollouts_per_s", {}).items())
                     + " rollouts/s (echo req/s / HTTP exchanges per rollout)")
    stub = result.get("stub") or {}
    if stub:
        lines.append(f"stub alone: {stub.get('requests_per_s')} model calls/s = {stub.get('rollouts_per_s_allowed')}"
                     " rollouts/s (2 calls each), so it is not the bottleneck below that")
    for n_flight, point in (result.get("sweep") or {}).items():
        lines.append(f"sweep {n_flight:>5} in flight (stub {point['stub_delay_s']} s/call): "
                     f"{point['rollouts_per_s']}/s of ideal {point['ideal_rollouts_per_s']}/s "
                     f"({_fmt(point['achieved_of_ideal'])}), failures {point['failures']}, "
                     f"PSS {point['pss_mib']} MiB, {point['pss_per_in_flight_kib']} KiB per in-flight rollout")
    for t in result.get("targets", []):
        mark = {True: "MET ", False: "MISS", None: "n/a "}[t["met"]]
        lines.append(f"[{mark}] {t['target']}: {_fmt(t['value'])}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in (BASELINE, *GYMCTL) if n in result["systems"]]
    panels = [("rollouts_per_s", "rollouts/s (1000 @ 64)"), ("ready_s", "start to ready head (s)"),
              ("pss_mib", "PSS at ready (MiB)")]
    sweep = result.get("sweep") or {}
    fig, axes = plt.subplots(1, len(panels) + (1 if sweep else 0), figsize=(5 * (len(panels) + 1), 4.5))
    colors = ["#76b900", "#1f77b4", "#4a90d9", "#9cc3ea"]
    for ax, (key, title) in zip(axes, panels, strict=False):  # the sweep's axis has no panel
        values = [result["systems"][n].get(key) or 0 for n in names]
        bars = ax.bar(range(len(names)), values, color=colors[: len(names)])
        ax.set_title(title)
        ax.set_xticks(range(len(names)), [n.replace("gymctl_", "gymctl\n") for n in names], fontsize=8)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
    if sweep:
        ax = axes[-1]
        xs = list(sweep)
        ax.plot(xs, [sweep[x]["ideal_rollouts_per_s"] for x in xs], "k--", label="ideal")
        ax.plot(xs, [sweep[x]["rollouts_per_s"] for x in xs], "o-", label=result.get("sweep_system", "gymctl"))
        ax.set_ylim(bottom=0)
        ax.set_title("scale sweep: rollouts/s vs in flight")
        ax.set_xlabel("rollouts in flight")
        ax.legend(fontsize=8)
    fig.suptitle(f"gymctl vs NeMo Gym 0.7.0 — example_single_tool_call, medians of {result.get('rounds')} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
