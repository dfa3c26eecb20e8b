"""Secrets given on the command line never travel on a child's command line (separated runtime): they go by environment."""

from __future__ import annotations

from gymctl.runtime.separated import hide_secrets, serve_args

KEY = "sk-cmdline-0123456789"


def test_secret_overrides_become_environment_references():
    env: dict[str, str] = {}
    args = serve_args("policy_model", (["a.yaml"], [f"policy_api_key={KEY}", "head_server.port=11000"],
                                       [f"+policy_base_url=http://u:{KEY}@h:1/v1", "+policy_model_name=m"]), "warning", env)
    assert KEY not in " ".join(args)
    assert "+policy_base_url=${oc.env:GYMCTL_SECRET_0}" in args and "+policy_model_name=m" in args
    assert "--set" in args and "policy_api_key=${oc.env:GYMCTL_SECRET_1}" in args and "head_server.port=11000" in args
    assert env == {"GYMCTL_SECRET_0": f"http://u:{KEY}@h:1/v1", "GYMCTL_SECRET_1": KEY}


def test_references_and_plain_values_pass_unchanged():
    env: dict[str, str] = {}
    items = ["policy_api_key=${oc.env:OPENAI_API_KEY}", "x.max_tokens=5", "+a=b", "policy_api_key="]
    assert hide_secrets(items, env) == items and env == {}


def test_a_child_loads_the_same_value_from_its_environment(monkeypatch):
    from gymctl.config import load_config
    from tests.conftest import REPO, SCRIPTED_CONFIG

    env: dict[str, str] = {}
    hidden = hide_secrets([f"policy_api_key={KEY}"], env)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = load_config([str(REPO / "servers" / SCRIPTED_CONFIG)], hidden, cwd=REPO, env_yaml=False)
    from omegaconf import OmegaConf

    assert OmegaConf.to_container(cfg.tree, resolve=True)["policy_api_key"] == KEY
