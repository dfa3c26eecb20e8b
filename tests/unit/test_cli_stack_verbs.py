"""The stack verbs on the fake Docker backend: up's command line works for every verb, ps/down exit codes, --json."""

from __future__ import annotations

import json

import pytest

from gymctl.docker.fake import FakeBackend
from tests.conftest import EXAMPLE_CONFIG, SCRIPTED_CONFIG
from tests.unit.cli_runner import invoke

UP_ARGS = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG, "-t", "separated", "-p", "cli-ut", "+policy_model_name=m"]


@pytest.fixture
def fake(fake_stack: FakeBackend) -> FakeBackend:
    return fake_stack


def test_up_then_every_verb_with_ups_command_line(fake):
    r = invoke("up", *UP_ARGS, "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["project"] == "cli-ut" and summary["topology"] == "separated" and summary["state"] == "ready"
    assert set(summary["services"]) >= {"head", "policy_model"} and summary["head_url"].startswith("http://127.0.0.1:")
    ps = invoke("ps", *UP_ARGS, "--json")
    assert ps.code == 0, ps.err
    assert {s["service"] for s in json.loads(ps.out)} == set(summary["services"])
    logs = invoke("logs", "policy_model", *UP_ARGS)
    assert logs.code == 0 and "serving" in logs.out, logs.err
    restarted = invoke("restart", "policy_model", *UP_ARGS, "--json")
    assert restarted.code == 0, restarted.err
    assert json.loads(restarted.out)["service"] == "policy_model"
    down = invoke("down", *UP_ARGS, "--json")
    assert down.code == 0, down.err
    assert json.loads(down.out)["containers"] == len(summary["services"])
    assert "stack 'cli-ut' down:" in down.err


def test_an_override_before_the_instance_is_not_the_instance(fake):
    assert invoke("up", *UP_ARGS).code == 0
    r = invoke("logs", "+policy_model_name=m", "policy_model", "-p", "cli-ut")
    assert r.code == 0 and "serving" in r.out, r.err


def test_ps_on_an_empty_project_exits_0_and_says_so(fake):
    r = invoke("ps", "-p", "cli-nobody")
    assert r.code == 0, r.err
    assert "stack 'cli-nobody' is not up (no containers)" in r.err
    r = invoke("ps", "-p", "cli-nobody", "--json")
    assert r.code == 0 and json.loads(r.out) == []


def test_ps_exits_1_when_a_container_is_unhealthy(fake):
    fake.make_unhealthy("policy_model")
    assert invoke("up", *UP_ARGS, "--no-wait").code == 0
    for _ in range(3):  # the fake shows "starting" first
        r = invoke("ps", "-p", "cli-ut")
    assert r.code == 1 and "unhealthy" in r.out, r.out + r.err


def test_down_of_a_stack_that_is_not_up(fake):
    r = invoke("down", *UP_ARGS, "--json")
    assert r.code == 0 and json.loads(r.out)["was_up"] is False
    assert "is not up" in r.err


def test_render_json_names_the_file_and_services(tmp_path):
    r = invoke("render", *UP_ARGS, "-o", str(tmp_path), "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["path"] == str(tmp_path / "docker-compose.yml") and (tmp_path / "docker-compose.yml").is_file()
    assert "head" in out["services"] and out["topology"] == "separated"
    r = invoke("render", *UP_ARGS, "--json")  # no --output: the compose file itself goes to stdout
    assert r.code == 2 and r.err.startswith("UsageError: --json reports the file written"), r.err


@pytest.mark.docker
def test_ps_on_an_empty_project_with_the_real_engine(tmp_path, monkeypatch):
    from gymctl.docker.docker_backend import DockerBackend
    from gymctl.errors import GymctlError

    try:
        DockerBackend().containers("gymctl-cli-nobody-uses-this")
    except GymctlError as e:
        pytest.skip(f"needs Docker: {e}")
    monkeypatch.chdir(tmp_path)
    r = invoke("ps", "-p", "gymctl-cli-nobody-uses-this")
    assert r.code == 0 and "stack 'gymctl-cli-nobody-uses-this' is not up (no containers)" in r.err, r.err


def test_build_and_images_ls_json(monkeypatch):
    from gymctl.cli import build_cmd
    from gymctl.docker import cleanup
    from gymctl.docker.images import BuiltImage

    built = [BuiltImage(unit="head", image="gymctl/head:latest", seconds=1.5, built=True, size_bytes=10),
             BuiltImage(unit="policy_model", image="gymctl/scripted_model:latest", seconds=0.0, built=False, size_bytes=20)]
    monkeypatch.setattr(build_cmd, "build_for", lambda *a, **k: built)
    r = invoke("build", *UP_ARGS[:4], "-t", "separated", "--json")
    assert r.code == 0, r.err
    assert [(i["image"], i["built"]) for i in json.loads(r.out)] == [("gymctl/head:latest", True), ("gymctl/scripted_model:latest", False)]
    assert "1 built, 1 up to date" in r.err  # the human summary stays on stderr
    monkeypatch.setattr(cleanup, "gymctl_images", lambda: [("gymctl/head:latest", 10, "head")])
    r = invoke("images", "ls", "--json")
    assert r.code == 0 and json.loads(r.out) == [{"image": "gymctl/head:latest", "size_bytes": 10, "unit": "head"}], r.err
