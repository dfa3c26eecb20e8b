"""Collection throughput with 1, 2 and 3 model-server replicas, each in front of its own capacity-bound upstream.

What it measures: `gymctl run --topology separated` (head, resources server, agent, one `policy_model`),
then `gymctl serve policy_model` replicas 2 and 3 joining the running head, each pointed at its own
upstream. Each upstream is the bench's stub behind a semaphore: at most `--slots` calls at once, each held
`--hold-s` (an accelerator with a fixed batch), so one replica serves at most slots / hold_s model calls/s
and a rollout makes two. With enough rollouts in flight (`--concurrency`) the model tier is the
bottleneck and throughput should grow with replicas, until the 2 shared cores (9 HTTP exchanges per
rollout in this topology) become the limit instead. All on loopback: "hosts" are processes here; the
head-to-replica round trip is the head's `/probe` figure. Ratios are against the 1-replica figure of the
same run.

    python -m bench.replicas [--replicas 3] [--slots 2] [--hold-s 0.1] [--requests 200] [--concurrency 48]
    python -m bench.replicas --hosts      # the same on real hosts (root): each replica on its own network namespace

With `--hosts` the coordinator (head, resources server, agent: examples/multi-host/coordinator-config.yaml) and
each worker (its bounded upstream and `ng_run` of examples/multi-host/worker-config.yaml) run on hosts of their
own (network namespaces on one bridge, bench.hostnet), and the load comes from the machine over the bridge; the
head-to-server round trip is then reported per host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from aiohttp import web

from bench.load_client import load_rows, run_load
from bench.procs import free_port, http_get_json, log_tail
from bench.systems import REPO
from bench.upstream_stub import UpstreamStub

AGENT = "example_single_tool_call_simple_agent"
EXAMPLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"
OPENAI = "responses_api_models/openai_model/configs/openai_model.yaml"
ENV = {**os.environ, "GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "2"}


class BoundedStub(UpstreamStub):
    """The stub with a fixed capacity: `slots` calls at once, each held `hold_s`."""

    def __init__(self, slots: int, hold_s: float) -> None:
        super().__init__(keep=10)
        self.slots, self.hold_s = slots, hold_s
        self._gate: asyncio.Semaphore | None = None

    async def _responses(self, request: web.Request) -> web.Response:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.slots)
        async with self._gate:
            await asyncio.sleep(self.hold_s)
        return await super()._responses(request)


def start_stubs(n: int, slots: int, hold_s: float) -> tuple[list[str], asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="bounded-stubs", daemon=True).start()
    urls = [asyncio.run_coroutine_threadsafe(BoundedStub(slots, hold_s).start(), loop).result(10) for _ in range(n)]
    return urls, loop


def model_args(url: str) -> list[str]:
    return ["-c", EXAMPLE, "-c", OPENAI, "--set", f"policy_base_url={url}/v1", "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"]


def instances(head: str) -> list[dict]:
    code, items = http_get_json(head + "/server_instances")
    return items if code == 200 and isinstance(items, list) else []


def wait_for(head: str, name: str, count: int, procs: list[subprocess.Popen], logs: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            healthy = [i for i in instances(head) if i["process_name"] == name and i.get("status") == "healthy"]
        except OSError:
            healthy = []
        if len(healthy) >= count:
            return
        dead = [log for p, log in zip(procs, logs, strict=True) if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tail = log_tail(dead[0] if dead else logs[-1])
            raise RuntimeError(f"{count} healthy {name} registrations not seen within {timeout:.0f} s:\n{tail}")
        time.sleep(0.2)


def measure(agent: str, requests: int, concurrency: int) -> dict:
    result = asyncio.run(run_load(agent + "/run", load_rows(), requests, concurrency))
    done = result.requests - result.failures
    return {"rollouts_per_s": round(done / result.elapsed_s, 2), "failures": result.failures, "elapsed_s": round(result.elapsed_s, 2)}


def serve_bounded_stub(slots: int, hold_s: float, host: str, port: int) -> None:
    """`--serve-stub`: one bounded upstream in this process until killed (what a bench host runs)."""

    async def serve() -> None:
        url = await BoundedStub(slots, hold_s).start(host, port)
        print(f"upstream stub listening on {url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


def run_on_hosts(args: argparse.Namespace) -> list[dict]:
    """Coordinator and workers on network-namespace hosts; one point per replica count."""
    from bench.hostnet import HostNet

    names = ["coord", *(f"w{i + 1}" for i in range(args.replicas))]
    examples = REPO / "examples/multi-host"
    env = {"GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "2"}
    points: list[dict] = []
    with HostNet(names) as net, TemporaryDirectory(prefix="gymctl-bench-hosts-") as tmp:
        coord = net["coord"]
        head = f"http://{coord.address}:11000"
        cfg = Path(tmp) / "coordinator.yaml"
        cfg.write_text((examples / "coordinator-config.yaml").read_text().replace("10.0.0.1", coord.address))
        coordinator = coord.start([sys.executable, "-m", "gymctl", "run", "-c", str(cfg)], Path(tmp) / "coordinator.log", env=env, cwd=REPO)
        coordinator.wait_for("ready in")
        agent = f"http://{coord.address}:8002"
        for i in range(args.replicas):
            host = net[f"w{i + 1}"]
            stub = host.start([sys.executable, "-m", "bench.replicas", "--serve-stub", "--slots", str(args.slots), "--hold-s", str(args.hold_s)],
                              Path(tmp) / f"stub{i}.log", cwd=REPO)
            stub.wait_for("upstream stub listening")
            wcfg = Path(tmp) / f"worker{i}.yaml"
            wcfg.write_text((examples / "worker-config.yaml").read_text().replace("10.0.0.1", coord.address).replace("10.0.0.2", host.address))
            worker = host.start([sys.executable, "-m", "gymctl", "run", "-c", str(wcfg), "--set", "policy_base_url=http://127.0.0.1:8000/v1",
                                 "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"], Path(tmp) / f"worker{i}.log", env=env, cwd=REPO)
            worker.wait_for("ready in")
            deadline = time.monotonic() + 30
            while sum(1 for x in instances(head) if x["process_name"] == "policy_model" and x.get("status") == "healthy") < i + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {i + 1} did not register:\n{worker.output()[-2000:]}")
                time.sleep(0.2)
            measure(agent, 20, 8)
            time.sleep(1.5)  # > the agent's watch interval: it has seen the new replica
            point = {"replicas": i + 1, **measure(agent, args.requests, args.concurrency)}
            probes = http_get_json(head + "/probe")[1]
            point["head_rtt_ms"] = {p["url"]: p["rtt_ms"] for p in probes}  # type: ignore[union-attr]
            points.append(point)
            print(json.dumps(point), flush=True)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2, help="calls each upstream serves at once")
    parser.add_argument("--hold-s", type=float, default=0.1, help="seconds each upstream call takes")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--hosts", action="store_true", help="each replica on its own host (network namespaces; needs root and iproute2)")
    parser.add_argument("--serve-stub", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_stub:
        serve_bounded_stub(args.slots, args.hold_s, "127.0.0.1", 8000)
        return 0
    if args.hosts:
        return report(run_on_hosts(args), args)
    urls, _ = start_stubs(args.replicas, args.slots, args.hold_s)
    port = free_port()
    head = f"http://127.0.0.1:{port}"
    logs = [Path(f"/tmp/gymctl-bench-replicas-{os.getpid()}-{i}.log") for i in range(args.replicas)]
    procs: list[subprocess.Popen] = []
    points: list[dict] = []
    try:
        for i, url in enumerate(urls):
            if i == 0:
                argv_i = [sys.executable, "-m", "gymctl", "run", *model_args(url), "--topology", "separated", "--set", f"head_server.port={port}"]
            else:
                argv_i = [sys.executable, "-m", "gymctl", "serve", "policy_model", *model_args(url), "--head", head, "--port", str(free_port())]
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen(argv_i, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True))
            wait_for(head, "policy_model", i + 1, procs, logs[: i + 1])
            wait_for(head, AGENT, 1, procs, logs[: i + 1])
            agent = next(x["url"] for x in instances(head) if x["process_name"] == AGENT)
            measure(agent, 20, 8)  # warm-up; the agent's client re-reads the head while it works
            time.sleep(1.5)
            point = {"replicas": i + 1, **measure(agent, args.requests, args.concurrency)}
            point["head_rtt_ms"] = {p["url"]: p["rtt_ms"] for p in http_get_json(head + "/probe")[1] if p["process_name"] == "policy_model"}  # type: ignore[union-attr]
            points.append(point)
            print(json.dumps(point), flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    return report(points, args)


def report(points: list[dict], args: argparse.Namespace) -> int:
    base = points[0]["rollouts_per_s"] if points else 0
    ceiling = args.slots / args.hold_s / 2
    for pt in points:
        ratio = pt["rollouts_per_s"] / base if base else 0
        print(f"{pt['replicas']} replica(s): {pt['rollouts_per_s']:7.2f} rollouts/s  x{ratio:.2f} vs 1  "
              f"(model-tier ceiling {ceiling * pt['replicas']:.0f}/s; failures {pt['failures']})")
    return 0 if points and all(pt["failures"] == 0 for pt in points) else 1


if __name__ == "__main__":
    sys.exit(main())
