"""Process plumbing for the harness: free ports, readiness polling, PSS of a process tree, stopping a tree."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get_json(url: str, timeout: float = 5.0) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float) -> float:
    """Poll `url` until it answers 200; returns when. Raises if `proc` exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before {url} answered 200")
        try:
            code, _ = http_get_json(url, timeout=2)
            if code == 200:
                return time.monotonic()
            last = f"HTTP {code}"
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pss_mib(procs: list[psutil.Process]) -> float:
    """Sum of proportional set sizes (shared pages split among sharers), in MiB."""
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            total += p.memory_full_info().pss
    return total / (1024 * 1024)


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds used so far by `procs` (children they reaped included)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total


class PssSampler:
    """Samples PSS of whatever `procs()` returns every `interval` s in a thread; `.peak` is the largest sum."""

    def __init__(self, procs, interval: float = 1.0) -> None:
        self._procs, self._interval = procs, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak = 0.0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, pss_mib(self._procs()))

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def stop_tree(proc: subprocess.Popen, known: list[psutil.Process], sig: int = signal.SIGINT,
              timeout: float = 30.0) -> tuple[float, int]:
    """Signal `proc` and wait for it; returns (seconds until it and every known descendant are gone, leftovers).

    Leftovers are processes of the tree still alive `timeout` s after the signal; they are killed
    (process group first, then one by one) so the harness never leaves anything running.
    """
    started = time.monotonic()
    everything = {p.pid: p for p in [*known, *tree(proc.pid)]}
    if proc.poll() is None:
        proc.send_signal(sig)
    deadline = started + timeout
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not alive(list(everything.values())):
            return time.monotonic() - started, 0
        time.sleep(0.05)
    leftovers = alive(list(everything.values()))
    kill_tree(proc, leftovers)
    return time.monotonic() - started, len(leftovers)


def kill_tree(proc: subprocess.Popen, extra: list[psutil.Process] = ()) -> None:
    """SIGKILL `proc`'s process group, its descendants and `extra`; reap `proc`."""
    victims = [*tree(proc.pid), *extra]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def reset_sigint() -> None:
    """preexec_fn: a child started from a non-interactive shell inherits SIGINT ignored; restore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
