"""Swarm stack deploy to ready, and collection throughput with 1, 2 and 3 resources/model replicas spread over the lab's nodes.

What it measures, on the local lab (`gymctl cluster create --nodes 3 --swarm --gpu-nodes 1 --gpus-per-node 2`; made
and deleted here with --create):

- deploy to ready: `gymctl up --topology swarm` of the example environment with the images already in the lab's
  registry (a first, untimed deploy puts them there and on the nodes), from the command's start to the head ready
  with every task registered, over --deploys runs (down between them); also the part after `docker stack deploy`
  returned (the tasks starting and registering).
- throughput: the model is NeMo Gym's OpenAI-compatible proxy (openai_model) in front of a SLOW upstream, the
  bench's stub on this machine's side of the lab network, bound per calling node: at most --slots calls at once
  from each node, each held --hold-s (one accelerator per node). One model replica then serves at most
  slots / hold_s calls/s and a rollout makes two, so the model tier is the bottleneck and throughput should grow
  with replicas as Swarm spreads them over the nodes (one per node), until the 2 shared cores are the limit
  instead. `gymctl scale` sets the resources server and the model to 1, 2, 3 replicas in one stack; the model
  has no `gpus` here (the lab has fake GPUs on one node only, and the point is one replica per node).

Ratios are against the 1-replica figure of the same run.

    python -m bench.swarm [--create] [--deploys 3] [--repeats 60] [--concurrency 48] [--slots 2] [--hold-s 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory

from aiohttp import web

from bench.systems import REPO
from bench.upstream_stub import UpstreamStub

AGENT = "example_single_tool_call_simple_agent"
RESOURCES = "example_single_tool_call"
EXAMPLE = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"]
SCRIPTED = [*EXAMPLE, "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml",
            "--set", "gymctl.instances.policy_model.gpus=1", "--set", f"gymctl.instances.{AGENT}.node=gymctl-lab-node1"]
OPENAI = [*EXAMPLE, "-c", "responses_api_models/openai_model/configs/openai_model.yaml", "--set", "policy_api_key=dummy",
          "--set", "policy_model_name=stub", "--set", f"gymctl.instances.{AGENT}.node=gymctl-lab-node1"]
DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
PROJECT = "benchswarm"
CTX = ["--context", "gymctl-lab"]
LAB_NET = "gymctl-lab-net"


class PerNodeStub(UpstreamStub):
    """The stub with a fixed capacity per calling address (each lab node's tasks reach it from the node's address):
    `slots` calls at once from each, each held `hold_s`."""

    def __init__(self, slots: int, hold_s: float) -> None:
        super().__init__(keep=10)
        self.slots, self.hold_s = slots, hold_s
        self.gates: dict[str, asyncio.Semaphore] = {}
        self.calls: defaultdict[str, int] = defaultdict(int)

    async def _responses(self, request: web.Request) -> web.Response:
        peer = request.remote or "?"
        gate = self.gates.setdefault(peer, asyncio.Semaphore(self.slots))
        async with gate:
            await asyncio.sleep(self.hold_s)
        self.calls[peer] += 1
        return await super()._responses(request)


def gymctl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "gymctl", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"gymctl {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r


def lab_gateway() -> str:
    """This machine's address on the lab network (the nodes reach it there)."""
    r = subprocess.run(["docker", "network", "inspect", LAB_NET, "--format", "{{(index .IPAM.Config 0).Gateway}}"],
                       capture_output=True, text=True, timeout=60, check=True)
    return r.stdout.strip()


def start_stub(host: str, slots: int, hold_s: float) -> tuple[PerNodeStub, str]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="per-node-stub", daemon=True).start()
    stub = PerNodeStub(slots, hold_s)
    url = asyncio.run_coroutine_threadsafe(stub.start(host, 0), loop).result(10)
    return stub, url


def up(config: list[str]) -> dict:
    return json.loads(gymctl("up", "--topology", "swarm", "-p", PROJECT, *CTX, *config, "--json", "--timeout", "240").stdout)


def down() -> None:
    gymctl("down", "--topology", "swarm", "-p", PROJECT, *CTX)


def model_nodes() -> list[str]:
    tasks = json.loads(gymctl("ps", "--topology", "swarm", "-p", PROJECT, *CTX, "--json").stdout)["tasks"]
    return sorted(t["node"] for t in tasks if t["service"] == "policy_model" and t["state"] == "running")


def collect(head: str, repeats: int, concurrency: int, out: Path) -> dict:
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    gymctl("collect", "--head", head, "--agent", AGENT, "--input", str(DATA), "--output", str(out), "--num-repeats", str(repeats),
           "--concurrency", str(concurrency))
    seconds = time.monotonic() - t0
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == repeats * 5, f"{len(rows)} rows, not {repeats * 5}: lost or failed rollouts"
    return {"rollouts": len(rows), "seconds": round(seconds, 1), "rollouts_per_s": round(len(rows) / seconds, 2),
            "rewards": sorted({r["reward"] for r in rows})}


def deploy_figures(deploys: int) -> list[dict]:
    up(SCRIPTED)  # untimed: pushes the images and lets every node pull them
    down()
    out = []
    for _ in range(deploys):
        t0 = time.monotonic()
        info = up(SCRIPTED)
        out.append({"total_s": round(time.monotonic() - t0, 2), "after_deploy_s": round(info["seconds"] - info["deploy_seconds"], 2)})
        down()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.swarm", description=__doc__.split("\n")[0])
    p.add_argument("--create", action="store_true", help="create the lab first and delete it at the end")
    p.add_argument("--deploys", type=int, default=3, help="timed deploys (down between them)")
    p.add_argument("--repeats", type=int, default=60, help="rollouts per task of the 5-task example, per replica count")
    p.add_argument("--concurrency", type=int, default=48)
    p.add_argument("--slots", type=int, default=2, help="upstream calls served at once per node")
    p.add_argument("--hold-s", type=float, default=0.2, help="seconds each upstream call takes")
    args = p.parse_args(argv)
    if args.create:
        gymctl("cluster", "create", "--nodes", "3", "--swarm", "--gpu-nodes", "1", "--gpus-per-node", "2")
    points = []
    try:
        # The openai_model image beside the example's, unless built (the lock: two image builds at once have raced here).
        if subprocess.run(["docker", "image", "inspect", "gymctl/openai_model:latest"], capture_output=True, timeout=60).returncode != 0:
            subprocess.run(["flock", "/tmp/gymctl-build.lock", sys.executable, "-m", "gymctl", "build", *OPENAI, "--set", "policy_base_url=http://stub/v1"],
                           cwd=REPO, check=True, capture_output=True, timeout=1800)
        deploys = deploy_figures(args.deploys)
        stub, url = start_stub(lab_gateway(), args.slots, args.hold_s)
        info = up([*OPENAI, "--set", f"policy_base_url={url}/v1"])
        head = info["head_url"]
        with TemporaryDirectory(prefix="bench-swarm-") as tmp:
            for n in (1, 2, 3):
                gymctl("scale", f"{RESOURCES}={n}", f"policy_model={n}", "-p", PROJECT, *CTX)
                collect(head, 4, 8, Path(tmp) / "warm.jsonl")  # the agent's client has seen every replica
                before = dict(stub.calls)
                point = {"replicas": n, "model_nodes": model_nodes(), **collect(head, args.repeats, args.concurrency, Path(tmp) / "r.jsonl")}
                point["upstream_calls_per_node"] = {k: v - before.get(k, 0) for k, v in sorted(stub.calls.items()) if v - before.get(k, 0)}
                points.append(point)
                print(json.dumps(point), flush=True)
        down()
    finally:
        if args.create:
            subprocess.run([sys.executable, "-m", "gymctl", "cluster", "delete"], cwd=REPO, capture_output=True, timeout=300)
    totals = [d["total_s"] for d in deploys]
    waits = [d["after_deploy_s"] for d in deploys]
    print(f"deploy to ready (images in the registry), {len(deploys)} runs: median {statistics.median(totals):.1f} s "
          f"(min {min(totals):.1f}, max {max(totals):.1f}); after `docker stack deploy` returned: median {statistics.median(waits):.1f} s")
    base = points[0]["rollouts_per_s"]
    ceiling = 1 / (2 * args.hold_s / args.slots)
    for pt in points:
        print(f"{pt['replicas']} resources + {pt['replicas']} model replicas (model on {', '.join(pt['model_nodes'])}): "
              f"{pt['rollouts_per_s']:6.2f} rollouts/s ({pt['rollouts_per_s'] / base:.2f}x; upstream bound {ceiling * len(set(pt['model_nodes'])):.1f}/s)")
    print(json.dumps({"deploys": deploys, "points": points, "slots": args.slots, "hold_s": args.hold_s}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
