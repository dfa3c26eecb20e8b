"""GymActor on a running two-node Ray cluster: spin-up to ready, memory at ready, and run_rollouts throughput vs `gymctl collect`.

What it measures, all in one run on one cluster (ray.cluster_utils.Cluster, its files in a temp folder removed after):
- spin-up: `GymActor.remote(...)` + `start()` until the head URL comes back (the actor's process is created
  fresh each time), median of `--spinups`;
- memory: the actor process's PSS at ready;
- throughput: the same N rollouts of the example environment on the scripted policy, at the same concurrency,
  through `actor.run_rollouts` (rows cross Ray to the actor, which posts each to the agent) and through
  `gymctl collect --head <the actor's head>` (a client process posting to the same agent); alternated
  `--rounds` times, best of each; the ratio is run_rollouts / collect.

    python -m bench.ray_actor [--rollouts 2000] [--concurrency 64] [--rounds 2] [--spinups 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.systems import REPO

AGENT = "example_single_tool_call_simple_agent"
CONFIGS = ["resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
           "responses_api_models/scripted_model/configs/scripted_model.yaml"]
DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"


def _rows(n: int) -> list[dict]:
    base = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [{**base[i % len(base)], "agent_ref": {"name": AGENT}} for i in range(n)]


def _collect_s(head_url: str, rows: list[dict], concurrency: int, work: Path) -> float:
    data = work / "in.jsonl"
    data.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "agent_ref"}) + "\n" for r in rows))
    out = work / "out.jsonl"
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "gymctl", "collect", "--head", head_url, "--agent", AGENT, "--input", str(data),
                          "--output", str(out), "--concurrency", str(concurrency), "--json"], cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return float(json.loads(run.stdout).get("elapsed_s") or elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spinups", type=int, default=3)
    args = parser.parse_args()

    temp = tempfile.mkdtemp(prefix="gymctl-bench-ray-")
    os.environ["RAY_TMPDIR"] = temp
    import ray
    from ray.cluster_utils import Cluster

    from gymctl.ray import GymActor

    cluster = None
    try:
        t0 = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        cluster.add_node(num_cpus=1, resources={"model_node": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        print(f"cluster of 2 nodes up in {time.monotonic() - t0:.1f} s", file=sys.stderr)

        spinups, pss = [], []
        for _ in range(args.spinups):
            t = time.monotonic()
            actor = GymActor.options(num_cpus=0).remote(CONFIGS, concurrency=args.concurrency, cwd=str(REPO))
            head_url = ray.get(actor.start.remote())
            spinups.append(time.monotonic() - t)
            pid = ray.get(actor.node.remote())["pid"]
            pss.append(psutil.Process(pid).memory_full_info().pss / 2**20)
            ray.get(actor.shutdown.remote())
            ray.kill(actor)

        actor = GymActor.options(num_cpus=0).remote(CONFIGS, concurrency=args.concurrency, cwd=str(REPO))
        head_url = ray.get(actor.start.remote())
        rows = _rows(args.rollouts)
        ray.get(actor.run_rollouts.remote(rows[:200]))  # warm-up: connections, first imports
        via_actor, via_collect = [], []
        with tempfile.TemporaryDirectory(prefix="gymctl-bench-ray-io-") as work:
            for _ in range(args.rounds):
                t = time.monotonic()
                results = ray.get(actor.run_rollouts.remote(rows))
                via_actor.append(time.monotonic() - t)
                assert len(results) == len(rows) and all(r["reward"] == 1.0 for r in results)
                via_collect.append(_collect_s(head_url, rows, args.concurrency, Path(work)))
        ray.get(actor.shutdown.remote())
        ray.kill(actor)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)

    actor_rps = args.rollouts / min(via_actor)
    collect_rps = args.rollouts / min(via_collect)
    report = {
        "spin_up_s_median": round(statistics.median(spinups), 2), "spin_up_s": [round(s, 2) for s in spinups],
        "actor_pss_mib_at_ready_median": round(statistics.median(pss), 1),
        "rollouts": args.rollouts, "concurrency": args.concurrency,
        "run_rollouts_per_s": round(actor_rps, 1), "collect_per_s": round(collect_rps, 1),
        "ratio_run_rollouts_vs_collect": round(actor_rps / collect_rps, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
