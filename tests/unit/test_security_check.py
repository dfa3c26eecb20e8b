"""`gymctl check`: the seed's production checklist over a config and its render; exit 1 on an error, never a secret shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gymctl.cli.errors import run_app
from gymctl.cli.main import app
from tests.conftest import REPO

SECRET = "sk-LITERAL-0123456789"
BASE = ("config_paths:\n  - resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml\n"
        "  - responses_api_models/openai_model/configs/openai_model.yaml\npolicy_model_name: m\n")


def check(capsys: pytest.CaptureFixture[str], args: list[str], monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, list[dict]]:
    with pytest.raises(SystemExit) as exit_:
        run_app(app, ["check", *args, "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exit_.value.code or 0), out.out + out.err, json.loads(out.out)


def errors(findings: list[dict]) -> dict[str, dict]:
    return {f["where"]: f for f in findings if f["level"] == "error"}


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_literal_api_key_fails_naming_the_key_not_the_value(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = write(tmp_path, BASE + f"policy_base_url: http://127.0.0.1:8000/v1\npolicy_api_key: {SECRET}\n")
    code, text, findings = check(capsys, ["-c", cfg])
    assert code == 1 and "policy_api_key" in errors(findings) and SECRET not in text
    assert str(tmp_path / "c.yaml") in errors(findings)["policy_api_key"]["message"]
    with pytest.raises(SystemExit) as exit_:  # the table a user reads says the same
        run_app(app, ["check", "-c", cfg])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "policy_api_key" in err and SECRET not in err and "check: failed" in err


def test_credentials_in_a_url_are_a_literal_secret_too(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = write(tmp_path, BASE + "policy_base_url: http://user:pw0rd@127.0.0.1:8000/v1\npolicy_api_key: ${oc.env:OPENAI_API_KEY,x}\n")
    code, text, findings = check(capsys, ["-c", cfg])
    assert code == 1 and set(errors(findings)) == {"policy_base_url"} and "pw0rd" not in text


def test_keys_from_the_environment_or_env_yaml_pass(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "env.yaml").write_text(f"policy_api_key: {SECRET}\n")  # NeMo Gym's gitignored secrets file
    cfg = write(tmp_path, BASE.replace("  - ", f"  - {REPO}/servers/") + "policy_base_url: ${oc.env:POLICY_URL,http://127.0.0.1:8000/v1}\n")
    code, text, findings = check(capsys, ["-c", cfg])
    assert code == 0 and not errors(findings) and SECRET not in text


@pytest.mark.parametrize("example", sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").rglob("*.yaml") if "config" in p.name or p.parent.name == "examples"))
def test_the_shipped_examples_pass_or_warn_only(capsys, monkeypatch, example):
    monkeypatch.chdir(REPO)
    code, _, findings = check(capsys, ["-c", example])
    assert code == 0 and not errors(findings), errors(findings)


def test_a_head_reachable_from_other_hosts_without_a_token_is_an_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("GYMCTL_AUTH_TOKEN", raising=False)
    cfg = write(tmp_path, BASE + "policy_base_url: http://127.0.0.1:8000/v1\npolicy_api_key: ${oc.env:K,x}\nhead_server: {host: 0.0.0.0, port: 11000}\n")
    code, _, findings = check(capsys, ["-c", cfg, "--topology", "processes"])
    assert code == 1 and "head_server.host" in errors(findings)
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "t0ken-for-the-check")
    code, _, findings = check(capsys, ["-c", cfg, "--topology", "processes"])
    assert code == 0 and next(f for f in findings if f["check"] == "auth")["level"] == "ok"


def test_ports_published_on_all_interfaces_need_tls(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = write(tmp_path, BASE + "policy_base_url: http://127.0.0.1:8000/v1\npolicy_api_key: ${oc.env:K,x}\n")
    code, _, findings = check(capsys, ["-c", cfg, "--publish-host", "0.0.0.0"])
    assert code == 1 and any("head:11000" in where for where in errors(findings))
    code, _, findings = check(capsys, ["-c", cfg, "--publish-host", "0.0.0.0", "--tls"])
    assert code == 0
    assert {f["check"] for f in findings if f["level"] == "warn"} >= {"monitoring", "log shipping", "resource limits"}


def test_a_shipping_logging_driver_passes_the_log_check(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = write(tmp_path, BASE + "policy_base_url: http://127.0.0.1:8000/v1\npolicy_api_key: ${oc.env:K,x}\n"
                                 "gymctl:\n  logging: {driver: syslog, options: {syslog-address: 'udp://10.0.0.9:514'}}\n")
    _, _, findings = check(capsys, ["-c", cfg])
    assert next(f for f in findings if f["check"] == "log shipping")["level"] == "ok"


def test_up_warns_with_the_checklist_errors_and_starts_anyway(fake_stack, tmp_path):
    from tests.unit.cli_runner import invoke

    cfg = write(tmp_path, BASE.replace("  - ", f"  - {REPO}/servers/") + f"policy_base_url: http://127.0.0.1:8000/v1\npolicy_api_key: {SECRET}\n")
    r = invoke("up", "-c", cfg, "-t", "separated", "-p", "i15-check-ut", "--publish-host", "0.0.0.0")
    assert r.code == 0, r.err
    assert "warning: gymctl check: secrets in config files: policy_api_key" in r.err
    assert "warning: gymctl check: published ports" in r.err and SECRET not in r.err + r.out
    quiet = invoke("up", "-c", cfg, "-t", "separated", "-p", "i15-check-ut2",
                   "--set", "policy_api_key=${oc.env:K,x}")
    assert quiet.code == 0 and "gymctl check" not in quiet.err
