"""Child processes of the separated runtime: each in its own process group, output prefixed, logged and tailed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from gymctl.runtime.processes import die_with_parent, set_process_name, watch_exit

TAIL_LINES = 30
READY_FD_ENV = "GYMCTL_READY_FD"  # ServerSettings.ready_fd: the pipe a child reports {"url", "pid"} on
_COLORS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)  # ANSI foreground colors, one per instance


class OutputSink:
    """Writes child lines to the console as `name | line`, colored per name when the stream is a TTY."""

    def __init__(self, stream: IO[str] | None = None, width: int = 10) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.color = self.stream.isatty() and not os.environ.get("NO_COLOR")
        self._colors: dict[str, int] = {}
        self.closed = False

    def _label(self, name: str) -> str:
        label = f"{name:<{self.width}}"
        if not self.color:
            return label
        code = self._colors.setdefault(name, _COLORS[len(self._colors) % len(_COLORS)])
        return f"\x1b[{code}m{label}\x1b[0m"

    def line(self, name: str, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(f"{self._label(name)} | {text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # console gone (closed pipe): keep draining children, log files still get it
            self.closed = True

    def note(self, text: str) -> None:
        """A line from the runtime itself."""
        self.line("gymctl", text)


class Child:
    """One `gymctl serve NAME` process in its own session (its pid is its process group id).

    The first start forks this process (modules already imported, pages shared copy-on-write) and runs
    the serve function in the fork; a restart, with an event loop running, spawns `argv` instead.
    Either way the child gets the write end of a ready pipe (its number in GYMCTL_READY_FD, or the
    argument of the forked function) and writes one JSON line {"url": ..., "pid": ...} once it serves.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], *, sink: OutputSink, log_path: Path | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.sink = sink
        self.log_path = log_path
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pid: int | None = None
        self.url: str | None = None  # from the child's ready line
        self.started_at = 0.0
        self.restarts = 0
        self.returncode: int | None = None
        self._read_fd: int | None = None
        self._ready_fd: int | None = None
        self._pump: asyncio.Task[None] | None = None
        self._ready: asyncio.Task[None] | None = None
        self._exited: asyncio.Future[int] | None = None
        self._log: IO[bytes] | None = None

    @property
    def output_fd(self) -> int | None:
        """Read end of the child's output pipe until `attach()` takes it over."""
        return self._read_fd

    @property
    def parent_fds(self) -> list[int]:
        """The pipe ends this process holds for the child until `attach()`: later forks must close them."""
        return [fd for fd in (self._read_fd, self._ready_fd) if fd is not None]

    @property
    def running(self) -> bool:
        return self.pid is not None and self.returncode is None

    @property
    def port(self) -> int | None:
        if not self.url:
            return None
        tail = self.url.rsplit(":", 1)[-1].rstrip("/")
        return int(tail) if tail.isdigit() else None

    def _reset(self) -> None:
        self.url = None
        self.returncode = None
        self.started_at = time.monotonic()

    def fork(self, run: Callable[[int], int], close_fds: list[int]) -> None:
        """Start by fork (no event loop may run in this process yet); `run(ready_fd)` in the child returns its exit code."""
        self._reset()
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.setsid()
                die_with_parent(parent)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                for fd in (null, r, w, ready_r, *close_fds):
                    os.close(fd)
                for stream in (sys.stdout, sys.stderr):
                    stream.reconfigure(line_buffering=True)  # type: ignore[attr-defined,union-attr,unused-ignore]
                set_process_name(self.name)
                code = run(ready_w)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 -- the forked child prints whatever stopped it, then leaves through os._exit
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(w)
        os.close(ready_w)
        self.pid, self._read_fd, self._ready_fd = pid, r, ready_r

    def spawn(self, extra_env: dict[str, str] | None = None) -> None:
        """Start by exec of `argv` in a new session (safe while an event loop runs)."""
        self._reset()
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        os.set_inheritable(ready_w, True)  # only for this spawn: closed here right after
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            self.pid = os.posix_spawn(
                self.argv[0], self.argv, {**self.env, **(extra_env or {}), READY_FD_ENV: str(ready_w)}, setsid=True,
                file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)],
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(w)
            os.close(ready_w)
            os.close(null)
        self._read_fd, self._ready_fd = r, ready_r

    async def attach(self) -> None:
        """Pump the child's output and watch for its exit on this event loop."""
        assert self.pid is not None and self._read_fd is not None
        if self.log_path is not None and self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 -- kept open across restarts (closed in close()); opening is one syscall
        if self._log is not None and self.restarts:
            self._log.write(f"--- gymctl: restart {self.restarts} at {time.strftime('%H:%M:%S')} ---\n".encode())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._read_fd, "rb", buffering=0))
        self._read_fd = None
        self._pump = asyncio.create_task(self._read(reader))
        if self._ready_fd is not None:
            ready = asyncio.StreamReader(limit=1 << 16)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(ready), os.fdopen(self._ready_fd, "rb", buffering=0))
            self._ready_fd = None
            self._ready = asyncio.create_task(self._read_ready(ready))
        self._exited = loop.create_future()
        watch_exit(loop, self.pid, self._exited)

    async def start(self, extra_env: dict[str, str] | None = None) -> None:
        """Restart: spawn and attach."""
        self.spawn(extra_env)
        await self.attach()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line over the limit: take what is buffered
                raw = await reader.read(1 << 20)
            if not raw:
                return
            if self._log is not None:
                self._log.write(raw)
                self._log.flush()
            text = raw.decode(errors="replace").rstrip("\r\n")
            self.tail.append(text)
            self.sink.line(self.name, text)

    async def _read_ready(self, reader: asyncio.StreamReader) -> None:
        """The child's one ready line {"url": ..., "pid": ...}; anything else on the pipe is ignored."""
        raw = await reader.readline()
        try:
            report = json.loads(raw)
        except ValueError:
            return
        if isinstance(report, dict) and isinstance(report.get("url"), str):
            self.url = report["url"]

    async def wait(self) -> int:
        """Until the child exits; its orphans (same process group) are killed, its output drained."""
        assert self._exited is not None
        code = await asyncio.shield(self._exited)
        self.returncode = code
        self.signal_group(signal.SIGKILL)  # grandchildren left behind hold ports and pipes
        if self._pump is not None:
            try:
                await asyncio.wait_for(self._pump, 2)
            except TimeoutError:
                self._pump.cancel()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()  # exited before it reported: no URL
        return code

    def signal_group(self, sig: int) -> bool:
        """Send `sig` to the child's whole process group (its pid is the group id); False if none is left."""
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def last_error_line(self) -> str | None:
        """The last `SomethingError: message` line the child printed (how gymctl reports failures)."""
        for text in reversed(self.tail):
            if re.match(r"^[A-Z]\w*(Error|Exception): ", text):
                return text
        return None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        for fd in self.parent_fds:
            os.close(fd)
        self._read_fd = self._ready_fd = None
