"""Child processes of the separated runtime: each in its own process group, output prefixed, logged and tailed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO

TAIL_LINES = 30
_SERVING = re.compile(r"serving at (\S+) \(pid (\d+)\)")
_COLORS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)  # ANSI foreground colors, one per instance


class OutputSink:
    """Writes child lines to the console as `name | line`, colored per name when the stream is a TTY."""

    def __init__(self, stream: IO[str] | None = None, width: int = 10) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.color = self.stream.isatty() and not os.environ.get("NO_COLOR")
        self._colors: dict[str, int] = {}

    def _label(self, name: str) -> str:
        label = f"{name:<{self.width}}"
        if not self.color:
            return label
        code = self._colors.setdefault(name, _COLORS[len(self._colors) % len(_COLORS)])
        return f"\x1b[{code}m{label}\x1b[0m"

    def line(self, name: str, text: str) -> None:
        self.stream.write(f"{self._label(name)} | {text}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line from the runtime itself."""
        self.line("gymctl", text)


def describe_exit(code: int | None) -> str:
    """`code 1`, or `signal SIGKILL` for a child killed by a signal."""
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"code {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"code {code} (killed by signal {-code})"
    return f"code {code}"


class Child:
    """One `gymctl serve NAME` process: started in a new session, its output pumped line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], *, sink: OutputSink, log_path: Path | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.sink = sink
        self.log_path = log_path
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None  # from the child's "serving at URL" line
        self.started_at = 0.0
        self.restarts = 0
        self.returncode: int | None = None
        self._pump: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def port(self) -> int | None:
        if not self.url:
            return None
        tail = self.url.rsplit(":", 1)[-1].rstrip("/")
        return int(tail) if tail.isdigit() else None

    async def start(self, extra_env: dict[str, str] | None = None) -> None:
        if self.log_path is not None and self._log is None:
            self._log = open(self.log_path, "ab")
        if self._log is not None and self.restarts:
            self._log.write(f"--- gymctl: restart {self.restarts} at {time.strftime('%H:%M:%S')} ---\n".encode())
        self.url = None
        self.returncode = None
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**self.env, **(extra_env or {})}, cwd=self.cwd, start_new_session=True, limit=1 << 20,
        )
        self._pump = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over the limit: take what is buffered
                raw = await proc.stdout.read(1 << 20)
            if not raw:
                return
            if self._log is not None:
                self._log.write(raw)
                self._log.flush()
            text = raw.decode(errors="replace").rstrip("\r\n")
            self.tail.append(text)
            if self.url is None and (m := _SERVING.search(text)):
                self.url = m.group(1)
            self.sink.line(self.name, text)

    async def wait(self) -> int:
        """Until the child exits; its orphans (same process group) are killed, its output drained."""
        assert self.proc is not None
        code = await self.proc.wait()
        self.returncode = code
        self.signal_group(signal.SIGKILL)  # grandchildren left behind hold ports and pipes
        if self._pump is not None:
            try:
                await asyncio.wait_for(self._pump, 2)
            except asyncio.TimeoutError:
                self._pump.cancel()
        return code

    def signal_group(self, sig: int) -> bool:
        """Send `sig` to the child's whole process group (its pid is the group id); False if none is left."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
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
