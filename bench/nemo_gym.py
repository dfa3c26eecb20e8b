"""NeMo Gym 0.7.0 beside gymctl: install it into its own venv when missing, run `ng_run` against the stub, stop it.

Install (once, minutes): `scripts/install_nemo_gym.sh`, which follows ../shared/NEMO_GYM.md — a
Python 3.13 venv at ~/.cache/gymctl-bench/nemo-gym-0.7.0 (`--ignore-requires-python`) and the
per-server uv venvs that `ng_run` looks for under its working directory (`work/<type>/<impl>/.venv`),
so `ng_run +skip_venv_if_present=true` builds nothing at start.

Run: `ng_run` from that working directory with the head on a free port (never 11000), Ray kept on
loopback and without usage stats, SIGINT reset in the child (so Ctrl-C stops it cleanly); stopped
by SIGINT to its PID, then its process group and every process it started (Ray's included).
`python -m bench.nemo_gym` starts it against a stub, measures one round and stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.systems import EXAMPLE_CONFIGS, REPO, System

VENV = Path(os.environ.get("GYMCTL_NEMO_GYM_VENV", Path.home() / ".cache/gymctl-bench/nemo-gym-0.7.0"))
WORK_DIR = VENV / "work"
INSTALLER = REPO / "scripts/install_nemo_gym.sh"


def installed() -> bool:
    return (VENV / ".complete").exists() and (VENV / "bin/ng_run").exists()


def ensure_installed(log_path: Path | None = None, timeout: float = 1800.0) -> None:
    """Install NeMo Gym 0.7.0 when missing (idempotent and safe to run concurrently: the installer locks)."""
    if installed():
        return
    print(f"bench: installing NeMo Gym 0.7.0 into {VENV} (a few minutes) ...", file=sys.stderr, flush=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 -- closed in the finally below
    try:
        proc = subprocess.run(["bash", str(INSTALLER)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "GYMCTL_NEMO_GYM_VENV": str(VENV)}, timeout=timeout)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    if proc.returncode != 0 or not installed():
        raise RuntimeError(f"installing NeMo Gym 0.7.0 failed (exit {proc.returncode}); see {log_path}")


class NemoGym(System):
    """`ng_run` of NeMo Gym 0.7.0 (orchestrator + one process per server + a local Ray cluster)."""

    name = "nemo_gym"
    ready_timeout_s = 180.0
    stop_timeout_s = 45.0

    def available(self) -> str | None:
        try:
            ensure_installed(self.log_dir / "nemo_gym_install.log")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            return str(e)
        return None

    def cwd(self) -> Path:
        return WORK_DIR

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        return env

    def argv(self, stub_url: str, head_port: int) -> list[str]:
        return [str(VENV / "bin/ng_run"), f"+config_paths=[{','.join(EXAMPLE_CONFIGS)}]",
                f"+policy_base_url={stub_url}/v1", "+policy_api_key=dummy", "+policy_model_name=stub",
                "+skip_venv_if_present=true", f"+head_server.port={head_port}"]


if __name__ == "__main__":
    import json
    import tempfile

    from bench.measure import measure_system
    from bench.upstream_stub import StubProcess

    with StubProcess() as stub, tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure_system(NemoGym(Path(tmp)), stub.url), indent=1))
