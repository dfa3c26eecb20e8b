"""Swarm stack deploy to ready, and collection throughput with 1, 2 and 3 replicas spread over the lab's nodes.

What it measures, on the local lab (`gymctl cluster create --nodes 3 --swarm --gpu-nodes 1 --gpus-per-node 2`; made
and deleted here with --create): `gymctl up --topology swarm` of the example environment with the images already in
the lab's registry (a first, untimed deploy puts them there and on the nodes), timed from the command's start to the
head ready with every task registered, over --deploys runs (down between them); then `gymctl collect` throughput
with the resources server and the model at 1, 2 and 3 replicas each (`gymctl scale`), in one stack. The model is
the deterministic scripted one: the figures show the swarm's overhead and spread, not a slow model's batching
(bench.replicas does that on loopback and network-namespace hosts). Ratios are against the 1-replica figure of
the same run.

    python -m bench.swarm [--create] [--deploys 3] [--repeats 200] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.systems import REPO

AGENT = "example_single_tool_call_simple_agent"
RESOURCES = "example_single_tool_call"
CONFIG = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
          "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml",
          "--set", "gymctl.instances.policy_model.gpus=1"]
DATA = REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl"
PROJECT = "benchswarm"
CTX = ["--context", "gymctl-lab"]


def gymctl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "gymctl", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"gymctl {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r


def up() -> dict:
    return json.loads(gymctl("up", "--topology", "swarm", "-p", PROJECT, *CTX, *CONFIG, "--json", "--timeout", "240").stdout)


def down() -> None:
    gymctl("down", "--topology", "swarm", "-p", PROJECT, *CTX)


def collect(head: str, repeats: int, concurrency: int, out: Path) -> float:
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    gymctl("collect", "--head", head, "--agent", AGENT, "--input", str(DATA), "--output", str(out), "--num-repeats", str(repeats),
           "--concurrency", str(concurrency))
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == repeats * 5 and {r["reward"] for r in rows} == {1.0}, "lost or failed rollouts"
    return len(rows) / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.swarm", description=__doc__.split("\n")[0])
    p.add_argument("--create", action="store_true", help="create the lab first and delete it at the end")
    p.add_argument("--deploys", type=int, default=3, help="timed deploys (down between them)")
    p.add_argument("--repeats", type=int, default=200, help="rollouts per task of the 5-task example, per replica count")
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args(argv)
    if args.create:
        gymctl("cluster", "create", "--nodes", "3", "--swarm", "--gpu-nodes", "1", "--gpus-per-node", "2")
    try:
        up()  # untimed: pushes the images and lets every node pull them
        down()
        deploys = []
        for _ in range(args.deploys):
            t0 = time.monotonic()
            info = up()
            deploys.append(time.monotonic() - t0)
            if len(deploys) < args.deploys:
                down()
        head = info["head_url"]
        points = []
        with TemporaryDirectory(prefix="bench-swarm-") as tmp:
            for n in (1, 2, 3):
                gymctl("scale", f"{RESOURCES}={n}", f"policy_model={min(n, 2)}", "-p", PROJECT, *CTX)  # two fake GPUs: at most 2 models
                points.append({"replicas": n, "models": min(n, 2), "rollouts_per_s": collect(head, args.repeats, args.concurrency, Path(tmp) / "r.jsonl")})
        down()
    finally:
        if args.create:
            subprocess.run([sys.executable, "-m", "gymctl", "cluster", "delete"], cwd=REPO, capture_output=True, timeout=300)
    base = points[0]["rollouts_per_s"]
    print(f"deploy to ready (images in the registry), {len(deploys)} runs: median {statistics.median(deploys):.1f} s "
          f"(min {min(deploys):.1f}, max {max(deploys):.1f})")
    for pt in points:
        print(f"resources replicas {pt['replicas']}, model replicas {pt['models']}: {pt['rollouts_per_s']:7.1f} rollouts/s "
              f"({pt['rollouts_per_s'] / base:.2f}x)")
    print(json.dumps({"deploy_s": deploys, "points": points}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
