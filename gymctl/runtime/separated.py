"""The separated runtime: the head and one `gymctl serve INSTANCE` process per instance, supervised until stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from gymctl.config.model import GymConfig
from gymctl.errors import NotReadyError, StartupError, UsageError
from gymctl.runtime.children import Child, OutputSink, describe_exit
from gymctl.server.auth import auth_headers, auth_token
from gymctl.server.serving import bind_socket

RESTART_POLICIES = ("no", "on-failure")
RestartPolicy = Literal["no", "on-failure"]
READY_TIMEOUT_S = 60.0
GRACE_S = 15.0  # SIGTERM -> SIGKILL (a server drains in-flight requests for up to 10 s)
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # restart delays; reset once a child stayed up STABLE_S
STABLE_S = 30.0
# A separated child gets its own port: these would pin every child to one address.
_CHILD_ENV_DROP = ("GYMCTL_PORT", "GYMCTL_HOST_URL", "GYMCTL_CONFIG_FILE")

ConfigArgs = tuple[list[str] | None, list[str] | None, list[str] | None]


@dataclass
class ProcessRow:
    """One line of the ready table."""

    instance: str
    server_type: str
    impl: str
    url: str
    pid: int | None


def check_restart(restart: str) -> RestartPolicy:
    if restart not in RESTART_POLICIES:
        raise UsageError(f"--restart {restart!r} is not known; choose one of: {', '.join(RESTART_POLICIES)}")
    return restart  # type: ignore[return-value]


def serve_args(name: str, config_args: ConfigArgs, log_level: str) -> list[str]:
    """`serve NAME` with the run's own --config / --set / +overrides, so the child loads the same config."""
    config, sets, overrides = config_args
    args = ["serve", name, *(overrides or [])]
    for path in config or []:
        args += ["--config", path]
    for item in sets or []:
        args += ["--set", item]
    return args + ["--log-level", log_level]


def child_env(head_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
    env["GYMCTL_HEAD_URL"] = head_url  # register with our head, not one named in the calling shell
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _serve_here(args: list[str], env: dict[str, str]) -> Callable[[], int]:
    """What a forked child runs: the `gymctl serve` command itself, in the child's environment."""

    def run() -> int:
        os.environ.clear()
        os.environ.update(env)
        from gymctl.cli.errors import run_app
        from gymctl.cli.main import app

        run_app(app, args=args, prog_name="gymctl")
        return 0

    return run


def _preload() -> bool:
    """Import what every `gymctl serve` needs once, here, so forked children start warm; False if forking is unsafe."""
    import threading

    import importlib

    for module in ("gymctl.cli.main", "gymctl.cli.serve_cmd", "gymctl.runtime.inprocess", "gymctl.server.settings", "uvloop"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    return threading.active_count() == 1 and hasattr(os, "fork")


def check_port_free(host: str, port: int, owner: str) -> None:
    """Raise PortInUseError now rather than let a foreign server on that port take our registrations."""
    bind_socket(host, port, owner).close()


def _port_free(port: int) -> bool:
    try:
        check_port_free("127.0.0.1", port, "restart")
        return True
    except Exception:
        return False


class Supervisor:
    """Starts the children, waits for the head's readiness, restarts crashed children, stops them all."""

    def __init__(self, cfg: GymConfig, children: list[Child], *, restart: RestartPolicy, sink: OutputSink, token: str | None) -> None:
        self.cfg = cfg
        self.head, *self.instances = children
        self.children = children
        self.restart = restart
        self.sink = sink
        self.token = token
        self.ready = False
        self.stop_event = asyncio.Event()
        self.forced = False
        self.failure: StartupError | None = None
        self.exit_code = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- signals -----------------------------------------------------------------------------
    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if not self.stop_event.is_set():
            self.sink.note(f"{signal.Signals(sig).name}: stopping every process (again to force) ...")
            self.stop_event.set()
            return
        if not self.forced:
            self.forced = True
            self.sink.note(f"{signal.Signals(sig).name} again: forcing the stop (SIGKILL to every process group)")
            for child in self.children:
                child.signal_group(signal.SIGKILL)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        for child in self.children:
            await child.attach()
        self._watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
        try:
            await self._wait_ready()
            await self.stop_event.wait()
        finally:
            await self.shutdown()
        if self.failure is not None:
            raise self.failure
        return 130 if self.forced else self.exit_code

    async def _wait_ready(self) -> None:
        t0 = time.monotonic()
        url = self.cfg.head_url + "/health"
        last: Any = None
        async with aiohttp.ClientSession(headers=auth_headers(self.token)) as session:
            while not self.stop_event.is_set():
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        last = await r.json(content_type=None)
                        if r.status == 200:
                            self.ready = True
                            rows = [ProcessRow("head", "head", "registry", self.cfg.head_url, self.head.pid), *await self._rows(session)]
                            _print_ready(self.cfg.head_url, rows, time.monotonic() - t0)
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                    pass
                if time.monotonic() - t0 > READY_TIMEOUT_S:
                    waiting = (last or {}).get("waiting_for") if isinstance(last, dict) else None
                    tails = "\n".join(f"{c.name}: {line}" for c in self.children if c.name in (waiting or []) for line in list(c.tail)[-5:])
                    self.stop_event.set()
                    raise NotReadyError(
                        f"head {self.cfg.head_url} not ready after {READY_TIMEOUT_S:.0f} s"
                        + (f"; still waiting for {', '.join(waiting)}" if waiting else ""),
                        service="head", status=str(last), log_tail=tails,
                    )
                await asyncio.sleep(0.05)

    async def _rows(self, session: aiohttp.ClientSession) -> list[ProcessRow]:
        async with session.get(self.cfg.head_url + "/server_instances", timeout=aiohttp.ClientTimeout(total=5)) as r:
            items = await r.json(content_type=None)
        rows = []
        for item in items:
            impl = item.get("name", "") + (f" (alias of {item['alias_of']})" if item.get("alias_of") else "")
            rows.append(ProcessRow(item["process_name"], item.get("server_type", ""), impl, item.get("host_url") or item["url"], item.get("pid")))
        return rows

    async def _watch(self, child: Child) -> None:
        """Report each exit of `child`; restart it on failure when asked; fail the start-up if it dies first."""
        failures = 0
        while True:
            code = await child.wait()
            if self._stopping:
                return
            ran_s = time.monotonic() - child.started_at
            if not self.ready:
                where = f"; full log: {child.log_path}" if child.log_path else ""
                reason = child.last_error_line()
                self.failure = StartupError(
                    f"{child.name} exited with {describe_exit(code)} while starting"
                    + (f": {reason}" if reason else "") + f"{where}; stopped the other processes",
                    instance=child.name, exit_code=code, log_tail="\n".join(child.tail),
                )
                self.exit_code = 1
                self.stop_event.set()
                return
            self.sink.note(f"{child.name} (pid {child.pid}) exited with {describe_exit(code)}")
            if self.restart != "on-failure" or code == 0:
                if not any(c.running for c in self.children):
                    self.sink.note("no process left running")
                    self.exit_code = 1
                    self.stop_event.set()
                return
            failures = 0 if ran_s > STABLE_S else failures + 1
            delay = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1] if failures else BACKOFF_S[0]
            child.restarts += 1
            self.sink.note(f"restarting {child.name} in {delay:.1f} s (restart {child.restarts})")
            try:
                await asyncio.wait_for(self.stop_event.wait(), delay)
                return  # stopping meanwhile
            except asyncio.TimeoutError:
                pass
            # Same port as before when it is still free: peers' cached routes stay right.
            port = child.port if child is not self.head else None
            await child.start({"GYMCTL_PORT": str(port)} if port and _port_free(port) else None)

    async def shutdown(self) -> None:
        """SIGTERM each process group (instances first, so they deregister), SIGKILL after the grace period."""
        self._stopping = True
        for group in (self.instances, [self.head]):
            live = [c for c in group if c.running]
            for c in live:
                c.signal_group(signal.SIGTERM)
            await self._wait_exit(live, GRACE_S)
        for child in self.children:  # anything left, grandchildren included
            child.signal_group(signal.SIGKILL)
        await asyncio.gather(*self._watchers, return_exceptions=True)
        codes = ", ".join(f"{c.name} {describe_exit(c.returncode)}" for c in self.children if c.pid is not None)
        self.sink.note(f"stopped; exit codes: {codes}")
        for child in self.children:
            child.close()

    async def _wait_exit(self, children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(c.running for c in children) and time.monotonic() < deadline:
            if self.forced:
                break
            await asyncio.sleep(0.05)
        for c in children:
            if c.running:
                self.sink.note(f"{c.name} (pid {c.pid}) still running after {timeout:.0f} s: SIGKILL")
                c.signal_group(signal.SIGKILL)
        while any(c.running for c in children):
            await asyncio.sleep(0.02)


def _print_ready(head_url: str, rows: list[ProcessRow], elapsed_s: float) -> None:
    from gymctl.cli.console import print_processes  # the one console table; the CLI owns rich

    print_processes(head_url, rows, elapsed_s)


def build_children(cfg: GymConfig, config_args: ConfigArgs, *, log_dir: str | None, log_level: str, sink: OutputSink) -> list[Child]:
    """The head first, then one child per instance that is not an alias (an agent serves its aliases)."""
    names = ["head", *(n for n, s in cfg.instances.items() if not s.alias_of)]
    env = child_env(cfg.head_url)
    logs = Path(log_dir) if log_dir else None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    return [
        Child(n, [sys.executable, "-m", "gymctl", *serve_args(n, config_args, log_level)], env, sink=sink,
              log_path=logs / f"{n}.log" if logs else None, cwd=os.getcwd())
        for n in names
    ]


def start_children(children: list[Child], *, fork: bool) -> None:
    """Start every child before the event loop exists: by fork when safe (fast, shared pages), else by exec."""
    read_fds: list[int] = []
    for child in children:
        if fork:
            child.fork(_serve_here(child.argv[3:], child.env), close_fds=list(read_fds))
        else:
            child.spawn()
        assert child._read_fd is not None
        read_fds.append(child._read_fd)


def run_separated(
    cfg: GymConfig, *, config_args: ConfigArgs, log_dir: str | None = None, restart: str = "no", log_level: str = "warning",
) -> int:
    """Run the head and every instance as separate processes until SIGINT/SIGTERM; the exit code."""
    from gymctl.runtime.loop import run as run_loop

    policy = check_restart(restart)
    check_port_free(cfg.head_host, cfg.head_port, "head_server.port")
    sink = OutputSink(width=max(len(n) for n in ["gymctl", "head", *cfg.instances]))
    children = build_children(cfg, config_args, log_dir=log_dir, log_level=log_level, sink=sink)
    fork = _preload() and os.environ.get("GYMCTL_SEPARATED_START") != "exec"
    start_children(children, fork=fork)

    async def main() -> int:
        sup = Supervisor(cfg, children, restart=policy, sink=sink, token=auth_token())
        sup.install_signals()
        return await sup.run()

    return run_loop(main())
