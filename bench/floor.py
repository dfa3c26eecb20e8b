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
from bench.systems import REPO

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


class EchoServer:
    """The bare echo app under uvicorn (uvloop, httptools) in its own process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> EchoServer:
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.floor:app", "--port", str(port),
                                      "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http",
                                      "httptools"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=REPO)
        self.url = f"http://127.0.0.1:{port}/"
        try:
            wait_ready(self.url, self.proc, 20)
        except BaseException:
            kill_tree(self.proc)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            kill_tree(self.proc)

    def requests_per_s(self, requests: int = 4000, concurrency: int = 64) -> float:
        result = asyncio.run(run_load(self.url, load_rows(), requests, concurrency))
        if result.failures:
            raise RuntimeError(f"echo server failed {result.failures} requests: {result.failure_samples}")
        return result.rollouts_per_s


def limits(echo_rps: float) -> dict:
    """The floor figures for one echo measurement: req/s and the most rollouts/s each shape allows."""
    return {"echo_rps": round(echo_rps, 1), "hops": HOPS,
            "limit_rollouts_per_s": {shape: round(echo_rps / h["http"], 1) for shape, h in HOPS.items()}}


def measure_floor(requests: int = 4000, concurrency: int = 64) -> dict:
    """Start the echo server, drive it with the neutral client, return the floor figures."""
    with EchoServer() as echo:
        return limits(echo.requests_per_s(requests, concurrency))

if __name__ == "__main__":
    import json

    print(json.dumps(measure_floor(), indent=1))
