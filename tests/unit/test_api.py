"""gymctl.api from a plain asyncio program: start all-in-one, rollouts streamed with their row position, typed errors, stop leaves nothing."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys

import pytest

from gymctl.api import Deployment, InputError, SyncDeployment, UnknownServerError, override_args
from gymctl.api.rollouts import check_rows
from gymctl.errors import ConfigError, RayUnreachableError, UsageError
from tests.conftest import AGENT, EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG, example_rows

CONFIGS = [EXAMPLE_CONFIG, SCRIPTED_CONFIG]


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_overrides_become_loader_arguments_with_their_types():
    args = override_args({"policy_base_url": ["http://a:1/v1", "http://b:2/v1"], "n": 3, "flag": True, "name": "true", "ref": "${oc.env:X,y}"})
    assert args == ['++policy_base_url=["http://a:1/v1", "http://b:2/v1"]', "++n=3", "++flag=true", '++name="true"', "++ref=${oc.env:X,y}"]


def test_a_row_without_an_agent_name_is_an_input_error_naming_the_row_and_the_fix():
    rows = [{"responses_create_params": {"input": "hi"}, "agent_ref": {"name": AGENT}}, {"responses_create_params": {"input": "hi"}}]
    with pytest.raises(InputError) as e:
        check_rows(rows, None)
    assert "row 1 names no agent" in str(e.value) and "agent_ref" in str(e.value) and "agent=AGENT" in str(e.value)
    assert [a for _, a in check_rows(rows, "fallback")] == [AGENT, "fallback"]  # a row's own name beats the call's


def test_a_row_without_responses_create_params_is_an_input_error():
    with pytest.raises(InputError, match=r"row 0 has no responses_create_params object \(keys: prompt\)"):
        check_rows([{"prompt": "hi"}], AGENT)
    with pytest.raises(InputError, match="row 0 is a str"):
        check_rows(["hi"], AGENT)


async def test_all_in_one_streams_every_row_with_its_position_and_stop_leaves_nothing_listening():
    rows = example_rows()
    dep = await Deployment.start(CONFIGS)
    try:
        assert dep.head_url.startswith("http://127.0.0.1:") and not dep.head_url.endswith(":11000")  # a free port
        got = {i: r async for i, r in dep.run_rollouts(rows, agent=AGENT)}
        assert sorted(got) == list(range(len(rows)))
        assert {r["reward"] for r in got.values()} == {1.0}
        assert all(r["_ng_task_index"] == i and r["agent_ref"]["name"] == AGENT for i, r in got.items())
        assert [i["type"] for i in got[0]["response"]["output"]][:2] == ["function_call", "function_call_output"]
        ordered = await dep.collect(rows[:3], agent=AGENT)
        assert [r["responses_create_params"]["input"] for r in ordered] == [r["responses_create_params"]["input"] for r in rows[:3]]
        status = await dep.check_health()
        assert status.ok and {i.instance for i in status.instances} >= {AGENT, "policy_model"}
        with pytest.raises(UnknownServerError, match="did you mean"):
            async for _ in dep.run_rollouts(rows[:1], agent=AGENT + "x"):
                pass
    finally:
        await dep.stop()
    assert not _port_open(dep.head_url)
    await dep.stop()  # a second stop does nothing
    with pytest.raises(UsageError, match="was stopped"):
        await dep.health()


async def test_bad_config_and_bad_topology_are_typed_errors():
    with pytest.raises(ConfigError, match="not found"):
        await Deployment.start(["no/such/config.yaml"])
    with pytest.raises(UsageError, match="choose one of: all-in-one, separated, ray"):
        await Deployment.start(CONFIGS, topology="swarm")  # type: ignore[arg-type]


def test_the_sync_wrapper_runs_its_own_loop_and_stops_it():
    with SyncDeployment.start(CONFIGS) as dep:
        rows = [{**r, "agent_ref": {"name": AGENT}} for r in example_rows()[:4]]
        assert sorted(i for i, _ in dep.run_rollouts(rows)) == [0, 1, 2, 3]
        assert [r["reward"] for r in dep.collect(rows)] == [1.0] * 4
        url = dep.head_url
    assert not _port_open(url)


def test_errors_cross_process_boundaries_whole():
    e = pickle.loads(pickle.dumps(RayUnreachableError("10.0.0.1:6379", 3.0, "refused")))
    assert type(e) is RayUnreachableError and e.address == "10.0.0.1:6379" and "ray status --address 10.0.0.1:6379" in str(e)
    u = pickle.loads(pickle.dumps(UnknownServerError("a", ["b"])))
    assert u.known == ["b"] and u.status == 404


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_gymctl_api_and_the_cli_start_without_importing_ray():
    out = _python("import sys, gymctl.api, gymctl.cli.main, gymctl.cli.run_cmd, gymctl.runtime.background; print('ray' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_ray_not_installed_says_how_to_install_it():
    blocked = "import sys; sys.modules['ray'] = None\n"  # what `import ray` meets where Ray is not installed
    out = _python(blocked + "try:\n    import gymctl.ray\nexcept ImportError as e:\n    print(type(e).__name__, e)")
    assert "RayNotInstalledError" in out.stdout and "pip install 'gymctl[ray]'" in out.stdout, out.stderr
    argv = ["gymctl", "run", "--topology", "ray", "-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]
    cli = _python(blocked + f"from gymctl.cli.main import main\nsys.argv = {argv!r}\nmain()")
    assert cli.returncode == 1, cli.stderr
    assert "RayNotInstalledError" in cli.stderr and "pip install 'gymctl[ray]'" in cli.stderr and "Traceback" not in cli.stderr
