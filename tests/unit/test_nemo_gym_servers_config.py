"""NeMo Gym servers in a config, without starting anything: detection, NEMO_GYM_CONFIG_DICT, the interpreter lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gymctl.config.model import load_config
from gymctl.config.nemo_gym import check_nemo_gym, nemo_gym_instances, nemo_gym_settings, runtime_of, uses_ray
from gymctl.errors import ConfigError, StartupError
from gymctl.runtime.nemo_gym import config_dict, interpreter, launch

NEMO_APP = "from nemo_gym.base_resources_server import SimpleResourcesServer\n\n\nclass S(SimpleResourcesServer):\n    ray_enabled = False\n"
NEMO_APP_RAY = "from nemo_gym.base_resources_server import SimpleResourcesServer\n\n\nclass S(SimpleResourcesServer):\n    pass\n"
CONFIG = """
env_res:
  resources_servers:
    nemo_res:
      entrypoint: app.py
      judge_api_key: ${oc.env:I13_JUDGE_KEY,judge-secret}
env_agent:
  responses_api_agents:
    nemo_agent:
      entrypoint: app.py
      resources_server: {type: resources_servers, name: env_res}
      model_server: {type: responses_api_models, name: policy_model}
env_relay:
  environment_servers:
    legacy_agent: {entrypoint: app.py, agent_server: {type: responses_api_agents, name: env_agent}}
policy_model:
  responses_api_models:
    scripted_model: {entrypoint: app.py, api_key: model-secret}
gymctl:
  instances:
    policy_model: {publish: true}
"""


def make(tmp_path: Path, agent_app: str = NEMO_APP) -> Path:
    for rel, app in (("resources_servers/nemo_res", NEMO_APP), ("responses_api_agents/nemo_agent", agent_app)):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "app.py").write_text(app)
    (tmp_path / "env.yaml").write_text("{}\n")
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


def test_nemo_gym_servers_are_told_from_gymctls_by_their_code(tmp_path):
    cfg = load_config([str(make(tmp_path) / "c.yaml")], cwd=tmp_path)
    assert nemo_gym_instances(cfg) == ["env_res", "env_agent"]  # the relay is an alias; scripted_model has create_app
    assert runtime_of(cfg, "policy_model") == "gymctl" and runtime_of(cfg, "env_relay") == "nemo_gym"
    forced = load_config([str(tmp_path / "c.yaml")], ["gymctl.instances.env_res.runtime=gymctl"], cwd=tmp_path)
    assert nemo_gym_instances(forced) == ["env_agent"]


def test_ray_is_needed_only_by_servers_that_do_not_switch_it_off(tmp_path):
    cfg = load_config([str(make(tmp_path, agent_app=NEMO_APP_RAY) / "c.yaml")], cwd=tmp_path)
    assert not uses_ray(cfg, "env_res") and uses_ray(cfg, "env_agent")


def test_config_dict_has_every_address_and_only_its_own_secrets(tmp_path):
    cfg = load_config([str(make(tmp_path) / "c.yaml")], cwd=tmp_path)
    addresses = {"env_res": ("127.0.0.1", 20001), "env_agent": ("127.0.0.1", 20002), "policy_model": ("127.0.0.1", 20003)}
    tree = config_dict(cfg, "env_res", addresses, ("127.0.0.1", 11999))
    assert tree["env_res"]["resources_servers"]["nemo_res"]["judge_api_key"] == "judge-secret"  # its own, resolved
    assert tree["policy_model"]["responses_api_models"]["scripted_model"]["api_key"] == "<redacted>"  # another's: never
    assert tree["env_agent"]["responses_api_agents"]["nemo_agent"]["port"] == 20002
    assert tree["env_relay"]["environment_servers"]["legacy_agent"]["port"] == 20002  # an alias is its agent
    assert tree["head_server"] == {"host": "127.0.0.1", "port": 11999}
    assert tree["dry_run"] is False and "gymctl" not in tree
    OmegaConf.create(tree)  # NeMo Gym reads it with OmegaConf.create(yaml)


def test_launch_runs_the_servers_own_python_on_its_app_with_its_config(tmp_path):
    root = make(tmp_path)
    venv = root / "resources_servers/nemo_res/.venv/bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to("/bin/true")
    cfg = load_config([str(root / "c.yaml")], cwd=tmp_path)
    spec = launch(cfg, "env_res", nemo_gym_settings(cfg), addresses={"env_res": ("127.0.0.1", 20001)}, head=("127.0.0.1", 11999),
                  advertise="127.0.0.1")
    assert spec.argv == [str(venv / "python"), str(root / "resources_servers/nemo_res/app.py")]
    assert spec.cwd == root / "resources_servers/nemo_res" and spec.url == "http://127.0.0.1:20001"
    assert spec.env["NEMO_GYM_CONFIG_PATH"] == "env_res"
    assert OmegaConf.create(spec.env["NEMO_GYM_CONFIG_DICT"]).env_res.resources_servers.nemo_res.port == 20001
    assert spec.env["PYTHONPATH"].split(":") == [str(root / "resources_servers/nemo_res"), str(root)]


def test_a_missing_venv_names_where_it_looked(tmp_path):
    cfg = load_config([str(make(tmp_path) / "c.yaml")], ["+uv_venv_dir=/opt/venvs"], cwd=tmp_path)
    with pytest.raises(StartupError) as e:
        interpreter(cfg, "env_res", nemo_gym_settings(cfg))
    assert "looked for: /opt/venvs/resources_servers/nemo_res/.venv/bin/python, " in str(e.value)
    assert str(tmp_path / "resources_servers/nemo_res/.venv/bin/python") in str(e.value) and "uv venv" in str(e.value)


def test_keys_gymctl_cannot_honour_are_refused_only_with_nemo_gym_servers(tmp_path):
    cfg = load_config([str(make(tmp_path) / "c.yaml")], ["+dry_run=true"], cwd=tmp_path)
    with pytest.raises(ConfigError, match="dry_run=True cannot be honoured"):
        check_nemo_gym(cfg)
    assert check_nemo_gym(cfg, ["policy_model"]) == []  # gymctl's own servers alone: NeMo Gym's keys stay accepted and ignored
    timeout = load_config([str(tmp_path / "c.yaml")], ["+server_spinup_timeout_seconds=7"], cwd=tmp_path)
    assert nemo_gym_settings(timeout).start_timeout_s == 7.0


@pytest.mark.parametrize(("args", "message"), [
    (["+use_absolute_ip=true"], "use_absolute_ip=True cannot be honoured: gymctl advertises each server's `host`"),
    (["gymctl.nemo_gym.pyton=/usr/bin/python3"], "gymctl.nemo_gym: unknown setting(s) pyton; did you mean 'python'?"),
    (["gymctl.nemo_gym.start_timeout_s=-1"], "gymctl.nemo_gym.start_timeout_s: -1 is not a number of seconds (> 0)"),
])
def test_bad_nemo_gym_settings_are_named(tmp_path, args, message):
    cfg = load_config([str(make(tmp_path) / "c.yaml")], args, cwd=tmp_path)
    with pytest.raises(ConfigError) as e:
        check_nemo_gym(cfg)
    assert message in str(e.value)
