"""The collector's parts: streamed input with file:line errors, resume of a torn output, whole-line writes, percentiles."""

from __future__ import annotations

import json

import orjson
import pytest

from gymctl.cli.collect_cmd import _split_args
from gymctl.errors import InputError, UsageError
from gymctl.rollouts.collector import CollectSpec
from gymctl.rollouts.paths import aggregate_metrics_path_for, check_paths, failures_path_for
from gymctl.rollouts.resume import scan_output, truncate_torn_tail
from gymctl.rollouts.stats import RolloutStats, percentile
from gymctl.rollouts.tasks import count_tasks, iter_tasks
from gymctl.rollouts.writer import JsonlAppender

ROW = {"responses_create_params": {"input": "hi"}}


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_broken_line_is_reported_with_file_and_line_and_the_rest_is_read(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(ROW), "", '{"responses_create_params": {"input": "x"', json.dumps(ROW)])
    tasks = list(iter_tasks(src))
    assert [t.index for t in tasks] == [0, 1, 2]  # the blank line is no task
    assert [t.line for t in tasks] == [1, 3, 4]
    assert tasks[0].row == ROW and tasks[2].row == ROW
    assert tasks[1].row is None
    assert tasks[1].error.startswith(f"{src}:3: not valid JSON")


def test_a_row_without_responses_create_params_is_an_error_naming_its_keys(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps({"question": "q", "answer": 1}), "[1, 2]", json.dumps({"responses_create_params": "hi"})])
    errors = [t.error for t in iter_tasks(src)]
    assert errors[0] == f"{src}:1: row has no responses_create_params (keys: answer, question); each task needs responses_create_params with its input"
    assert errors[1] == f"{src}:2: the line is a JSON list, not an object with responses_create_params"
    assert errors[2] == f"{src}:3: responses_create_params is a str, not an object"


def test_limit_takes_the_first_tasks_and_counting_streams(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(ROW)] * 7)
    assert count_tasks(src) == 7 and count_tasks(src, limit=3) == 3
    assert [t.index for t in iter_tasks(src, limit=3)] == [0, 1, 2]


def test_a_torn_last_line_is_cut_away_and_complete_rows_are_kept(tmp_path):
    out = tmp_path / "out.jsonl"
    rows = [{"_ng_task_index": t, "_ng_rollout_index": r, "reward": 1.0} for t in range(3) for r in range(2)]
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b'{"_ng_task_index": 3, "_ng_rol')
    state = scan_output(out)
    assert state.torn_bytes == len(b'{"_ng_task_index": 3, "_ng_rol')
    assert state.done == {(t, r) for t in range(3) for r in range(2)} and state.rows == 6
    assert out.read_bytes().endswith(b"}\n")
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_a_file_that_is_only_a_torn_line_becomes_empty(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"_ng_task_index": 0' * 10000)  # longer than one read block
    assert truncate_torn_tail(out) == 200000
    assert out.read_bytes() == b""


def test_resume_ignores_lines_that_are_not_rollouts_and_counts_duplicates(tmp_path):
    out = write_lines(tmp_path / "out.jsonl", ['{"_ng_task_index": 0, "_ng_rollout_index": 0}', "garbage", '{"x": 1}', '{"_ng_task_index": 0, "_ng_rollout_index": 0}'])
    state = scan_output(out)
    assert state.done == {(0, 0)} and state.bad_lines == [2, 3] and state.duplicates == 1
    assert scan_output(tmp_path / "absent.jsonl").done == set()


def test_the_appender_writes_whole_lines_and_appends(tmp_path):
    out = tmp_path / "out.jsonl"
    with JsonlAppender(out) as w:
        w.write({"a": 1})
    with JsonlAppender(out) as w:
        w.write({"b": "x" * 100000})
        assert out.read_bytes().count(b"\n") == 2  # on disk before close: nothing buffered
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"a": 1}, {"b": "x" * 100000}]


def test_sidecar_paths_follow_the_output_stem(tmp_path):
    out = tmp_path / "rollouts.jsonl"
    assert failures_path_for(out) == tmp_path / "rollouts_failures.jsonl"
    assert aggregate_metrics_path_for(out) == tmp_path / "rollouts_aggregate_metrics.json"


def test_percentiles_and_running_stats():
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(101)], 99) == 99.0
    st = RolloutStats(total=3)
    st.record_success(0.1, 1.0)
    st.record_success(0.3, 0.0)
    st.record_failure(None)
    assert (st.done, st.failed, st.finished, st.mean_reward) == (2, 1, 3, 0.5)
    assert st.latency_percentiles()["p50"] == pytest.approx(0.2)


def test_missing_input_and_missing_output_directory_are_clear(tmp_path):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(ROW)])
    with pytest.raises(InputError, match=r"input file not found: .*nope.jsonl; pass an existing JSONL file"):
        check_paths(tmp_path / "nope.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(UsageError, match=r"output directory .*no/such/dir does not exist; create it \(mkdir -p"):
        check_paths(src, tmp_path / "no/such/dir/out.jsonl")
    with pytest.raises(UsageError, match="is the input file"):
        check_paths(src, src)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("num_repeats", 0, "--num-repeats 0: repeat each task at least once"),
    ("concurrency", 0, "--concurrency 0: run at least one rollout at a time"),
    ("limit", 0, "--limit 0: take at least one task"),
    ("timeout_s", -1.0, "--timeout -1.0: give a positive number of seconds"),
])
def test_spec_numbers_are_checked(tmp_path, field, value, needle):
    src = write_lines(tmp_path / "in.jsonl", [json.dumps(ROW)])
    spec = CollectSpec(agent="a", input_path=src, output_path=tmp_path / "o.jsonl", **{field: value})
    with pytest.raises(UsageError) as e:
        spec.check()
    assert needle in str(e.value)


def test_nemo_gym_arguments_are_understood_and_the_rest_left_for_the_config():
    picked, rest = _split_args([
        "+agent_name=my_agent", "+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=out.jsonl", "+num_repeats=4",
        "+limit=10", "+num_samples_in_parallel=32", "+head_server.port=12000", "+skip_venv_if_present=true",
        "+config_paths=[a.yaml]", "+responses_create_params.temperature=0.5", "+resume_from_cache=false",
    ])
    assert picked == {"agent": "my_agent", "input": "in.jsonl", "output": "out.jsonl", "num_repeats": 4, "limit": 10, "concurrency": 32,
                      "params": {"temperature": 0.5}, "overwrite": True}
    assert rest == ["+head_server.port=12000", "+config_paths=[a.yaml]"]


def test_reading_the_input_and_digesting_the_output_keep_memory_flat(tmp_path):
    import tracemalloc

    from gymctl.rollouts.metrics import digest_output

    row = {"responses_create_params": {"input": "x" * 500}, "reward": 1.0, "_ng_task_index": 0, "_ng_rollout_index": 0,
           "response": {"output": ["y" * 500], "usage": {"total_tokens": 3}}}
    big = tmp_path / "big.jsonl"
    big.write_bytes((orjson.dumps(row) + b"\n") * 20000)  # ~23 MB
    tracemalloc.start()
    n = sum(1 for _ in iter_tasks(big))
    digest = digest_output(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 20000 and digest.rows == 20000 and digest.mean_reward == 1.0
    assert peak < 2_000_000, f"peak {peak} bytes for a 23 MB file"
    body = orjson.loads(digest.body_path.read_bytes())
    assert len(body["verify_responses"]) == 20000
    assert body["verify_responses"][0] == {"reward": 1.0, "_ng_task_index": 0, "_ng_rollout_index": 0, "response": {"usage": {"total_tokens": 3}}}


def test_a_whole_last_row_that_only_lacks_its_newline_is_kept(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"_ng_task_index": 0, "_ng_rollout_index": 0}\n{"_ng_task_index": 1, "_ng_rollout_index": 0}')
    state = scan_output(out)
    assert state.torn_bytes == 0 and state.done == {(0, 0), (1, 0)}
    assert out.read_bytes().endswith(b"}\n")
