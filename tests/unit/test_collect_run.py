"""The Collector against the real example servers started in this process (scripted policy, real HTTP), and the CLI's user errors."""

from __future__ import annotations

import json
import socket

import pytest

from gymctl.cli.errors import run_app
from gymctl.cli.main import app
from gymctl.config.model import load_config
from gymctl.errors import UnknownServerError, UsageError
from gymctl.rollouts import Collector, CollectSpec
from gymctl.rollouts.agents import resolve_agent
from gymctl.runtime.inprocess import start, stop, wait_ready
from gymctl.server.client import new_session
from gymctl.server.settings import ServerSettings
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, SCRIPTED_CONFIG, example_rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def example():
    """The example environment (head, agent, resources server, scripted policy) in this event loop."""
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], [f"head_server.port={free_port()}"])
    dep = await start(cfg, settings=ServerSettings().model_copy(update={"head_url": None, "port": None, "host_url": None}))
    await wait_ready(dep)
    session = new_session()
    yield dep, session
    await session.close()
    await stop(dep)


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


async def collect(session, dep, spec, **kw):
    url = await resolve_agent(dep.head_url, spec.agent, session=session)
    return await Collector(spec, url, session=session, **kw).run()


async def test_every_task_times_repeats_lands_once_with_reward_and_metrics(example, tmp_path):
    dep, session = example
    out = tmp_path / "out.jsonl"
    spec = CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, num_repeats=3, concurrency=4)
    summary = await collect(session, dep, spec)
    rows = read_rows(out)
    assert len(rows) == 15 and summary.written == 15 and summary.failed == 0
    assert {(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows} == {(t, r) for t in range(5) for r in range(3)}
    assert all(r["reward"] == 1.0 and r["agent_ref"] == {"type": "responses_api_agents", "name": AGENT} for r in rows)
    assert all(r["responses_create_params"] == example_rows()[r["_ng_task_index"]]["responses_create_params"] for r in rows)
    assert summary.mean_reward == 1.0 and summary.latency_s["p50"] > 0
    metrics = json.loads((tmp_path / "out_aggregate_metrics.json").read_text())
    assert metrics[0]["agent_ref"]["name"] == AGENT and metrics[0]["num_rollouts"] == 15 and metrics[0]["mean_reward"] == 1.0
    assert not (tmp_path / "out_failures.jsonl").exists()

    again = await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, num_repeats=4))
    assert (again.resumed, again.written) == (15, 5)  # only the new repeat ran
    assert len(read_rows(out)) == 20


async def test_bad_lines_fail_with_their_reason_and_the_rest_is_collected(example, tmp_path):
    dep, session = example
    good = example_rows()[0]
    src = write_rows(tmp_path / "in.jsonl", [good, "{not json", {"prompt": "no params"}, good])
    out = tmp_path / "out.jsonl"
    reported: list[str] = []
    summary = await collect(session, dep, CollectSpec(agent=AGENT, input_path=src, output_path=out, num_repeats=2), on_input_error=reported.append)
    assert summary.written == 4 and summary.failed == 4
    assert {r["_ng_task_index"] for r in read_rows(out)} == {0, 3}
    assert reported[0].startswith(f"{src}:2: not valid JSON") and reported[1].startswith(f"{src}:3: row has no responses_create_params")
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert sorted((f["_ng_task_index"], f["_ng_rollout_index"]) for f in failures) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(f["_ng_failure_class"] == "input_error" and f["reason"].startswith(f"{src}:") for f in failures)
    assert summary.failure_kinds == {"input_error": 4} and summary.first_reasons["input_error"].startswith(f"{src}:2: not valid JSON")


async def test_a_torn_line_left_by_a_crash_is_repaired_before_appending(example, tmp_path):
    dep, session = example
    out = tmp_path / "out.jsonl"
    await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, limit=2))
    with open(out, "ab") as f:
        f.write(b'{"response": {"id": "resp_torn", "outp')  # what a kill -9 mid-write leaves
    summary = await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, num_repeats=2))
    rows = read_rows(out)  # every line parses
    assert len(rows) == 10 and summary.resumed == 2 and summary.written == 8
    assert summary.torn_bytes == len(b'{"response": {"id": "resp_torn", "outp')
    assert len({(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows}) == 10


async def test_a_task_without_the_weather_tool_gets_reward_zero(example, tmp_path):
    dep, session = example
    row = example_rows()[0]
    row["responses_create_params"]["tools"] = [{"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}]
    src = write_rows(tmp_path / "in.jsonl", [row])
    out = tmp_path / "out.jsonl"
    summary = await collect(session, dep, CollectSpec(agent=AGENT, input_path=src, output_path=out))
    (result,) = read_rows(out)
    assert result["reward"] == 0.0 and summary.mean_reward == 0.0
    # The policy called a tool the resources server lacks: the agent fed the error back, the rollout completed.
    outputs = [i for i in result["response"]["output"] if i["type"] == "function_call_output"]
    assert "tool call failed with HTTP 404" in outputs[0]["output"]


async def test_unknown_agent_lists_the_known_ones_and_a_non_agent_is_refused(example):
    dep, session = example
    with pytest.raises(UnknownServerError) as e:
        await resolve_agent(dep.head_url, "example_single_tool_call_simple_agnt", session=session)
    assert f"did you mean '{AGENT}'?" in str(e.value)
    assert f"known: example_single_tool_call_environment_server, {AGENT}" in str(e.value)
    with pytest.raises(UsageError, match="'policy_model' is a responses_api_models instance, not an agent"):
        await resolve_agent(dep.head_url, "policy_model", session=session)


def cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        run_app(app, ["collect", *args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_missing_input_file(capsys, tmp_path):
    code, _, err = cli(capsys, "--agent", AGENT, "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert code == 1 and f"InputError: input file not found: {tmp_path}/nope.jsonl" in err


def test_cli_output_directory_missing(capsys, tmp_path):
    code, _, err = cli(capsys, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "no/dir/o.jsonl"))
    assert code == 2 and f"UsageError: output directory {tmp_path}/no/dir does not exist; create it" in err


def test_cli_empty_input_file(capsys, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    code, _, err = cli(capsys, "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={free_port()}",
                       "--agent", AGENT, "--input", str(tmp_path / "empty.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert code == 1 and f"InputError: {tmp_path}/empty.jsonl: the input has no tasks (the file is empty)" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_names_missing_arguments_in_the_form_used(capsys, tmp_path):
    code, _, err = cli(capsys, "--input", str(EXAMPLE_DATA))
    assert code == 2 and "UsageError: missing --agent, --output" in err
    code, _, err = cli(capsys, "--ng", "+input_jsonl_fpath=x.jsonl")
    assert code == 2 and "UsageError: missing +agent_name=, +output_jsonl_fpath=; e.g. ng_collect_rollouts +agent_name=AGENT" in err


def test_cli_unknown_agent_with_config_starts_in_process_and_lists_agents(capsys, tmp_path):
    code, _, err = cli(capsys, "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--set", f"head_server.port={free_port()}",
                       "--agent", "nope", "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "o.jsonl"))
    assert code == 1 and "UnknownServerError: no server instance named 'nope' is registered" in err
    assert f"(known: example_single_tool_call_environment_server, {AGENT})" in err


def test_cli_head_unreachable_says_how_to_fix(capsys, tmp_path):
    code, _, err = cli(capsys, "--head", f"http://127.0.0.1:{free_port()}", "--head-wait", "0.3",
                       "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "o.jsonl"))
    assert code == 1 and "HeadUnreachableError: head at http://127.0.0.1:" in err and "pass --head URL" in err


def test_cli_ng_form_with_config_paths_runs_the_deployment_in_process(capsys, tmp_path):
    out = tmp_path / "o.jsonl"
    code, stdout, err = cli(capsys, "--ng", f"+config_paths=[{EXAMPLE_CONFIG},{SCRIPTED_CONFIG}]", f"+head_server.port={free_port()}",
                            f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE_DATA}", f"+output_jsonl_fpath={out}", "+num_repeats=2", "+limit=2")
    assert code == 0, err
    assert "No head running: started the deployment in this process" in err
    assert "Collected: 4 rollouts written, 0 failed" in stdout and "mean reward 1.0000" in stdout
    assert len(read_rows(out)) == 4


async def test_param_overrides_reach_every_task_and_overwrite_starts_over(example, tmp_path):
    dep, session = example
    out = tmp_path / "out.jsonl"
    await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, limit=2, num_repeats=2))
    summary = await collect(session, dep, CollectSpec(agent=AGENT, input_path=EXAMPLE_DATA, output_path=out, limit=1,
                                                      params={"temperature": 0.25, "max_output_tokens": 64}, overwrite=True))
    rows = read_rows(out)
    assert summary.resumed == 0 and len(rows) == 1  # the earlier four rows are gone
    params = rows[0]["responses_create_params"]
    assert params["temperature"] == 0.25 and params["max_output_tokens"] == 64
    assert params["tools"] == example_rows()[0]["responses_create_params"]["tools"]  # the row's own keys stay


def test_cli_param_must_be_key_value(capsys, tmp_path):
    code, _, err = cli(capsys, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(tmp_path / "o.jsonl"), "--param", "temperature")
    assert code == 2 and "UsageError: --param 'temperature': write KEY=VALUE, e.g. --param temperature=0.6" in err
