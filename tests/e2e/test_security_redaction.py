"""Credentials in the upstream URL, with the upstream down (`gymctl run --topology separated`, openai_model): the password
is in no answer of the agent (its 502), not in the failures file, not on the collector's console nor the runtime's, and
not in what the head serves."""

from __future__ import annotations

import json

from tests.conftest import AGENT, EXAMPLE_CONFIG, EXAMPLE_DATA, OPENAI_CONFIG, example_rows, free_port, http_json
from tests.e2e.test_separated_support import cli

PASS = "e2e-Hunter2-pw"


def test_credentials_in_the_upstream_url_are_in_no_reply_failures_file_or_console(separated, tmp_path):
    upstream = f"http://user:{PASS}@127.0.0.1:{free_port()}/v1"  # nobody listens there
    run = separated(args=["-c", EXAMPLE_CONFIG, "-c", OPENAI_CONFIG, "--set", f"policy_base_url={upstream}", "--set", "policy_api_key=sk-x",
                          "--set", "policy_model_name=m", "--set", "policy_model.responses_api_models.openai_model.max_retries=1"])
    code, body = http_json(run.url_of(AGENT) + "/run", example_rows()[0])
    assert code == 502 and "127.0.0.1" in json.dumps(body) and PASS not in json.dumps(body), body
    out = tmp_path / "out.jsonl"
    r = cli("collect", "--head", run.head_url, "--agent", AGENT, "--input", str(EXAMPLE_DATA), "--output", str(out))
    assert r.returncode == 1 and "5 failed" in r.stdout + r.stderr, r.stdout + r.stderr
    failures = (tmp_path / "out_failures.jsonl").read_text()
    assert len(failures.splitlines()) == 5 and "agent_run_error" in failures
    for where, text in (("failures file", failures), ("collect's console", r.stdout + r.stderr), ("runtime's console", run.output()),
                        ("head", json.dumps(http_json(run.head_url + "/global_config_dict_yaml")[1]))):
        assert PASS not in text, where
    assert "user:<redacted>@127.0.0.1" in json.dumps(http_json(run.head_url + "/global_config_dict_yaml")[1])
