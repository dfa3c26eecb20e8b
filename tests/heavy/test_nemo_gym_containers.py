"""NeMo Gym's own servers as containers on a real engine: `gymctl build` (one image per NeMo Gym implementation, Python 3.13
on Debian trixie), `gymctl up --topology separated`, status green, rollouts with each environment's own rewards, `gymctl
down` leaves nothing; and a mixed stack whose NeMo Gym agent calls gymctl's resources server without the token.

The images are built once per session (their build time and sizes are printed). The LLM is bench's stub, run in a
container on the stack's own network (the engine's containers reach nothing else of this machine).
"""

from __future__ import annotations

import collections
import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, http_json
from tests.integration.conftest import docker_unusable, free_ports, gymctl, remove_project
from tests.nemo_gym_env import nemo_gym_bin

pytestmark = [pytest.mark.docker, pytest.mark.nemo_gym]

PREFIX = "gymctl-it-ng"
SEED = ["-c", "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
        "-c", "responses_api_models/openai_model/configs/openai_model.yaml"]
ENVS = {"example_single_tool_call": ("example_single_tool_call/configs/example_single_tool_call.yaml", "example_single_tool_call_simple_agent"),
        "equivalence_rule": ("equivalence_rule/configs/lc.yaml", "lc_equivalence_rule_simple_agent"),
        "xlam_fc": ("xlam_fc/configs/xlam_fc.yaml", "xlam_fc_simple_agent")}
SERVERS = ("responses_api_agents/simple_agent", "responses_api_models/openai_model", "environment_servers/legacy_agent",
           *(f"resources_servers/{e}" for e in ENVS))
STUB_PORT = 9000
POLICY = [f"+policy_base_url=http://stub:{STUB_PORT}/v1", "+policy_api_key=dummy", "+policy_model_name=stub"]
CONFIGS = [a for env, (cfg, _) in ENVS.items() for a in ("-c", f"resources_servers/{cfg}")] + SEED[2:]


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if docker_unusable():
        pytest.skip(f"needs Docker: {docker_unusable()}")
    nemo_gym_bin("ng_run")  # the package's server code comes from the NeMo Gym install
    from bench.nemo_gym_servers import make_checkout

    return make_checkout(tmp_path_factory.mktemp("i13-ng-containers"), SERVERS)


def build(cwd: Path, *args: str) -> list[dict]:
    """`gymctl build -t separated` as a user runs it (one image build at a time on this engine)."""
    from gymctl.docker.base_image import NEMO_GYM_BASE, NEMO_GYM_SUITE, base_image_exists, build_base_image

    with open("/tmp/gymctl-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not base_image_exists(NEMO_GYM_BASE):
            build_base_image(NEMO_GYM_BASE, suite=NEMO_GYM_SUITE)
        r = gymctl("build", "-t", "separated", "--image-prefix", PREFIX, "--json", *args, *POLICY, cwd=cwd, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="session")
def nemo_gym_images(checkout: Path) -> list[dict]:
    t0 = time.monotonic()
    built = build(checkout, *CONFIGS)
    print(f"\nNeMo Gym images: {time.monotonic() - t0:.0f} s; " + ", ".join(f"{b['image']} {b['size_bytes'] / 1e6:.0f} MB" for b in built))
    return built


class Stack:
    def __init__(self, cwd: Path, args: list[str]) -> None:
        import uuid

        self.cwd, self.project = cwd, f"gymctl-it-ng-{uuid.uuid4().hex[:8]}"
        ports = free_ports(5)
        self.head_port, self.ports = ports[0], ports[1:]
        self.args = [*args, "--set", f"head_server.port={self.head_port}"]
        self.token = f"i13-token-{uuid.uuid4().hex}"  # gymctl up puts a token on the stack; the test's own, to call the head with

    @property
    def head_url(self) -> str:
        return f"http://127.0.0.1:{self.head_port}"

    def gymctl(self, verb: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return gymctl(verb, "-p", self.project, *args, env={"GYMCTL_AUTH_TOKEN": self.token, **(env or {})}, cwd=self.cwd, timeout=timeout)

    def up(self, env: dict[str, str] | None = None) -> None:
        r = self.gymctl("up", "-t", "separated", "--image-prefix", PREFIX, "--timeout", "300", *self.args, *POLICY, env=env)
        assert r.returncode == 0, r.stderr[-4000:]
        # The LLM double, on the stack's own network under the name the config gives it (bench/upstream_stub.py, stdlib + aiohttp).
        code = (REPO / "bench/upstream_stub.py").read_text()
        subprocess.run(["docker", "run", "-d", "--name", f"{self.project}-stub", "--network", f"{self.project}_gymctl", "--network-alias", "stub",
                        "--label", f"io.gymctl.project={self.project}", "--cap-drop", "ALL", "--entrypoint", "python3", "gymctl/head:latest",
                        "-c", code, "--host", "0.0.0.0", "--port", str(STUB_PORT)], check=True, capture_output=True, timeout=60)

    def instances(self) -> dict[str, dict]:
        code, items = http_json(self.head_url + "/server_instances", headers={"Authorization": f"Bearer {self.token}"})
        assert code == 200 and isinstance(items, list), (code, items)
        return {i["process_name"]: i for i in items}

    def container(self, instance: str) -> str:
        return subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.gymctl.project={self.project}", "--filter",
                               f"label=io.gymctl.instance={instance}"], capture_output=True, text=True, check=True).stdout.strip()

    def down(self) -> dict[str, list[str]]:
        from gymctl.docker.cli import engine_client
        from gymctl.docker.state import labelled

        subprocess.run(["docker", "rm", "-f", f"{self.project}-stub"], capture_output=True, timeout=60)  # ours: it holds the network
        r = self.gymctl("down")
        assert r.returncode == 0, r.stderr[-3000:]
        return labelled(engine_client(), self.project)


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for st in made:
        subprocess.run(["docker", "rm", "-f", f"{st.project}-stub"], capture_output=True, timeout=60)
        remove_project(st.project)


def collect(st: Stack, agent: str, data: Path, out: Path, repeats: int) -> list[dict]:
    r = gymctl("collect", "--head", st.head_url, "--agent", agent, "--input", str(data), "--output", str(out), "--num-repeats", str(repeats),
               "--concurrency", "16", cwd=st.cwd, timeout=600, env={"GYMCTL_AUTH_TOKEN": st.token})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_three_nemo_gym_environments_as_containers_collect_with_their_own_rewards(checkout, nemo_gym_images, stacks, tmp_path):
    assert {b["image"].split(":")[0] for b in nemo_gym_images} >= {f"{PREFIX}/nemo-gym-{i}" for i in ("simple_agent", "openai_model", *ENVS)}
    st = Stack(checkout, CONFIGS)
    for i, (_, agent) in enumerate(ENVS.values()):
        st.args += ["--set", f"{agent}.responses_api_agents.simple_agent.port={st.ports[i]}"]
    stacks.append(st)
    st.up()

    status = st.gymctl("status", "--head", st.head_url, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    items = st.instances()
    assert len(items) == 10 and all(i["status"] == "healthy" for i in items.values())  # 3 resources servers, 3 agents, their 3 relays, the model
    # Each registered pid is the NeMo Gym server itself, in its container, on its own venv's interpreter and its own app.py.
    for name, rel in (("lc_equivalence_rule", "resources_servers/equivalence_rule"), ("policy_model", "responses_api_models/openai_model")):
        cmdline = subprocess.run(["docker", "exec", st.container(name), "cat", f"/proc/{items[name]['pid']}/cmdline"],
                                 capture_output=True, text=True, check=True).stdout.split("\0")
        assert cmdline[:2] == [f"/app/servers/{rel}/.venv/bin/python", f"/app/servers/{rel}/app.py"]
        user = subprocess.run(["docker", "inspect", "-f", "{{.Config.User}} {{.HostConfig.CapDrop}}", st.container(name)],
                              capture_output=True, text=True, check=True).stdout.split()
        assert user[0] not in ("", "0", "root") and user[1] == "[ALL]"

    rewards = {}
    for env, (_, agent) in ENVS.items():
        rows = collect(st, agent, checkout / "resources_servers" / env / "data/example.jsonl", tmp_path / f"{env}.jsonl", repeats=20)
        assert len(rows) == 100
        rewards[env] = collections.Counter(r["reward"] for r in rows)
    # What each environment's own verify gives for the stub's answers (it calls get_weather, then says a short line).
    assert rewards == {"example_single_tool_call": {1.0: 100}, "equivalence_rule": {0.0: 100}, "xlam_fc": {0.0: 100}}

    assert st.down() == {"containers": [], "networks": [], "volumes": []}


def test_nemo_gyms_agent_calls_gymctls_resources_server_on_the_private_network_without_the_token(stacks, tmp_path):
    """Only simple_agent and openai_model are NeMo Gym's: example_single_tool_call is gymctl's own (shipped) server."""
    if docker_unusable():
        pytest.skip(f"needs Docker: {docker_unusable()}")
    nemo_gym_bin("ng_run")
    from bench.nemo_gym_servers import make_checkout

    root = make_checkout(tmp_path / "co", SERVERS[:2])
    build(root, *SEED)  # NeMo Gym's two are up to date from the other test's build (same code); gymctl's resources server image
    st = Stack(root, SEED)
    res = "example_single_tool_call.resources_servers.example_single_tool_call"
    st.args += ["--set", f"example_single_tool_call_simple_agent.responses_api_agents.simple_agent.port={st.ports[0]}",
                "--set", f"{res}.port={st.ports[1]}", "--set", "gymctl.instances.example_single_tool_call.publish=true"]
    stacks.append(st)
    token = st.token
    st.up()

    row = json.loads((REPO / "servers/resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[0])
    code, body = http_json(f"http://127.0.0.1:{st.ports[0]}/run", row, timeout=60)  # NeMo Gym's agent: it sends gymctl's server no token
    assert code == 200 and body["reward"] == 1.0, body  # type: ignore[index]
    # From outside the stack's network (this machine, through the published port) the token is still needed.
    resources = f"http://127.0.0.1:{st.ports[1]}/seed_session"
    assert http_json(resources, {})[0] == 401
    assert http_json(resources, {}, headers={"Authorization": f"Bearer {token}"})[0] == 200

    assert st.down() == {"containers": [], "networks": [], "volumes": []}
