"""Bad input found by the hostile probe: each one a one-line error with what to do, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gymctl.cli.errors import run_app
from gymctl.cli.main import app
from gymctl.errors import UsageError
from gymctl.rollouts.lock import OutputLock
from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, SCRIPTED_CONFIG


def fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_app(app, args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(exit_.value.code or 0), err


COLLECT = ["collect", "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--head", "http://127.0.0.1:1", "--head-wait", "0.1"]


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_collect_timeout_must_be_a_finite_positive_number(capsys, tmp_path, value):
    code, err = fails(capsys, [*COLLECT, "--output", str(tmp_path / "o.jsonl"), "--timeout", value])
    assert code == 2 and "--timeout" in err and "UsageError" in err


def test_ng_num_samples_in_parallel_zero_is_refused_not_made_64(capsys, tmp_path):
    code, err = fails(capsys, ["collect", "--ng", f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE_DATA}",
                               f"+output_jsonl_fpath={tmp_path / 'o.jsonl'}", "+num_samples_in_parallel=0"])
    assert code == 2 and "at least one rollout at a time" in err


def test_output_that_cannot_be_written_is_a_usage_error(capsys):
    code, err = fails(capsys, ["collect", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--agent", AGENT, "--input", str(EXAMPLE_DATA),
                               "--output", "/proc/i15-not-writable.jsonl"])
    assert code == 2 and "cannot write the output /proc/i15-not-writable.jsonl" in err and "choose another --output" in err


def test_output_lock_on_an_unwritable_path_says_what_to_do():
    with pytest.raises(UsageError, match="choose another --output"):
        OutputLock(Path("/proc/i15-x/o.jsonl")).acquire()


def test_log_dir_naming_a_file_is_refused(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, err = fails(capsys, ["run", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--topology", "separated", "--log-dir", str(afile)])
    assert code == 2 and "is a file, not a directory" in err


def test_log_dir_under_a_file_is_refused(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    code, err = fails(capsys, ["run", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "--topology", "separated", "--log-dir", str(afile / "logs")])
    assert code == 2 and "cannot create the directory" in err
