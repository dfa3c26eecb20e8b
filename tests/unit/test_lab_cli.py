"""The lab's and push's checks that need no Docker: GPU options without --swarm, node flags, registry names, --context on every Docker verb."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gymctl.cli.main import app
from gymctl.docker.lab import _validate, lab_context_names
from gymctl.docker.lab_nodes import NodeSpec
from gymctl.docker.registry_push import remote_tag
from gymctl.errors import UsageError

DOCKER_VERBS = (["up"], ["down"], ["ps"], ["logs"], ["restart"], ["build"], ["push"], ["images", "base"], ["images", "ls"], ["images", "clean"])


def test_gpu_options_need_swarm_and_exit_2():
    r = CliRunner().invoke(app, ["cluster", "create", "--gpu-nodes", "1", "--gpus-per-node", "2"])
    assert isinstance(r.exception, UsageError) and r.exception.exit_code == 2  # run_app prints it and exits 2
    assert "add --swarm" in str(r.exception)


@pytest.mark.parametrize("args", [(0, 0, 0, False), (2, 3, 1, True), (2, 1, 0, True)])
def test_bad_lab_shapes_are_usage_errors(args):
    with pytest.raises(UsageError):
        _validate(*args)


def test_a_gpu_node_advertises_its_fake_gpus_and_trusts_the_lab_registry():
    argv = NodeSpec(1, gpus=2).dockerd_argv()
    assert argv[argv.index("--insecure-registry") + 1] == "gymctl-lab-registry:5000"
    assert "--storage-driver=overlay2" in argv  # on its disk-backed volume; vfs copied every layer
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--node-generic-resource"] == ["NVIDIA-GPU=GPU-fake0", "NVIDIA-GPU=GPU-fake1"]
    assert "--node-generic-resource" not in NodeSpec(2).dockerd_argv()


def test_only_the_labs_contexts_are_its_own():
    assert lab_context_names(["default", "gymctl-lab", "gymctl-lab-node3", "gymctl-labx", "prod"]) == ["gymctl-lab", "gymctl-lab-node3"]


def test_registry_must_be_host_port():
    assert remote_tag("127.0.0.1:5000", "gymctl/head:latest") == "127.0.0.1:5000/gymctl/head:latest"
    for bad in ("http://127.0.0.1:5000", "127.0.0.1:5000/x", ""):
        with pytest.raises(UsageError):
            remote_tag(bad, "gymctl/head:latest")


@pytest.mark.parametrize("verb", DOCKER_VERBS, ids=" ".join)
def test_every_docker_verb_takes_context(verb):
    r = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--context" in r.output
