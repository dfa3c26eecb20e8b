"""GymActor on a running two-node Ray cluster: spin-up to ready, memory at ready, and run_rollouts throughput vs `gymctl collect`.

What it measures, all in one run on one cluster (ray.cluster_utils.Cluster, its files in a temp folder removed after):
- spin-up: `GymActor.remote(...)` + `start()` until the head URL comes back (the actor's process is created
  fresh each time), median of `--spinups`;
- memory: the actor process's PSS at ready;
- throughput: the same N rollouts of the example environment on the scripted policy, at the same concurrency,
  through `actor.run_rollouts` (rows cross Ray to the actor, which posts each to the agent) and through
  `gymctl collect --head <the actor's head>` (a client process posting to the same agent); alternated
  `--rounds` times, best of each; the ratio is run_rollouts / collect.

With `--delay-s D` the policy is vllm_model (token ids on) in front of the bench's OpenAI-compatible stub answering
each generation after D seconds, as a trainer's vLLM would: generation-bound, the regime a training loop runs in.
Without it, the scripted policy answers at once: CPU-bound, where `gymctl collect` (a process of its own) gets a CPU
share of its own on a loaded machine and the actor does not.

    python -m bench.ray_actor [--rollouts 2000] [--concurrency 64] [--rounds 2] [--spinups 3] [--delay-s 0.1]
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


class _StubThread:
    """The bench's OpenAI-compatible stub on a loop in a thread of this process."""

    def __init__(self, delay_s: float) -> None:
        import asyncio
        import threading

        from bench.upstream_stub import UpstreamStub

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stub = UpstreamStub(delay_s=delay_s)
        self.url = asyncio.run_coroutine_threadsafe(self.stub.start(), self.loop).result(10)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.stub.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


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
    parser.add_argument("--delay-s", type=float, default=0.0, help="vllm_model before the stub, each generation taking this long")
    args = parser.parse_args()
    configs, overrides, stub = CONFIGS, {}, None
    if args.delay_s:
        stub = _StubThread(args.delay_s)
        configs = [CONFIGS[0], "responses_api_models/vllm_model/configs/vllm_model.yaml"]
        overrides = {"policy_base_url": [stub.url + "/v1"], "policy_api_key": "dummy_key", "policy_model_name": "stub",
                     "policy_model.responses_api_models.vllm_model.return_token_id_information": True}

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
            actor = GymActor.options(num_cpus=0).remote(configs, overrides, concurrency=args.concurrency, cwd=str(REPO))
            head_url = ray.get(actor.start.remote())
            spinups.append(time.monotonic() - t)
            pid = ray.get(actor.node.remote())["pid"]
            pss.append(psutil.Process(pid).memory_full_info().pss / 2**20)
            ray.get(actor.shutdown.remote())
            ray.kill(actor)

        actor = GymActor.options(num_cpus=0).remote(configs, overrides, concurrency=args.concurrency, cwd=str(REPO))
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
        if stub is not None:
            stub.close()
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
        "policy": f"vllm_model, stub generation {args.delay_s:g} s" if args.delay_s else "scripted (no generation time)",
        "rollouts": args.rollouts, "concurrency": args.concurrency,
        "run_rollouts_per_s": round(actor_rps, 1), "collect_per_s": round(collect_rps, 1),
        "ratio_run_rollouts_vs_collect": round(actor_rps / collect_rps, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
