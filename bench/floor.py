"""The floor: requests/s of a bare ASGI echo server (uvicorn) on this machine, and what it allows per rollout shape.

A rollout of the example makes HTTP exchanges and in-process calls. Every HTTP exchange on this
machine costs about one echo round trip of CPU (client and server share the same cores), so the
fastest any system can go is echo_rps / (HTTP exchanges per rollout). In-process calls are
counted but taken as free.

  all-in-one (gymctl run):         3 HTTP  (client->agent /run, 2x model->upstream)
                                   + 6 in-process (seed, 2x agent->model, get_weather, verify, close)
  separated (gymctl, per process): 9 HTTP  (/run, seed, 2x agent->model, 2x model->upstream,
                                   get_weather, verify, close_session)
  NeMo Gym 0.7.0 (ng_run):         9 HTTP  (/run, seed, agent->own /v1/responses, 2x agent->model,
                                   2x model->upstream, get_weather, verify)

`python -m bench.floor` prints the echo figure and the limits.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from bench.load_client import load_rows, run_load
from bench.procs import free_port, kill_tree, wait_ready

HOPS = {
    "all_in_one": {"http": 3, "in_process": 6},
    "separated": {"http": 9, "in_process": 0},
    "nemo_gym": {"http": 9, "in_process": 0},
}


async def app(scope, receive, send):  # a bare ASGI echo: no framework, no validation
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body or b"{}"})


def measure_floor(requests: int = 4000, concurrency: int = 64) -> dict:
    """Start the echo server in its own process, drive it with the neutral client, return the floor figures."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.floor:app", "--port", str(port), "--log-level",
                             "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_ready(url, proc, 20)
        result = asyncio.run(run_load(url, load_rows(), requests, concurrency))
    finally:
        kill_tree(proc)
    echo = result.rollouts_per_s
    return {
        "echo_rps": round(echo, 1),
        "echo_p50_ms": round(result.p50_ms, 2),
        "echo_failures": result.failures,
        "hops": HOPS,
        "limit_rollouts_per_s": {shape: round(echo / h["http"], 1) for shape, h in HOPS.items()},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(measure_floor(), indent=1))
