"""One collection per output file: an exclusive lock on the output, held for the whole run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gymctl.errors import UsageError


class OutputLock:
    """An advisory `flock` on the output file itself (no lock file is left behind; the kernel drops it when the
    process ends, even on kill -9). A second collection on the same output refuses to start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise UsageError(f"cannot write the output {self.path} ({e.strerror}); choose another --output") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"another collection is writing {self.path} (it holds the file's lock); wait for it to finish, "
                "or write to another --output (a rerun after it ends resumes where it stopped)"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
