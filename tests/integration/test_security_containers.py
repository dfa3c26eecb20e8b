"""Hardened containers on a real engine: no capabilities, no-new-privileges, non-root, a tmpfs /tmp; the stack still works
and a secret passed by name is in no rendered file, label or log."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import example_rows, http_json
from tests.integration.conftest import gymctl

pytestmark = pytest.mark.docker

SECRET = "i15-SECRET-value-0123456789"


def inspect(project: str) -> list[dict]:
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.gymctl.project={project}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert ids, f"no container of {project}"
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)


def test_every_container_is_hardened_and_the_stack_still_serves(example_images, stack_ut, tmp_path):
    env = {"I15_POLICY_KEY": SECRET}
    r = gymctl("up", "--topology", "separated", "--wait", "-p", stack_ut.project,
               *stack_ut.config_args("--set", "policy_model.responses_api_models.scripted_model.api_key=${oc.env:I15_POLICY_KEY}"), env=env)
    assert r.returncode == 0, r.stderr
    containers = inspect(stack_ut.project)
    assert len(containers) == 4
    for c in containers:
        name, host = c["Name"], c["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), name
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), name
        assert c["Config"]["User"] not in ("", "0", "root"), name
        assert "/tmp" in (host.get("Tmpfs") or {}), name
        assert host["ReadonlyRootfs"] is True, name
    status, body = http_json(stack_ut.agent_url + "/run", example_rows()[0], headers=stack_ut.headers)
    assert status == 200 and body["reward"] == 1.0  # type: ignore[index]
    # The secret travels by name only: not in the compose file, the labels, any container's log or the head's config.
    rendered = gymctl("render", "--topology", "separated", "-p", stack_ut.project,
                      *stack_ut.config_args("--set", "policy_model.responses_api_models.scripted_model.api_key=${oc.env:I15_POLICY_KEY}"), env=env)
    assert rendered.returncode == 0 and SECRET not in rendered.stdout
    assert all(SECRET not in json.dumps(c["Config"]["Labels"]) for c in containers)
    for c in containers:
        logs = subprocess.run(["docker", "logs", c["Id"]], capture_output=True, text=True)
        assert SECRET not in logs.stdout + logs.stderr, c["Name"]
    _, config_text = http_json(stack_ut.head_url + "/global_config_dict_yaml", headers=stack_ut.headers)
    assert SECRET not in str(config_text)
