"""The systems under test, each started as a user would (CLI subprocess), found through its head, and stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.procs import free_port, http_get_json, kill_tree, log_tail, reset_sigint, stop_tree, tree, wait_ready

REPO = Path(__file__).resolve().parent.parent
AGENT = "example_single_tool_call_simple_agent"
EXAMPLE_CONFIGS = (
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    "responses_api_models/openai_model/configs/openai_model.yaml",
)


class SystemFailed(RuntimeError):
    """A system did not start or serve; carries the tail of its log."""

    def __init__(self, system: str, what: str, log_tail: str = "") -> None:
        super().__init__(f"{system}: {what}")
        self.system, self.what, self.log_tail = system, what, log_tail


class System:
    """A deployment of the example environment, started by one subprocess whose head answers /health."""

    name = "system"
    ready_timeout_s = 60.0
    stop_timeout_s = 30.0

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.head_url = ""
        self.known: list[psutil.Process] = []

    # -- what each system says -------------------------------------------------------------------
    def argv(self, stub_url: str, head_port: int) -> list[str]:
        raise NotImplementedError

    def cwd(self) -> Path:
        return REPO

    def env(self) -> dict[str, str]:
        # This machine sets PYTHONDONTWRITEBYTECODE=1; a user's system caches bytecode, and without the cache
        # every start recompiles each imported module (thousands for NeMo Gym's uv venvs, built without .pyc).
        return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def available(self) -> str | None:
        """None when the system can be started here, else why not."""
        return None

    # -- lifecycle --------------------------------------------------------------------------------
    def _prepare_start(self) -> int:
        """Refuse when the system cannot run here; pick the head's free port and the log folder."""
        why_not = self.available()
        if why_not:
            raise SystemFailed(self.name, why_not)
        port = free_port()
        self.head_url = f"http://127.0.0.1:{port}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return port

    def start(self, stub_url: str) -> float:
        """Start it; returns seconds from exec to a 200 from the head's /health."""
        port = self._prepare_start()
        with open(self.log_path, "ab") as log:  # the child holds its own copy of the descriptor
            log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(self.argv(stub_url, port))}\n".encode())
            log.flush()
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.argv(stub_url, port), cwd=self.cwd(), env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=reset_sigint)
        try:
            ready = wait_ready(self.head_url + "/health", self.proc, self.ready_timeout_s)
        except (RuntimeError, TimeoutError) as e:
            self.kill()
            raise SystemFailed(self.name, f"head not ready: {e}", log_tail(self.log_path)) from None
        self.known = self.processes()
        return ready - t0

    def agent_run_url(self) -> str:
        code, items = http_get_json(self.head_url + "/server_instances")
        for item in items if isinstance(items, list) else []:
            if item.get("process_name") == AGENT:
                return (item.get("host_url") or item["url"]).rstrip("/") + "/run"
        raise SystemFailed(self.name, f"{AGENT} not in {self.head_url}/server_instances (HTTP {code})",
                           log_tail(self.log_path))

    def processes(self) -> list[psutil.Process]:
        """Everything this system runs now (for PSS)."""
        found = {p.pid: p for p in (tree(self.proc.pid) if self.proc else [])}
        for p in self.known:
            found.setdefault(p.pid, p)
        return [p for p in found.values() if p.is_running()]

    def stop(self) -> tuple[float, int]:
        """Stop it as a user would (Ctrl-C); returns (shutdown seconds, processes left that had to be killed)."""
        assert self.proc is not None
        self.known = list({p.pid: p for p in [*self.known, *self.processes()]}.values())
        result = stop_tree(self.proc, self.known, timeout=self.stop_timeout_s)
        self.proc = None
        return result

    def kill(self) -> None:
        """Emergency stop (a failure or Ctrl-C of the harness): nothing of it may stay running."""
        if self.proc is not None:
            kill_tree(self.proc, self.known)
            self.proc = None


class GymctlAllInOne(System):
    """`gymctl run`: head and every server in one process."""

    name = "gymctl_all_in_one"

    def argv(self, stub_url: str, head_port: int) -> list[str]:
        configs = [a for c in EXAMPLE_CONFIGS for a in ("--config", c)]
        return [sys.executable, "-m", "gymctl", "run", *configs, *self.topology_args(),
                "--set", f"head_server.port={head_port}", "--set", f"policy_base_url={stub_url}/v1",
                "--set", "policy_api_key=dummy", "--set", "policy_model_name=stub"]

    def topology_args(self) -> list[str]:
        return []


class GymctlSeparated(GymctlAllInOne):
    """`gymctl run --topology separated`: the head plus one `gymctl serve` process per instance."""

    name = "gymctl_separated"

    def topology_args(self) -> list[str]:
        return ["--topology", "separated"]

    def available(self) -> str | None:
        if not (REPO / "gymctl/runtime/separated.py").exists():
            return "gymctl run --topology separated is not built yet (gymctl/runtime/separated.py missing)"
        return None


class GymctlContainers(System):
    """`gymctl up --topology separated --wait` / `gymctl down`: the head plus one container per server.

    The containers reach the upstream stub inside their own Compose network: a stub container (the
    head image runs bench/upstream_stub.py, mounted) joins the stack's network as `bench-stub`, so no
    traffic leaves the machine's container networks and the host's loopback.
    """

    name = "gymctl_containers"
    ready_timeout_s = 300.0
    STUB_ALIAS = "bench-stub"

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.project = f"gymctl-bench-{os.getpid()}"
        self.stub_container = f"{self.project}-stub"

    def available(self) -> str | None:
        if shutil.which("docker") is None:
            return "docker is not installed"
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            return "the Docker engine does not answer (docker info failed)"
        if subprocess.run([sys.executable, "-m", "gymctl", "up", "--help"], capture_output=True, cwd=REPO).returncode:
            return "gymctl up is not built yet"
        return None

    def argv(self, stub_url: str, head_port: int) -> list[str]:
        configs = [a for c in EXAMPLE_CONFIGS for a in ("--config", c)]
        # --no-auth: the stack as the other systems run (a local runtime's calls and NeMo Gym's are open); `gymctl up`
        # generates a token by default, which the neutral client does not send (its /server_instances answered 401)
        return [sys.executable, "-m", "gymctl", "up", "--topology", "separated", "--wait", "--no-auth", "--project", self.project,
                *configs, "--set", f"head_server.port={head_port}",
                "--set", f"policy_base_url=http://{self.STUB_ALIAS}:8000/v1",
                # an env reference with a default, not a literal: a literal key becomes a secret variable
                # that only the model container gets (each container resolves only what it serves)
                "--set", "policy_api_key=${oc.env:BENCH_POLICY_API_KEY,dummy}", "--set", "policy_model_name=stub"]

    def start(self, stub_url: str) -> float:
        """`gymctl up --wait` returns once the stack is up (detached); then the head must answer /health."""
        port = self._prepare_start()
        configs = [a for c in EXAMPLE_CONFIGS for a in ("--config", c)]
        with open(self.log_path, "ab") as log:  # images are built before the clock starts (cached when unchanged)
            built = subprocess.run(["flock", "/tmp/gymctl-build.lock",  # one build at a time on a shared machine
                                    sys.executable, "-m", "gymctl", "build", "--topology", "separated", "--quiet",
                                    *configs], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=900)
        if built.returncode != 0:
            raise SystemFailed(self.name, f"gymctl build exited {built.returncode}", log_tail(self.log_path))
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            try:
                up = subprocess.run(self.argv(stub_url, port), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=self.ready_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise SystemFailed(self.name, "gymctl up --wait timed out", log_tail(self.log_path)) from None
        if up.returncode != 0:
            self.kill()
            raise SystemFailed(self.name, f"gymctl up exited {up.returncode}", log_tail(self.log_path))
        try:
            ready = wait_ready(self.head_url + "/health", None, 60)
        except TimeoutError as e:
            self.kill()
            raise SystemFailed(self.name, f"head not ready: {e}", log_tail(self.log_path)) from None
        self._start_stub_container()
        return ready - t0

    def _start_stub_container(self) -> None:
        nets = _docker("network", "ls", "--filter", f"label=com.docker.compose.project={self.project}",
                       "--format", "{{.Name}}").split()
        image = _docker("inspect", "-f", "{{.Config.Image}}", *self._container_ids()[:1]).strip()
        if not nets or not image:
            self.kill()
            raise SystemFailed(self.name, f"no network/image found for project {self.project}", log_tail(self.log_path))
        run = subprocess.run(["docker", "run", "-d", "--rm", "--name", self.stub_container, "--network", nets[0],
                              "--network-alias", self.STUB_ALIAS,
                              "-v", f"{REPO / 'bench'}:/bench:ro", "--entrypoint", "python", image,
                              "/bench/upstream_stub.py", "--host", "0.0.0.0", "--port", "8000"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            self.kill()
            raise SystemFailed(self.name, f"stub container did not start: {run.stderr.strip()}", log_tail(self.log_path))
        for _ in range(100):
            if "listening" in subprocess.run(["docker", "logs", self.stub_container], capture_output=True,
                                             text=True).stdout:
                return
            time.sleep(0.1)
        self.kill()
        raise SystemFailed(self.name, "stub container did not listen", log_tail(self.log_path))

    def _container_ids(self) -> list[str]:
        return _docker("ps", "-q", "--filter", f"label=io.gymctl.project={self.project}").split()

    def processes(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for cid in self._container_ids():
            pid = _docker("inspect", "-f", "{{.State.Pid}}", cid).strip()
            if pid.isdigit() and int(pid) > 0:
                procs.extend(tree(int(pid)))
        return procs

    def stop(self) -> tuple[float, int]:
        subprocess.run(["docker", "rm", "-f", self.stub_container], capture_output=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            subprocess.run([sys.executable, "-m", "gymctl", "down", "--project", self.project], cwd=REPO,
                           stdout=log, stderr=subprocess.STDOUT, timeout=120)
        shutdown = time.monotonic() - t0
        left = _docker("ps", "-aq", "--filter", f"label=io.gymctl.project={self.project}").split()
        self.kill()
        return shutdown, len(left)

    def kill(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.stub_container], capture_output=True)
        left = _docker("ps", "-aq", "--filter", f"label=io.gymctl.project={self.project}").split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        nets = _docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.project}").split()
        if nets:
            subprocess.run(["docker", "network", "rm", *nets], capture_output=True)


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True).stdout
