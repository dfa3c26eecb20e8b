"""`gymctl collect` / `ng_collect_rollouts` driven as a user drives them: the README's job, resume after kill -9 and Ctrl-C, mistakes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, REPO, SCRIPTED_CONFIG, example_rows, free_port

GYMCTL = [sys.executable, "-m", "gymctl"]


def cli(*args: str, timeout: float = 120, argv0: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(argv0 or GYMCTL), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pairs(rows: list[dict]) -> set[tuple[int, int]]:
    return {(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows}


def write_input(path: Path, rows: list, copies: int = 1) -> Path:
    with open(path, "w") as f:
        for _ in range(copies):
            for r in rows:
                f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def test_readme_job_starts_the_deployment_in_process_collects_and_exits(tmp_path):
    out = tmp_path / "out.jsonl"
    res = cli("collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={free_port()}",
              "--agent", AGENT, "--input", "servers/resources_servers/example_single_tool_call/data/example.jsonl",
              "--output", str(out), "--num-repeats", "4")
    assert res.returncode == 0, res.stderr
    assert "No head running: started the deployment in this process" in res.stderr
    assert "Collected: 20 rollouts written, 0 failed" in res.stdout
    assert f"{out}: 20 rows, mean reward 1.0000" in res.stdout
    assert "p50" in res.stdout and "rollouts/s" in res.stdout
    rows = read_rows(out)
    assert pairs(rows) == {(t, r) for t in range(5) for r in range(4)}
    assert all(r["reward"] == 1.0 for r in rows)
    metrics = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
    assert metrics[0]["mean_reward"] == 1.0 and metrics[0]["num_rollouts"] == 20


def test_collect_against_a_running_deployment_then_ng_form_resumes_it(gymctl_deployment, tmp_path):
    out = tmp_path / "out.jsonl"
    res = cli("collect", "--head", gymctl_deployment.head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(out), "--num-repeats", "2", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["written"], summary["failed"], summary["mean_reward"]) == (10, 0, 1.0)
    assert "collect: 10/10 done" in res.stderr  # plain progress lines when not on a terminal
    port = gymctl_deployment.head_url.rsplit(":", 1)[1]
    ng = cli(f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE_DATA}", f"+output_jsonl_fpath={out}", "+num_repeats=3",
             "+num_samples_in_parallel=4", f"+head_server.port={port}",
             argv0=[sys.executable, "-c", "from gymctl.cli.ng import ng_collect_rollouts; ng_collect_rollouts()"])
    assert ng.returncode == 0, ng.stderr
    assert "Collected: 5 rollouts written, 0 failed, 10 already in the output (resumed)" in ng.stdout
    assert pairs(read_rows(out)) == {(t, r) for t in range(5) for r in range(3)}


def test_broken_lines_are_reported_with_file_and_line_and_the_rest_collected(gymctl_deployment, tmp_path):
    good = example_rows()[0]
    src = write_input(tmp_path / "in.jsonl", [good, '{"responses_create_params": ', {"messages": []}, good])
    out = tmp_path / "out.jsonl"
    res = cli("collect", "--head", gymctl_deployment.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out))
    assert res.returncode == 1  # some rollouts failed: the command says so
    assert f"InputError: {src}:2: not valid JSON" in res.stderr
    assert f"InputError: {src}:3: row has no responses_create_params (keys: messages)" in res.stderr
    assert "Collected: 2 rollouts written, 2 failed" in res.stdout
    assert f"failures    {tmp_path}/out_failures.jsonl (each with its reason); run the same command again to retry them" in res.stdout
    assert "Traceback" not in res.stderr
    assert sorted(r["_ng_task_index"] for r in read_rows(out)) == [0, 3]
    reasons = {f["_ng_task_index"]: f["reason"] for f in read_rows(tmp_path / "out_failures.jsonl")}
    assert reasons[1].startswith(f"{src}:2: not valid JSON") and reasons[2].startswith(f"{src}:3: row has no responses_create_params")


def test_unknown_agent_lists_the_known_ones(gymctl_deployment, tmp_path):
    res = cli("collect", "--head", gymctl_deployment.head_url, "--agent", "example_single_tool_call_agent",
              "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 1
    assert (f"UnknownServerError: no server instance named 'example_single_tool_call_agent' is registered; did you mean '{AGENT}'? "
            f"(known: example_single_tool_call_environment_server, {AGENT})") in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "o.jsonl").exists()


def test_missing_input_empty_input_and_missing_output_dir_are_clear(gymctl_deployment, tmp_path):
    base = ["collect", "--head", gymctl_deployment.head_url, "--agent", AGENT]
    res = cli(*base, "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 1 and f"InputError: input file not found: {tmp_path}/nope.jsonl" in res.stderr
    (tmp_path / "empty.jsonl").write_text("")
    res = cli(*base, "--input", str(tmp_path / "empty.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 1 and "the input has no tasks (the file is empty)" in res.stderr
    res = cli(*base, "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "missing/o.jsonl"))
    assert res.returncode == 2 and f"UsageError: output directory {tmp_path}/missing does not exist; create it (mkdir -p {tmp_path}/missing)" in res.stderr


def _start_collect(head_url: str, src: Path, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*GYMCTL, "collect", "--head", head_url, "--agent", AGENT, "--input", str(src), "--output", str(out), "--concurrency", "64"],
                            cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_rows(out: Path, proc: subprocess.Popen, at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = out.read_bytes().count(b"\n") if out.exists() else 0
        if n >= at_least:
            return n
        assert proc.poll() is None, "collect ended before it was interrupted"
        time.sleep(0.02)
    raise TimeoutError(f"fewer than {at_least} rows after {timeout} s")


def test_kill_9_half_way_then_the_same_command_finishes_with_one_row_per_pair(gymctl_deployment, tmp_path):
    src = write_input(tmp_path / "in.jsonl", example_rows(), copies=400)  # 2,000 tasks x 1 repeat = 2,000 rollouts
    out = tmp_path / "out.jsonl"
    proc = _start_collect(gymctl_deployment.head_url, src, out, tmp_path / "run1.log")
    try:
        written = _wait_rows(out, proc, 1000)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert written < 2000 and out.read_bytes().count(b"\n") < 2000  # really killed half-way
    res = cli("collect", "--head", gymctl_deployment.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out), "--concurrency", "64")
    assert res.returncode == 0, res.stderr
    assert "already in the output (resumed)" in res.stdout
    rows = read_rows(out)  # every line is whole
    assert len(rows) == 2000
    assert pairs(rows) == {(t, 0) for t in range(2000)}
    assert all(r["reward"] == 1.0 for r in rows)


def test_ctrl_c_keeps_what_was_written_and_the_rerun_completes(gymctl_deployment, tmp_path):
    src = write_input(tmp_path / "in.jsonl", example_rows(), copies=200)
    out = tmp_path / "out.jsonl"
    log = tmp_path / "run1.log"
    proc = _start_collect(gymctl_deployment.head_url, src, out, log)
    try:
        _wait_rows(out, proc, 200)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "Stopping: rows already written are kept; run the same command again to resume." in text
    assert "Interrupted:" in text and "Traceback" not in text
    first = read_rows(out)
    assert 200 <= len(first) < 1000
    res = cli("collect", "--head", gymctl_deployment.head_url, "--agent", AGENT, "--input", str(src), "--output", str(out))
    assert res.returncode == 0, res.stderr
    assert f"{len(first)} already in the output (resumed)" in res.stdout
    rows = read_rows(out)
    assert len(rows) == 1000 and pairs(rows) == {(t, 0) for t in range(1000)}


def test_progress_bar_on_a_terminal(gymctl_deployment, tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([*GYMCTL, "collect", "--head", gymctl_deployment.head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA),
                             "--output", str(tmp_path / "o.jsonl"), "--num-repeats", "20"], cwd=REPO, stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(slave)
    import select

    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(10) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    screen = b"".join(chunks).decode(errors="replace")
    assert "100/100" in screen and "rollouts/s" in screen and "mean reward 1.000" in screen and "failures 0" in screen
    assert "━" in screen  # rich's bar
