"""NeMo Gym servers as containers, without Docker: their images, the rendered separated stack (golden), the peers they
are told, the private-network trust of the gymctl servers they call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gymctl.compose.images import image_units
from gymctl.compose.render import render
from gymctl.config.model import load_config
from gymctl.config.nemo_gym import called_by_nemo_gym
from gymctl.docker.nemo_gym_context import server_requirements
from gymctl.errors import ConfigError
from gymctl.runtime.nemo_gym import peer_addresses
from gymctl.server.trusted_networks import attached_networks, trusted_networks
from tests.unit.test_compose import check_golden
from tests.unit.test_nemo_gym_servers_config import make


def stack(tmp_path: Path):
    return load_config([str(make(tmp_path) / "c.yaml")], cwd=tmp_path)


def test_rendered_separated_stack_of_nemo_gym_servers_matches_golden(tmp_path):
    check_golden("nemo_gym_separated.yml", render(stack(tmp_path), "separated").compose_yaml)


def test_each_nemo_gym_server_gets_its_own_image_told_from_gymctls(tmp_path):
    cfg = stack(tmp_path)
    units = {u.name: u for u in image_units(cfg, "separated")}
    assert units["resources_servers/nemo_res"].runtime == "nemo_gym" and units["resources_servers/nemo_res"].image == "gymctl/nemo-gym-nemo_res:latest"
    assert units["responses_api_models/scripted_model"].runtime == "gymctl" and units["responses_api_models/scripted_model"].image == "gymctl/scripted_model:latest"
    assert "all-in-one" not in {u.name for u in image_units(cfg)}  # both topologies: only what can hold a NeMo Gym server
    with pytest.raises(ConfigError, match=r"NeMo Gym servers run in images of their own.*--topology separated"):
        image_units(cfg, "all-in-one")


def test_nemo_gym_servers_are_told_their_peers_and_the_gymctl_servers_they_call_trust_the_private_network(tmp_path):
    services = yaml.safe_load(render(stack(tmp_path), "separated").compose_yaml)["services"]
    env = {name: dict(e.split("=", 1) for e in s["environment"] if "=" in e) for name, s in services.items()}
    peers = "env_res=env_res:8000,env_agent=env_agent:8000,policy_model=policy_model:8000"
    assert env["env_res"]["GYMCTL_NEMO_GYM_PEERS"] == env["env_agent"]["GYMCTL_NEMO_GYM_PEERS"] == peers
    assert env["policy_model"]["GYMCTL_AUTH_TRUSTED_NETWORKS"] == "private"  # env_agent (NeMo Gym's) calls it without a token
    assert "GYMCTL_AUTH_TRUSTED_NETWORKS" not in env["head"] and "GYMCTL_NEMO_GYM_PEERS" not in env["policy_model"]
    assert called_by_nemo_gym(load_config([str(tmp_path / "c.yaml")], cwd=tmp_path)) == ["policy_model"]
    assert peer_addresses(peers)["policy_model"] == ("policy_model", 8000)
    with pytest.raises(ConfigError, match=r"GYMCTL_NEMO_GYM_PEERS: 'policy_model=policy_model' is not name=host:port"):
        peer_addresses("policy_model=policy_model")


def test_a_servers_requirements_beyond_nemo_gym_itself(tmp_path):
    (tmp_path / "requirements.txt").write_text("-e nemo-gym[dev] @ ../../\n# a comment\nsympy>=1.12  # math\n")
    assert server_requirements(tmp_path) == ["sympy>=1.12"]
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "s"\ndependencies = ["nemo_gym", "math-verify==0.8"]\n')
    assert server_requirements(tmp_path) == ["math-verify==0.8"]


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_private_network_is_the_containers_subnet_less_its_gateway(tmp_path):
    (tmp_path / "route").write_text(ROUTES)
    trusted = attached_networks(tmp_path / "route")
    assert trusted.trusts("172.18.0.5") and trusted.trusts("::ffff:172.18.0.7")
    assert not trusted.trusts("172.18.0.1")  # the gateway: the host and every published port come through it
    assert not trusted.trusts("127.0.0.1") and not trusted.trusts("10.0.0.5") and not trusted.trusts("not-an-ip")
    assert trusted_networks("10.1.0.0/16").trusts("10.1.2.3")  # type: ignore[union-attr]
    assert trusted_networks("") is None
    with pytest.raises(ConfigError, match="GYMCTL_AUTH_TRUSTED_NETWORKS: 'ten' is not a network"):
        trusted_networks("ten")


def test_a_server_with_a_token_answers_its_private_network_without_it_and_everyone_else_401(tmp_path):
    import asyncio

    from gymctl.server.auth import BearerAuthMiddleware
    from gymctl.server.trusted_networks import TrustedNetworks

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    (tmp_path / "route").write_text(ROUTES)
    guarded = BearerAuthMiddleware(app, "s3cret", trusted=attached_networks(tmp_path / "route"))
    unguarded = BearerAuthMiddleware(app, "s3cret", trusted=TrustedNetworks(()))

    def status(mw, client: str, headers=()) -> int:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "path": "/run", "client": (client, 40000), "headers": list(headers)}
        asyncio.run(mw(scope, None, send))
        return sent[0]["status"]

    assert status(guarded, "172.18.0.4") == 200  # a NeMo Gym agent on the stack's network, no token
    assert status(guarded, "172.18.0.1") == 401  # the host, through a published port (the gateway)
    assert status(guarded, "192.0.2.7") == 401
    assert status(guarded, "192.0.2.7", [(b"authorization", b"Bearer s3cret")]) == 200
    assert status(unguarded, "172.18.0.4") == 401


def test_multi_host_nemo_gym_servers_get_their_peers_routable_addresses(tmp_path, monkeypatch):
    """env_res on worker (10.0.0.2), env_agent and gymctl's policy_model with the head on coordinator (10.0.0.1): each NeMo Gym
    server is told a peer on its own host by service name, one elsewhere at that host's address and published port, and that
    reaches NEMO_GYM_CONFIG_DICT; policy_model (called by NeMo Gym's env_agent without a token) trusts its stack's network and worker."""
    from gymctl.compose.multihost import build_host_stacks
    from gymctl.runtime.nemo_gym import config_dict

    make(tmp_path)
    nodes = ["+gymctl.nodes.coordinator.address=10.0.0.1", "+gymctl.nodes.worker.address=10.0.0.2", "+gymctl.instances.env_res.node=worker",
             "head_server.host=10.0.0.1"]
    cfg = load_config([str(tmp_path / "c.yaml")], nodes, cwd=tmp_path)
    stacks = build_host_stacks(cfg)
    env = {(h, s.instance): s.environment for h, st in stacks.items() for s in st.services}
    ports = {i: int(env[(h, i)]["GYMCTL_PORT"]) for h, i in env if i != "head"}
    assert peer_addresses(env[("worker", "env_res")]["GYMCTL_NEMO_GYM_PEERS"]) == {
        "env_res": ("env_res", ports["env_res"]), "env_agent": ("10.0.0.1", ports["env_agent"]), "policy_model": ("10.0.0.1", ports["policy_model"])}
    assert peer_addresses(env[("coordinator", "env_agent")]["GYMCTL_NEMO_GYM_PEERS"]) == {
        "env_res": ("10.0.0.2", ports["env_res"]), "env_agent": ("env_agent", ports["env_agent"]), "policy_model": ("policy_model", ports["policy_model"])}
    assert env[("coordinator", "policy_model")]["GYMCTL_AUTH_TRUSTED_NETWORKS"] == "private,10.0.0.2/32"
    trusted = trusted_networks("private,10.0.0.2/32")
    assert trusted is not None and trusted.trusts("10.0.0.2") and not trusted.trusts("10.0.0.3")
    # What the agent's container does with it (gymctl serve env_agent): its NEMO_GYM_CONFIG_DICT names env_res on the worker.
    served = load_config([str(tmp_path / "c.yaml")], nodes, cwd=tmp_path)
    addresses = peer_addresses(env[("coordinator", "env_agent")]["GYMCTL_NEMO_GYM_PEERS"])
    tree = config_dict(served, "env_agent", addresses, ("10.0.0.1", served.head_port))
    res = tree["env_res"]["resources_servers"]["nemo_res"]
    assert (res["host"], res["port"]) == ("10.0.0.2", ports["env_res"]) and tree["head_server"]["host"] == "10.0.0.1"
