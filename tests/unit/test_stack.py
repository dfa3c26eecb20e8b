"""ComposeStack on the fake Docker backend: up waits and diagnoses, down/ps/logs/restart, secrets never in os.environ."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gymctl.compose.model import RenderSettings
from gymctl.compose.render import RenderedStack, render
from gymctl.config import load_config
from gymctl.docker.fake import FakeBackend
from gymctl.docker.stack import ComposeStack, StackNotUpError
from gymctl.errors import (
    DockerError,
    DockerUnavailableError,
    NotReadyError,
    PortInUseError,
    StartupError,
    UsageError,
)
from tests.conftest import EXAMPLE_CONFIG, OPENAI_CONFIG, REPO, SCRIPTED_CONFIG

AGENT = "example_single_tool_call_simple_agent"
SERVICES = ["head", "example_single_tool_call", AGENT, "policy_model"]


def rendered_example(project: str = "t1", *configs: str, overrides: list[str] | None = None) -> RenderedStack:
    cfg = load_config(list(configs) or [EXAMPLE_CONFIG, SCRIPTED_CONFIG], overrides or [], cwd=REPO)
    return render(cfg, "separated", RenderSettings(project=project))


def stack_for(rendered: RenderedStack, tmp_path: Path, fake: FakeBackend) -> ComposeStack:
    path = tmp_path / "docker-compose.yml"
    path.write_text(rendered.compose_yaml)
    return ComposeStack(rendered.stack.project, path, backend=fake, poll_s=0.01)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


def test_up_waits_until_every_container_is_healthy_and_reports_progress(fake, tmp_path):
    stack = stack_for(rendered_example(), tmp_path, fake)
    phases: list[tuple[str, list[str]]] = []
    states = stack.up(rendered_example(), timeout_s=5, progress=lambda s, phase: phases.append((phase, [x.status for x in s])))
    assert [s.service for s in states] == ["head", *sorted(SERVICES[1:])]
    assert all(s.status == "healthy" for s in states)
    assert ("waiting for healthy", ["starting"] * 4) in phases  # the user saw them come up
    assert fake.calls == [("compose_up", "t1")]
    assert stack.ps()[0].instance == "head"


def test_unhealthy_container_is_a_startup_error_with_its_healthcheck_and_log_tail(fake, tmp_path):
    fake.make_unhealthy("policy_model", output="curl: (7) refused", logs=["loading", "Traceback: boom"])
    stack = stack_for(rendered_example(), tmp_path, fake)
    with pytest.raises(StartupError) as info:
        stack.up(rendered_example(), timeout_s=5)
    text = str(info.value)
    assert text.startswith("policy_model: container is unhealthy\nhealthcheck exit 1: curl: (7) refused")
    assert "--- last log lines ---\nloading\nTraceback: boom" in text
    assert info.value.instance == "policy_model"


def test_container_exiting_at_start_gives_its_exit_code(fake, tmp_path):
    fake.make_exit("policy_model", 2, logs=["environment variable X is not set"])
    stack = stack_for(rendered_example(), tmp_path, fake)
    with pytest.raises(StartupError) as info:
        stack.up(rendered_example(), timeout_s=5)
    assert info.value.process_exit_code == 2
    assert "policy_model: container exited with code 2 while starting (state restarting, 1 restart(s))" in str(info.value)
    assert "see `gymctl logs policy_model -p t1`, then `gymctl down -p t1`" in str(info.value)
    assert "environment variable X is not set" in info.value.log_tail


def test_exited_without_restart_policy_reads_the_state_exit_code(fake, tmp_path):
    fake.make_exit(AGENT, 137, restarting=False)
    stack = stack_for(rendered_example(), tmp_path, fake)
    with pytest.raises(StartupError, match=rf"{AGENT}: container exited with code 137 while starting \(state exited, 0 restart"):
        stack.up(rendered_example(), timeout_s=5)


def test_slow_container_is_not_ready_in_time_with_its_status_and_log_tail(fake, tmp_path):
    fake.behave("example_single_tool_call", starting_reads=10_000, logs=["still loading the dataset"])
    stack = stack_for(rendered_example(), tmp_path, fake)
    t0 = time.monotonic()
    with pytest.raises(NotReadyError) as info:
        stack.up(rendered_example(), timeout_s=0.3)
    assert time.monotonic() - t0 < 3
    assert str(info.value).startswith("stack 't1': example_single_tool_call not healthy in time (starting)")
    assert info.value.service == "example_single_tool_call" and "still loading the dataset" in info.value.log_tail


def test_head_not_registering_in_time_says_how_to_look(fake, tmp_path):
    fake.head_ready = False
    stack = stack_for(rendered_example(), tmp_path, fake)
    with pytest.raises(NotReadyError, match=r"head at http://127.0.0.1:11000/health not ready in time: .*gymctl status --head http://127.0.0.1:11000"):
        stack.up(rendered_example(), timeout_s=0.3)


def test_no_wait_returns_once_compose_returns(fake, tmp_path):
    fake.behave("policy_model", starting_reads=10_000)
    states = stack_for(rendered_example(), tmp_path, fake).up(rendered_example(), wait=False)
    assert len(states) == 4 and any(s.status == "starting" for s in states)


def test_taken_published_port_is_named_before_anything_starts(fake, tmp_path):
    fake.take_port(11002)
    stack = stack_for(rendered_example(overrides=[f"{AGENT}.responses_api_agents.simple_agent.port=11002"]), tmp_path, fake)
    with pytest.raises(PortInUseError) as info:
        stack.up(rendered_example(overrides=[f"{AGENT}.responses_api_agents.simple_agent.port=11002"]), timeout_s=5)
    assert str(info.value).startswith(f"{AGENT} (published port): port 11002 on 127.0.0.1 is already in use")
    assert fake.calls == [] and stack.ps() == []


def test_port_lost_to_a_race_during_compose_up_is_still_a_port_error(fake, tmp_path):
    fake.fail_up("Error response from daemon: Bind for 127.0.0.1:11000 failed: port is already allocated")
    fake.behave("head", starting_reads=10_000)
    with pytest.raises(PortInUseError, match=r"port 11000 on 127.0.0.1 is already in use"):
        stack_for(rendered_example(), tmp_path, fake).up(rendered_example(), timeout_s=5)


def test_compose_failure_without_a_failed_container_keeps_compose_words(fake, tmp_path):
    fake.fail_up("service head: invalid mount config")
    fake.behave("head", starting_reads=10_000)
    with pytest.raises(DockerError, match="docker compose up failed: service head: invalid mount config"):
        stack_for(rendered_example(), tmp_path, fake).up(rendered_example(), timeout_s=5)


def test_missing_images_say_run_gymctl_build(fake, tmp_path):
    fake.remove_image("gymctl/head:latest")
    fake.remove_image("gymctl/scripted_model:latest")
    with pytest.raises(DockerError) as info:
        stack_for(rendered_example(), tmp_path, fake).up(rendered_example())
    assert str(info.value) == ("image(s) not built: gymctl/head:latest, gymctl/scripted_model:latest; "
                               "run `gymctl build` (or `gymctl up --build`)")
    assert fake.calls == []


def test_gpus_without_the_nvidia_runtime_refuse_up(fake, tmp_path):
    rendered = rendered_example(overrides=["gymctl.instances.policy_model.gpus=1"])
    with pytest.raises(DockerError, match=r"policy_model \(gpus: 1\) reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime"):
        stack_for(rendered, tmp_path, fake).up(rendered)
    assert fake.calls == []


def test_no_compose_plugin_is_named_before_anything_else(tmp_path):
    fake = FakeBackend(compose=False)
    fake.remove_image("gymctl/head:latest")
    with pytest.raises(DockerUnavailableError, match="Docker Compose v2 is not available"):
        stack_for(rendered_example(), tmp_path, fake).up(rendered_example())


def test_down_and_ps_need_no_compose_plugin(tmp_path):
    fake = FakeBackend()
    stack = stack_for(rendered_example(), tmp_path, fake)
    stack.up(rendered_example(), timeout_s=5)
    fake.compose = False  # the plugin went away: ps and down still work through the engine
    assert len(stack.ps()) == 4
    before = stack.down()
    assert len(before["containers"]) == 4 and before["networks"] == ["t1_gymctl"]
    assert stack.ps() == [] and fake.labelled("t1") == {"containers": [], "networks": [], "volumes": []}


def test_down_of_a_stack_that_is_not_up_and_ps_of_an_empty_project(fake):
    stack = ComposeStack("nothing", None, backend=fake)
    assert stack.ps() == []
    with pytest.raises(StackNotUpError, match="stack 'nothing' is not up; nothing to stop"):
        stack.down()


def test_down_with_only_strays_still_runs(fake):
    fake.add_stray("t1", "by-hand")
    before = ComposeStack("t1", None, backend=fake).down()
    assert before["containers"] == ["by-hand"] and ("compose_down", "t1") in fake.calls


def test_restart_brings_one_service_back_healthy(fake, tmp_path):
    stack = stack_for(rendered_example(), tmp_path, fake)
    stack.up(rendered_example(), timeout_s=5)
    state = stack.restart("policy_model", timeout_s=5)
    assert state.service == "policy_model" and state.status == "healthy"
    assert fake.calls[-1] == ("compose_restart", "t1")


def test_restart_of_a_crashing_service_gives_its_exit_code(fake, tmp_path):
    stack = stack_for(rendered_example(), tmp_path, fake)
    stack.up(rendered_example(), timeout_s=5)
    fake.make_exit("policy_model", 3)
    with pytest.raises(StartupError, match="policy_model: container exited with code 3"):
        stack.restart("policy_model", timeout_s=5)


def test_restart_of_an_unknown_service_or_a_stack_not_up(fake, tmp_path):
    with pytest.raises(StackNotUpError, match=r"stack 't1' is not up .*start it with `gymctl up`"):
        ComposeStack("t1", None, backend=fake).restart("policy_model")
    stack = stack_for(rendered_example(), tmp_path, fake)
    stack.up(rendered_example(), timeout_s=5)
    with pytest.raises(UsageError) as info:
        stack.restart("policy_modle")
    assert str(info.value) == f"stack 't1' has no service 'policy_modle' (services: {', '.join(sorted(SERVICES))})"
    assert ("compose_restart", "t1") not in fake.calls


def test_logs_of_one_service_or_all_with_tail(fake, tmp_path):
    fake.behave("policy_model", logs=["one", "two", "three"])
    stack = stack_for(rendered_example(), tmp_path, fake)
    stack.up(rendered_example(), timeout_s=5)
    assert list(stack.logs("policy_model", tail=2)) == ["t1-policy_model-1  | two\n", "t1-policy_model-1  | three\n"]
    assert len(list(stack.logs())) == 6
    with pytest.raises(UsageError, match="has no service 'nope'"):
        list(stack.logs("nope"))
    with pytest.raises(StackNotUpError):
        list(ComposeStack("other", None, backend=fake).logs())


def test_secrets_reach_compose_but_not_os_environ(fake, tmp_path):
    rendered = rendered_example("sec", EXAMPLE_CONFIG, OPENAI_CONFIG,
                                overrides=["+policy_base_url=http://u/v1", "+policy_api_key=sk-NOT-IN-ENV", "+policy_model_name=m"])
    environ_before = dict(os.environ)
    stack_for(rendered, tmp_path, fake).up(rendered, timeout_s=5)
    assert fake.envs == [{"GYMCTL_SECRET_POLICY_API_KEY": "sk-NOT-IN-ENV"}]
    assert dict(os.environ) == environ_before


def test_require_up_gives_the_containers_once_up(fake, tmp_path):
    stack = stack_for(rendered_example(), tmp_path, fake)
    with pytest.raises(StackNotUpError):
        stack.require_up()
    stack.up(rendered_example(), timeout_s=5)
    assert [s.service for s in stack.require_up()] == ["head", *sorted(SERVICES[1:])]
