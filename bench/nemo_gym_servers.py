"""NeMo Gym's own servers (example_single_tool_call, simple_agent, openai_model), unmodified: under gymctl vs under `ng_run`.

Both run the same server code on the same per-server venvs (scripts/install_nemo_gym.sh): `ng_run` from its
working directory (orchestrator, a local Ray cluster, per-start venv checks), gymctl from a directory laid out as a
NeMo Gym checkout (`gymctl run --topology separated`: each server's own interpreter on its app.py, registered by
gymctl; no Ray, as these servers declare ray_enabled = False). Reported: start to the head's /health 200, rollouts/s
through the agent's /run, and the ratios measured in the same run.

    python -m bench.nemo_gym_servers [--rounds 3] [--requests 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.measure import measure_system
from bench.nemo_gym import VENV, WORK_DIR, NemoGym, ensure_installed
from bench.systems import EXAMPLE_CONFIGS, System

SERVERS = ("resources_servers/example_single_tool_call", "responses_api_agents/simple_agent", "responses_api_models/openai_model",
           "environment_servers/legacy_agent")


def package_servers() -> Path:
    """Where the nemo-gym 0.7.0 package keeps its servers (its site-packages)."""
    found = sorted(VENV.glob("lib/python3.*/site-packages"))
    if not found:
        raise RuntimeError(f"NeMo Gym 0.7.0 is not installed at {VENV}; run scripts/install_nemo_gym.sh")
    return found[-1]


def make_checkout(root: Path, servers: tuple[str, ...] | list[str] = SERVERS, venv_of: dict[str, str] | None = None) -> Path:
    """A directory laid out as a NeMo Gym checkout: the package's own server code, each with its `.venv` (the install's)."""
    site = package_servers()
    for rel in servers:
        shutil.copytree(site / rel, root / rel, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        (root / rel / ".venv").symlink_to(WORK_DIR / (venv_of or {}).get(rel, rel) / ".venv", target_is_directory=True)
    return root


class GymctlNemoGymServers(System):
    """`gymctl run --topology separated` on NeMo Gym's own servers, from a NeMo Gym checkout."""

    name = "gymctl_separated_nemo_gym_servers"
    ready_timeout_s = 180.0

    def __init__(self, log_dir: Path, checkout: Path) -> None:
        super().__init__(log_dir)
        self.checkout = checkout

    def cwd(self) -> Path:
        return self.checkout

    def argv(self, stub_url: str, head_port: int) -> list[str]:
        configs = [a for c in EXAMPLE_CONFIGS for a in ("--config", c)]
        return [sys.executable, "-m", "gymctl", "run", "--topology", "separated", *configs,
                "--set", f"head_server.port={head_port}", "--set", f"policy_base_url={stub_url}/v1",
                "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nemo_gym_servers", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating starts of each system")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)

    from bench.upstream_stub import StubProcess

    ensure_installed()
    with StubProcess() as stub, tempfile.TemporaryDirectory(prefix="i13-bench-") as tmp:
        systems: list[System] = [GymctlNemoGymServers(Path(tmp) / "logs", make_checkout(Path(tmp) / "checkout")), NemoGym(Path(tmp) / "logs")]
        rounds: dict[str, list[dict]] = {s.name: [] for s in systems}
        for i in range(args.rounds):
            for system in systems if i % 2 == 0 else reversed(systems):
                result = measure_system(system, stub.url, requests=args.requests, concurrency=args.concurrency)
                rounds[system.name].append(result)
                print(f"round {i + 1} {system.name}: ready {result['ready_s']:.1f} s, {result['rollouts_per_s']:.1f} rollouts/s, "
                      f"{result['processes']} processes, {result['pss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("ready_s", "rollouts_per_s", "pss_mib", "processes")} for name, rs in rounds.items()}
    ours, theirs = med[systems[0].name], med[systems[1].name]
    print(json.dumps({
        "medians": med,
        "ready_ratio": round(ours["ready_s"] / theirs["ready_s"], 3),  # target <= 1/3
        "throughput_ratio": round(ours["rollouts_per_s"] / theirs["rollouts_per_s"], 2),
        "rounds": rounds,
    }, indent=1))


if __name__ == "__main__":
    main()
