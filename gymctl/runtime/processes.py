"""OS process plumbing of the separated runtime: exit codes in words, reaping by pidfd, dying with the parent, process names."""

from __future__ import annotations

import asyncio
import os
import signal


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


def exit_code_of(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def watch_exit(loop: asyncio.AbstractEventLoop, pid: int, done: asyncio.Future[int]) -> None:
    """Resolve `done` with the exit code of child `pid` (a pidfd when the kernel has them, else polling)."""

    def reap() -> bool:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == 0:
            return False
        if not done.done():
            done.set_result(exit_code_of(status))
        return True

    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        async def poll() -> None:
            while not reap():  # noqa: ASYNC110 -- without a pidfd, polling waitpid is the only way to see the exit
                await asyncio.sleep(0.05)

        loop.create_task(poll())
        return

    def on_ready() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        reap()

    loop.add_reader(pidfd, on_ready)


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when the runtime dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the runtime died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def set_process_name(name: str) -> None:
    """What `ps -o comm` and `top` show for a forked child (Linux keeps 15 bytes: head~tail when longer)."""
    short = name if len(name) <= 15 else f"{name[:7]}~{name[-7:]}"
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(short)
    except OSError:
        pass
