"""Config loading: NeMo Gym's format verbatim, merge order, overrides, and every bad input's message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gymctl.config import load_config
from gymctl.config.model import redact
from gymctl.errors import ConfigError, UsageError
from tests.conftest import EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, SCRIPTED_CONFIG

POLICY = ["+policy_base_url=http://127.0.0.1:9/v1", "+policy_api_key=sk-secret-123", "+policy_model_name=m"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_quickstart_verbatim_from_repo_root():
    cfg = load_config([], [f"+config_paths=[{EXAMPLE_CONFIG},{OPENAI_CONFIG}]", *POLICY], cwd=REPO)
    assert set(cfg.instances) == {
        "example_single_tool_call", "example_single_tool_call_simple_agent",
        "example_single_tool_call_environment_server", "policy_model",
    }
    assert cfg.instances["example_single_tool_call_environment_server"].alias_of == "example_single_tool_call_simple_agent"
    block = cfg.block("policy_model")
    assert block["openai_base_url"] == "http://127.0.0.1:9/v1"
    assert block["openai_api_key"] == "sk-secret-123"
    assert str(block["drop_input_reasoning_items"]).lower() == "false"  # ${oc.env:VAR,default} resolved
    assert cfg.head_url == "http://127.0.0.1:11000"


def test_nemo_gym_settings_keys_are_accepted_and_ignored():
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], ["+skip_venv_if_present=true", "+uv_venv_dir=/x", "++dry_run=false"], cwd=REPO)
    assert "skip_venv_if_present" not in cfg.instances


def test_later_file_overrides_earlier_and_command_line_wins(tmp_path):
    a = write(tmp_path, "a.yaml", "policy_model:\n  responses_api_models:\n    scripted_model:\n      entrypoint: app.py\n      model_name: a\n")
    b = write(tmp_path, "b.yaml", "policy_model:\n  responses_api_models:\n    scripted_model:\n      model_name: b\n")
    assert load_config([str(a), str(b)], cwd=tmp_path).block("policy_model")["model_name"] == "b"
    cfg = load_config([str(a), str(b)], ["policy_model.responses_api_models.scripted_model.model_name=c"], cwd=tmp_path)
    assert cfg.block("policy_model")["model_name"] == "c"


def test_nested_config_paths_including_file_wins(tmp_path):
    write(tmp_path, "base.yaml", "policy_model:\n  responses_api_models:\n    scripted_model:\n      entrypoint: app.py\n      model_name: base\n")
    top = write(tmp_path, "top.yaml", "config_paths: [base.yaml]\npolicy_model:\n  responses_api_models:\n    scripted_model:\n      model_name: top\n")
    assert load_config([str(top)], cwd=tmp_path).block("policy_model")["model_name"] == "top"


def test_env_yaml_sits_between_files_and_command_line(tmp_path):
    write(tmp_path, "env.yaml", "policy_base_url: http://from-env-yaml/v1\npolicy_api_key: k\npolicy_model_name: m\n")
    cfg = load_config([str(REPO / "servers" / OPENAI_CONFIG)], cwd=tmp_path)
    assert cfg.block("policy_model")["openai_base_url"] == "http://from-env-yaml/v1"
    cfg = load_config([str(REPO / "servers" / OPENAI_CONFIG)], ["+policy_base_url=http://cli/v1"], cwd=tmp_path)
    assert cfg.block("policy_model")["openai_base_url"] == "http://cli/v1"


def test_gymctl_block_is_parsed(tmp_path):
    top = write(tmp_path, "d.yaml", f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\ngymctl:\n  instances:\n    policy_model: {{gpus: 1, publish: true}}\n")
    cfg = load_config([str(top)], cwd=tmp_path)
    assert cfg.deployment_of("policy_model").gpus == 1
    assert cfg.deployment_of("policy_model").publish is True


def test_secrets_are_redacted():
    out = redact({"a": {"openai_api_key": "sk-1", "nested": [{"hf_token": "t"}], "port": 1}, "policy_api_key": "x",
                  "m": {"openai_default_headers": {"Authorization": "Bearer sk-2"}, "extra_headers": {}, "key": "k3", "monkey": 4}})
    text = str(out)
    assert "sk-1" not in text and "'t'" not in text and "'x'" not in text and "sk-2" not in text and "k3" not in text
    assert out["a"]["port"] == 1 and out["m"]["extra_headers"] == {} and out["m"]["monkey"] == 4


# --- bad input: each names the file / key path and says what to do -------------------------------

def expect_error(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert match in str(info.value), str(info.value)
    return str(info.value)


def test_missing_config_file_says_where_it_looked(tmp_path):
    msg = expect_error(ConfigError, "not found", load_config, ["nope.yaml"], cwd=tmp_path)
    assert str(tmp_path / "nope.yaml") in msg and "servers" in msg


def test_config_path_that_is_a_directory_says_so(tmp_path):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    msg = expect_error(ConfigError, "is a directory", load_config, [str(d)], cwd=tmp_path)
    assert str(d) in msg and "pass a .yaml config file" in msg
    # Relative, found in the working directory: the same, with a config file inside it offered.
    (tmp_path / "cfgs" / "configs").mkdir(parents=True)
    (tmp_path / "cfgs" / "configs" / "a.yaml").write_text("x: 1\n")
    msg = expect_error(ConfigError, "is a directory", load_config, ["cfgs"], cwd=tmp_path)
    assert "e.g. " + str(tmp_path / "cfgs" / "configs" / "a.yaml") in msg


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path, "bad.yaml", "a:\n  b: 1\n c: [\n")
    msg = expect_error(ConfigError, "YAML syntax error", load_config, [str(p)], cwd=tmp_path)
    assert f"{p}:" in msg and any(f"{p}:{n}" in msg for n in (3, 4))


def test_empty_config(tmp_path):
    p = write(tmp_path, "empty.yaml", "")
    expect_error(ConfigError, "empty", load_config, [str(p)], cwd=tmp_path)


def test_top_level_not_a_mapping(tmp_path):
    p = write(tmp_path, "list.yaml", "- a\n- b\n")
    expect_error(ConfigError, "not a mapping", load_config, [str(p)], cwd=tmp_path)


def test_no_config_at_all(tmp_path):
    expect_error(ConfigError, "no config given", load_config, [], cwd=tmp_path)


def test_instance_with_two_server_types(tmp_path):
    p = write(tmp_path, "two.yaml", "x:\n  resources_servers: {a: {entrypoint: app.py}}\n  responses_api_agents: {b: {entrypoint: app.py}}\n")
    msg = expect_error(ConfigError, "two server types", load_config, [str(p)], cwd=tmp_path)
    assert f"{p}:1" in msg and ": x:" in msg


def test_instance_with_no_server_type(tmp_path):
    p = write(tmp_path, "none.yaml", "x:\n  foo: {entrypoint: app.py}\n")
    expect_error(ConfigError, "has no server type", load_config, [str(p)], cwd=tmp_path)


def test_unknown_server_type_did_you_mean(tmp_path):
    p = write(tmp_path, "typo.yaml", "x:\n  resource_servers:\n    example_single_tool_call: {entrypoint: app.py}\n")
    msg = expect_error(ConfigError, "unknown server type 'resource_servers'", load_config, [str(p)], cwd=tmp_path)
    assert "did you mean 'resources_servers'" in msg and "x.resource_servers" in msg


def test_entrypoint_dir_not_found_says_where_it_looked(tmp_path):
    p = write(tmp_path, "e.yaml", "x:\n  resources_servers:\n    no_such_impl: {entrypoint: app.py}\n")
    msg = expect_error(ConfigError, "not found; looked in", load_config, [str(p)], cwd=tmp_path)
    assert str(tmp_path / "resources_servers/no_such_impl/app.py") in msg
    assert "servers/resources_servers/no_such_impl/app.py" in msg
    assert "x.resources_servers.no_such_impl.entrypoint" in msg


def test_dangling_reference_did_you_mean(tmp_path):
    p = write(tmp_path, "r.yaml", f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\n"
              "agent:\n  responses_api_agents:\n    simple_agent:\n      entrypoint: app.py\n"
              "      resources_server: {type: resources_servers, name: example_single_tool_cal}\n"
              "      model_server: {type: responses_api_models, name: policy_model}\n"
              "example_single_tool_call:\n  resources_servers:\n    example_single_tool_call: {entrypoint: app.py}\n")
    msg = expect_error(ConfigError, "did you mean 'example_single_tool_call'", load_config, [str(p)], cwd=tmp_path)
    assert "agent.responses_api_agents.simple_agent.resources_server" in msg


@pytest.mark.parametrize("port,needle", [("abc", "not a port number"), ("70000", "not a port (1-65535")])
def test_bad_port(tmp_path, port, needle):
    p = write(tmp_path, "p.yaml", f"policy_model:\n  responses_api_models:\n    scripted_model: {{entrypoint: app.py, port: {port}}}\n")
    msg = expect_error(ConfigError, needle, load_config, [str(p)], cwd=tmp_path)
    assert "policy_model.responses_api_models.scripted_model.port" in msg


def test_two_instances_on_one_port(tmp_path):
    p = write(tmp_path, "p.yaml", "a:\n  responses_api_models:\n    scripted_model: {entrypoint: app.py, port: 9100}\n"
              "b:\n  responses_api_models:\n    scripted_model: {entrypoint: app.py, port: 9100}\n")
    expect_error(ConfigError, "port 9100 is also used by a", load_config, [str(p)], cwd=tmp_path)


def test_unresolved_env_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("GYMCTL_TEST_UNSET_VAR", raising=False)
    p = write(tmp_path, "env.yaml.in", "m:\n  responses_api_models:\n    scripted_model: {entrypoint: app.py, model_name: '${oc.env:GYMCTL_TEST_UNSET_VAR}'}\n")
    cfg = load_config([str(p)], cwd=tmp_path)  # structure is fine; resolution happens where the server runs
    msg = expect_error(ConfigError, "environment variable GYMCTL_TEST_UNSET_VAR is not set", cfg.resolve)
    assert "oc.env:GYMCTL_TEST_UNSET_VAR,default" in msg


def test_bad_override_syntax():
    expect_error(UsageError, "is not an override", load_config, [EXAMPLE_CONFIG], ["policy_base_url"], cwd=REPO)


def test_gymctl_block_unknown_instance(tmp_path):
    p = write(tmp_path, "g.yaml", f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\ngymctl:\n  instances:\n    policy_modle: {{gpus: 1}}\n")
    expect_error(ConfigError, "did you mean 'policy_model'", load_config, [str(p)], cwd=tmp_path)


def test_gymctl_block_unknown_setting(tmp_path):
    p = write(tmp_path, "g.yaml", f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\ngymctl:\n  instances:\n    policy_model: {{gpu: 1}}\n")
    expect_error(ConfigError, "did you mean 'gpus'", load_config, [str(p)], cwd=tmp_path)


def test_a_process_resolves_only_the_secrets_of_the_instances_it_serves(tmp_path, monkeypatch):
    monkeypatch.delenv("GYMCTL_TEST_MODEL_KEY", raising=False)
    p = write(tmp_path, "s.yaml", f"config_paths: [{REPO / 'servers' / EXAMPLE_CONFIG}, {REPO / 'servers' / OPENAI_CONFIG}]\n"
              "policy_base_url: http://u/v1\npolicy_model_name: m\npolicy_api_key: ${oc.env:GYMCTL_TEST_MODEL_KEY}\n")
    cfg = load_config([str(p)], cwd=tmp_path)
    # The resources server's process has no model key in its environment, and needs none.
    out = cfg.resolve(required=["example_single_tool_call"])
    assert out["example_single_tool_call"]["resources_servers"]["example_single_tool_call"]["entrypoint"] == "app.py"
    assert out["policy_model"]["responses_api_models"]["openai_model"]["openai_api_key"] == "${policy_api_key}"  # kept as written
    # The model server's process must have it, and says which variable is missing.
    msg = expect_error(ConfigError, "environment variable GYMCTL_TEST_MODEL_KEY is not set", cfg.resolve, required=["policy_model"])
    assert "policy_model" in msg
    monkeypatch.setenv("GYMCTL_TEST_MODEL_KEY", "sk-1")
    assert cfg.resolve(required=["policy_model"])["policy_model"]["responses_api_models"]["openai_model"]["openai_api_key"] == "sk-1"


@pytest.mark.parametrize("value,needle,key", [
    ("3", "is not a mapping", "gymctl.instances.policy_model"),
    ("gpus", "is not a mapping", "gymctl.instances.policy_model"),
    ("{publish: 'no'}", "'no' is not true or false", "gymctl.instances.policy_model.publish"),
    ("{node: 5}", "5 is not a name", "gymctl.instances.policy_model.node"),
])
def test_gymctl_block_bad_values(tmp_path, value, needle, key):
    p = write(tmp_path, "g.yaml", f"config_paths: [{REPO / 'servers' / SCRIPTED_CONFIG}]\ngymctl:\n  instances:\n    policy_model: {value}\n")
    msg = expect_error(ConfigError, needle, load_config, [str(p)], cwd=tmp_path)
    assert key in msg
