"""The separated runtime: the head and one `gymctl serve INSTANCE` process per instance, supervised until stopped.

Children start by fork of this process once everything serving imports is loaded (each calls
`gymctl.runtime.serve.serve_one` on the config already parsed here: ~0.2 s of CPU instead of ~1.5 s,
and shared pages), before any event loop or thread exists; a restart (loop running) execs
`python -m gymctl serve INSTANCE ...` with the same arguments. GYMCTL_SEPARATED_START=exec makes the
first start exec too. Either way a child reports its URL on its ready pipe (gymctl.runtime.children).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gymctl.config.model import GymConfig
from gymctl.config.workers import workers_of
from gymctl.errors import GymctlError, UsageError
from gymctl.head.registration_token import new_registration_token
from gymctl.hosts import is_loopback
from gymctl.runtime.addresses import is_own_address
from gymctl.runtime.children import Child, OutputSink
from gymctl.runtime.nemo_gym_group import nemo_gym_children
from gymctl.runtime.supervisor import ReadyHook, RestartPolicy, Supervisor
from gymctl.server.serving import bind_socket, free_port
from gymctl.server.settings import ServerSettings

RESTART_POLICIES = ("no", "on-failure")
# A separated child gets its own port: these would pin every child to one address.
_CHILD_ENV_DROP = ("GYMCTL_PORT", "GYMCTL_HOST_URL", "GYMCTL_CONFIG_FILE", "GYMCTL_READY_FD")

ConfigArgs = tuple[list[str] | None, list[str] | None, list[str] | None]


def check_restart(restart: str) -> RestartPolicy:
    if restart not in RESTART_POLICIES:
        raise UsageError(f"--restart {restart!r} is not known; choose one of: {', '.join(RESTART_POLICIES)}")
    return restart  # type: ignore[return-value]


def serve_args(name: str, config_args: ConfigArgs, log_level: str, secret_env: dict[str, str] | None = None) -> list[str]:
    """`serve NAME` with the run's own --config / --set / +overrides, so the child loads the same config.

    A secret given on the command line (`--set policy_api_key=...`, a URL with a password) does not travel on the
    child's: it goes into `secret_env` (the child's environment) and the argument becomes `${oc.env:VAR}`.
    """
    config, sets, overrides = config_args
    hide = (lambda items: hide_secrets(items, secret_env)) if secret_env is not None else list
    args = ["serve", name, *hide(overrides or [])]
    for path in config or []:
        args += ["--config", path]
    for item in hide(sets or []):
        args += ["--set", item]
    return [*args, "--log-level", log_level]


def hide_secrets(items: list[str], secret_env: dict[str, str]) -> list[str]:
    """`key=value` items with each secret value replaced by `${oc.env:GYMCTL_SECRET_N}` (the value put in `secret_env`)."""
    from gymctl.config.redact import is_secret_name
    from gymctl.server.credentials import redact_text

    out = []
    for item in items:
        key, eq, value = item.partition("=")
        leaf = key.lstrip("+~").rsplit(".", 1)[-1]
        if eq and value and "${" not in value and (is_secret_name(leaf) or redact_text(value) != value):
            var = next((k for k, v in secret_env.items() if v == value), f"GYMCTL_SECRET_{len(secret_env)}")
            secret_env[var] = value
            item = f"{key}=${{oc.env:{var}}}"
        out.append(item)
    return out


def child_env(head_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    env["GYMCTL_HEAD_URL"] = head_url  # register with our head, not one named in the calling shell
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _serve_here(cfg: GymConfig, name: str, env: dict[str, str], log_level: str) -> Callable[[int], int]:
    """What a forked child runs: serve_one on the config parsed here, in the child's environment."""

    def run(ready_fd: int) -> int:
        from gymctl.runtime.loop import run as run_loop
        from gymctl.runtime.serve import serve_one

        os.environ.clear()
        os.environ.update(env)
        settings = ServerSettings.from_env(log_level=log_level, ready_fd=ready_fd)  # the rest from the child's environment
        try:
            run_loop(serve_one(cfg, name, settings))
        except GymctlError as e:  # as `gymctl serve` reports it: the supervisor quotes this line
            print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            return e.exit_code
        except KeyboardInterrupt:
            return 130
        return 0

    return run


def _preload() -> bool:
    """Import what every `gymctl serve` needs once, here, so forked children start warm; False if forking is unsafe."""
    import importlib
    import threading

    for module in ("gymctl.runtime.inprocess", "gymctl.runtime.serve", "uvloop"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    return threading.active_count() == 1 and hasattr(os, "fork")


def process_started_at() -> float:
    """When this process started, on the monotonic clock (Linux /proc), so "ready in" counts Python's start-up too."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - max(age, 0.0)
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def check_port_free(host: str, port: int, owner: str) -> None:
    """Raise PortInUseError now rather than let a foreign server on that port take our registrations."""
    bind_socket(host, port, owner).close()


def build_children(cfg: GymConfig, config_args: ConfigArgs, *, log_dir: str | None, log_level: str, sink: OutputSink,
                   with_head: bool = True, held: dict[str, socket.socket] | None = None) -> list[Child]:
    """The head first (unless it lives on another host), then one child per instance that is not an alias (an agent
    serves its aliases), and one more per extra replica (`gymctl.instances.NAME.replicas`: children `NAME#2` ...)."""
    env = child_env(cfg.head_url)
    if with_head and not env.get("GYMCTL_AUTH_TOKEN") and not env.get("GYMCTL_REGISTRATION_TOKEN") and is_loopback(cfg.head_host):
        env["GYMCTL_REGISTRATION_TOKEN"] = new_registration_token()  # the head child and every instance: one token
    logs = Path(log_dir) if log_dir else None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    nemo = nemo_gym_children(cfg, sink=sink, log_dir=log_dir,  # NeMo Gym's own servers, on their own interpreters: gymctl registers them
                             token=env.get("GYMCTL_AUTH_TOKEN") or env.get("GYMCTL_REGISTRATION_TOKEN"))
    for label, name, child_vars in child_labels(cfg, with_head=with_head, held={} if held is None else held):
        if name in nemo:
            children.append(nemo[name])
            continue
        if nemo and label == name and name in cfg.instances:  # its port was chosen for the NeMo Gym servers' config: keep it across restarts
            child_vars = {"GYMCTL_PORT": str(cfg.instances[name].port), **child_vars}
        secrets: dict[str, str] = {}  # never on a command line (ps, /proc/PID/cmdline): in the child's environment
        argv = [sys.executable, "-m", "gymctl", *serve_args(name, config_args, log_level, secrets)]
        children.append(Child(label, argv, {**env, **child_vars, **secrets},
                              sink=sink, log_path=logs / f"{label.replace('#', '-').replace('/', '-')}.log" if logs else None, cwd=os.getcwd()))
    return children


def child_labels(cfg: GymConfig, *, with_head: bool = True, held: dict[str, socket.socket] | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """(label, instance, extra env) per child; a replica of an instance with a fixed port gets a free port of its own.

    An instance with `workers: N` has N children per replica, `NAME/w1` ... `NAME/wN` (`NAME#2/w1` ... for replica 2),
    on one port: the port is held here in `held` (bound with SO_REUSEPORT, not listening) for the whole run, so a
    worker restarting finds it and no other program takes it; each worker binds it with SO_REUSEPORT and makes its
    connections to loopback servers from a loopback address of its own (127.1.REPLICA.WORKER: gymctl.server.connector).
    Without `held` only the labels are right (the ports are not reserved).
    """
    out: list[tuple[str, str, dict[str, str]]] = [("head", "head", {})] if with_head else []
    for name, spec in cfg.instances.items():
        if spec.alias_of:
            continue
        workers = workers_of(cfg, name)
        for i in range(1, cfg.deployment_of(name).replicas + 1):
            label = name if i == 1 else f"{name}#{i}"
            env = {}
            if i > 1 and spec.port and (held is not None or workers == 1):
                env = {"GYMCTL_PORT": str(free_port(spec.host or "127.0.0.1", "replica"))}
            if workers == 1:
                out.append((label, name, env))
                continue
            if held is not None:
                port = int(env.get("GYMCTL_PORT") or spec.port or 0)
                sock = held[label] = hold_port(spec.host or "127.0.0.1", port, f"{spec.key_path}.port")
                env = {"GYMCTL_PORT": str(sock.getsockname()[1]), "GYMCTL_WORKERS": str(workers)}
            for w in range(1, workers + 1):
                out.append((f"{label}/w{w}", name, {**env, "GYMCTL_SOURCE_ADDRESS": worker_source_address(i, w)}))
    return out


def worker_source_address(replica: int, worker: int) -> str:
    """The loopback address worker `worker` of replica `replica` connects from (one per process: its own port range per destination)."""
    return f"127.1.{replica % 256}.{worker % 256 or 1}"


def hold_port(host: str, port: int, owner: str) -> socket.socket:
    """Hold host:port (0: any free one) for a worker group: refused if anything holds it now, then bound with SO_REUSEPORT
    and not listening (it takes no connection; the workers' listening sockets do)."""
    if port:
        check_port_free(host, port, owner)
    return bind_socket(host, port, owner, reuse_port=True, listen=False)


def instance_of(label: str) -> str:
    """The instance a child's label serves: `NAME`, `NAME#2`, `NAME/w3` and `NAME#2/w3` all serve NAME."""
    return label.partition("/")[0].partition("#")[0]


def start_children(children: list[Child], cfg: GymConfig, *, fork: bool, log_level: str, held_fds: list[int] | None = None) -> None:
    """Start every child before the event loop exists: by fork when safe (fast, shared pages), else by exec."""
    parent_fds: list[int] = list(held_fds or [])  # the worker groups' held ports stay the runtime's
    for child in children:
        if fork:
            child.fork(_serve_here(cfg, instance_of(child.name), child.env, log_level), close_fds=list(parent_fds))
        else:
            child.spawn()
        parent_fds += child.parent_fds


def run_separated(
    cfg: GymConfig, *, config_args: ConfigArgs, on_ready: ReadyHook,
    log_dir: str | None = None, restart: str = "no", log_level: str = "warning", settings: ServerSettings | None = None,
) -> int:
    """Run the head and every instance as separate processes until SIGINT/SIGTERM; the exit code.

    `config_args` rebuild the config in exec'd children (restarts); `on_ready` shows the ready table.
    """
    from gymctl.runtime.loop import run as run_loop

    started_at = process_started_at()
    policy = check_restart(restart)
    head_here = is_own_address(cfg.head_host)  # else: a worker; its children register with the head on that host
    if head_here:
        check_port_free(cfg.head_host, cfg.head_port, "head_server.port")
    sink = OutputSink(width=max(len(label) for label, _, _ in [("gymctl", "", {}), *child_labels(cfg, with_head=head_here)]))
    held: dict[str, socket.socket] = {}  # worker groups' ports, held until the run ends
    try:
        children = build_children(cfg, config_args, log_dir=log_dir, log_level=log_level, sink=sink, with_head=head_here, held=held)
        settings = settings or ServerSettings.from_env()
        fork = _preload() and settings.separated_start != "exec"
        start_children(children, cfg, fork=fork, log_level=log_level, held_fds=[s.fileno() for s in held.values()])

        async def main() -> int:
            sup = Supervisor(cfg, children, restart=policy, sink=sink, token=settings.auth_token, started_at=started_at, on_ready=on_ready,
                             remote_head=not head_here, head_wait_s=settings.head_wait_s)
            return await sup.run()

        return run_loop(main())
    finally:
        for sock in held.values():
            sock.close()
