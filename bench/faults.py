"""Reliability report: a real collection through `gymctl run --topology separated --restart on-failure` while each
server type is killed (`kill -9`) in turn, the head is killed (the supervisor restarts it), a server is frozen
(`SIGSTOP` past the lease, then `SIGCONT`), or the upstream model misbehaves for a few seconds (answers 5xx, hangs,
drips its reply one byte at a time: bench.upstream_stub's fault modes, behind openai_model), or a second collection is
started on the same output file (it must refuse to start).

For each fault: how long until the instance is registered healthy again (recovery; the head: ready again; the
upstream: the first rollout written after it is well), the rollouts that failed in the first run (typed, in the
failures file), and what a rerun of the same command leaves: exactly one row per (task, repeat), nothing doubled.
All on loopback with the example environment (the scripted policy; the stub upstream for upstream faults).

    python -m bench.faults [--rollouts 2000] [--concurrency 16]
        [--faults kill:agent,kill:resources,kill:model,kill:head,stop:resources,upstream:error,upstream:hang,upstream:drip,twice:collect]
    python -m bench.faults --faults container-kill:agent,container-kill:model,container-pause:resources   (bench.faults_containers:
        a `gymctl up --topology separated` stack of the example's images, built first under /tmp/gymctl-build.lock)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.procs import free_port, http_get_json, stop_tree
from bench.systems import REPO

AGENT = "example_single_tool_call_simple_agent"
NAMES = {"agent": AGENT, "resources": "example_single_tool_call", "model": "policy_model"}
CONFIGS = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
           "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml"]
OPENAI = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
          "-c", "responses_api_models/openai_model/configs/openai_model.yaml"]
LEASES = {"GYMCTL_HEARTBEAT_S": "0.5", "GYMCTL_LEASE_S": "1.5", "GYMCTL_DROP_S": "10"}
UPSTREAM_FAULT_S = 3.0  # how long the upstream misbehaves
UPSTREAM_TIMEOUT_S = 5  # --timeout of a collection under an upstream fault: a hung call fails typed, not after 600 s
GYMCTL = [sys.executable, "-m", "gymctl"]


def _pid_of(log: Path, name: str) -> int:
    pids = re.findall(rf"^{re.escape(name)} +\| {re.escape(name)}: serving at \S+ \(pid (\d+)\)", log.read_text(errors="replace"), re.M)
    return int(pids[-1])


def _healthy_again(head: str, name: str, old_pid: int, timeout_s: float = 30) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if any(i["process_name"] == name and i["pid"] != old_pid and i["status"] == "healthy" for i in _instances(head)):
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    return None


def _instances(head: str) -> list[dict]:
    _, body = http_get_json(head + "/server_instances")
    return body if isinstance(body, list) else []


def _status_of(head: str, name: str) -> set[str]:
    return {i["status"] for i in _instances(head) if i["process_name"] == name}


def _rows(path: Path) -> list[tuple[int, int]]:
    """The (task, repeat) pairs written so far; a line still being written (no newline yet) is not one."""
    if not path.exists():
        return []
    whole = path.read_text().split("\n")[:-1]
    return [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in map(json.loads, whole)]


def _head_ready_again(head: str, log: Path, old_pid: int, timeout_s: float = 30) -> float | None:
    """Seconds until a new head process answers /health 200 (every instance registered with it again)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if _pid_of(log, "head") != old_pid and http_get_json(head + "/health")[0] == 200:
                return time.monotonic() - t0
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    return None


def _upstream(stub_url: str, **config: object) -> None:
    import urllib.request

    req = urllib.request.Request(stub_url + "/_stub/config", data=json.dumps(config).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5):
        pass


def _upstream_fault(mode: str, stub_url: str, dst: Path) -> float | None:
    """The upstream misbehaves for UPSTREAM_FAULT_S, then is well again: seconds until the next row is written."""
    _upstream(stub_url, fault=mode, drip_s=0.05)
    time.sleep(UPSTREAM_FAULT_S)
    _upstream(stub_url, fault="")
    t0, before = time.monotonic(), len(_rows(dst))
    while time.monotonic() - t0 < UPSTREAM_TIMEOUT_S * 4:
        if len(_rows(dst)) > before:
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def one_fault(fault: str, rollouts: int, concurrency: int, work: Path) -> dict[str, object]:
    from bench.upstream_stub import StubProcess

    kind, _, who = fault.partition(":")
    name = "head" if who == "head" else NAMES.get(who, "")
    port = free_port()
    head = f"http://127.0.0.1:{port}"
    log = work / f"{kind}-{who}.log"
    env = {**os.environ, **LEASES}
    stub = StubProcess() if kind == "upstream" else None
    configs = CONFIGS
    if stub is not None:
        url = stub.start()
        configs = [*OPENAI, "--set", f"policy_base_url={url}/v1", "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"]
    with open(log, "wb") as out:
        run = subprocess.Popen([*GYMCTL, "run", "--topology", "separated", "--restart", "on-failure", *configs, "--set", f"head_server.port={port}"],
                               cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    collect: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while "ready in" not in log.read_text(errors="replace"):
            if run.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gymctl run did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        rows = json.loads((REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[0])
        src, dst = work / f"{kind}-{who}.in.jsonl", work / f"{kind}-{who}.out.jsonl"
        src.write_text((json.dumps(rows) + "\n") * rollouts)
        argv = [*GYMCTL, "collect", "--head", head, "--agent", AGENT, "--input", str(src), "--output", str(dst), "--concurrency", str(concurrency), "--json"]
        if stub is not None:
            argv += ["--timeout", str(UPSTREAM_TIMEOUT_S)]
        t0 = time.monotonic()
        collect = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while len(_rows(dst)) < rollouts // 4 and collect.poll() is None:
            time.sleep(0.02)
        recovery: float | None
        left_rotation, refused, note = None, True, ""
        if stub is not None:
            recovery = _upstream_fault(who, stub.url, dst)
        elif who == "head":
            pid = _pid_of(log, "head")
            os.kill(pid, signal.SIGKILL)
            recovery = _head_ready_again(head, log, pid)
        elif kind == "twice":  # a second collection on the same output while the first writes: it must refuse to start
            second_try = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
            refused = second_try.returncode == 2 and "another collection is writing" in second_try.stderr
            note = "the second refused to start (exit 2); " if refused else f"the second was NOT refused (exit {second_try.returncode}); "
            recovery = None
        elif kind == "kill":
            pid = _pid_of(log, name)
            os.kill(pid, signal.SIGKILL)
            recovery = _healthy_again(head, name, pid)
        else:  # stop: frozen past its lease, then resumed
            pid = _pid_of(log, name)
            os.kill(pid, signal.SIGSTOP)
            t_stop = time.monotonic()
            while "healthy" in _status_of(head, name) and time.monotonic() - t_stop < 10:
                time.sleep(0.05)
            left_rotation = time.monotonic() - t_stop
            time.sleep(float(LEASES["GYMCTL_LEASE_S"]))
            os.kill(pid, signal.SIGCONT)
            t_cont = time.monotonic()
            while "healthy" not in _status_of(head, name) and time.monotonic() - t_cont < 10:
                time.sleep(0.05)
            recovery = time.monotonic() - t_cont
        stdout, _ = collect.communicate(timeout=600)
        first = json.loads(stdout)
        first_s = time.monotonic() - t0
        rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        second = json.loads(rerun.stdout)
        pairs = _rows(dst)
        return {"fault": fault, "recovery_s": recovery, "left_rotation_s": left_rotation, "failed_first": first["failed"],
                "kinds": first.get("failure_kinds", {}), "first_run_s": first_s, "rerun_written": second["written"],
                "rows": len(pairs), "unique": len(set(pairs)), "complete": refused and len(pairs) == len(set(pairs)) == rollouts,
                "note": note}
    finally:
        if collect is not None and collect.poll() is None:
            collect.kill()
            collect.wait()
        stop_tree(run, [], timeout=30)
        if stub is not None:
            stub.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--faults", default="kill:agent,kill:resources,kill:model,kill:head,stop:resources,"
                                            "upstream:error,upstream:hang,upstream:drip,twice:collect")
    args = parser.parse_args(argv)
    results = []
    with TemporaryDirectory(prefix="gymctl-bench-faults-") as tmp:
        for fault in args.faults.split(","):
            if fault.strip().startswith("container-"):  # a `gymctl up` stack: bench.faults_containers
                from bench.faults_containers import container_fault

                results.append(container_fault(fault.strip(), args.rollouts, args.concurrency, Path(tmp)))
                continue
            results.append(one_fault(fault.strip(), args.rollouts, args.concurrency, Path(tmp)))
    print(f"{'fault':<26} {'recovery':>9} {'left rot.':>9} {'failed':>7} {'rerun':>6} {'rows':>6} {'one/pair':>8}  failure kinds")
    for r in results:
        rec = "-" if r["recovery_s"] is None else f"{r['recovery_s']:.2f} s"
        left = "-" if r["left_rotation_s"] is None else f"{r['left_rotation_s']:.2f} s"
        done = "yes" if r["complete"] else "NO"
        print(f"{r['fault']:<26} {rec:>9} {left:>9} {r['failed_first']:>7} {r['rerun_written']:>6} {r['rows']:>6} {done:>8}  {r.get('note', '')}{r['kinds']}")
    if not all(r["complete"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
