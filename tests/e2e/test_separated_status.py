"""`gymctl status --watch` / `--expect` against a separated deployment, as a user at a terminal sees them."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.e2e.test_separated_support import cli, wait_until

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A command on a pseudo-terminal (rich's live display only animates on a TTY); its screen text so far."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "200", "LINES": "50"})
        os.close(slave)
        self.text = ""

    def read(self) -> str:
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.text += ANSI.sub("", chunk.decode(errors="replace"))
        return self.text

    def since(self, mark: int) -> str:
        return self.read()[mark:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_watch_refreshes_shows_a_head_outage_and_recovers(separated):
    run = separated("--restart", "on-failure")
    term = Terminal([sys.executable, "-m", "gymctl", "status", "--watch", "--interval", "0.3", "--head", run.head_url])
    try:
        wait_until(lambda: "4 servers found (4 healthy, 0 unhealthy)" in term.read(), 20, "live table")
        first = re.findall(r"updated (\d\d:\d\d:\d\d)", term.read())
        wait_until(lambda: len(set(re.findall(r"updated (\d\d:\d\d:\d\d)", term.read()))) > len(set(first)), 5, "a refresh")
        mark = len(term.read())
        os.kill(run.pid_of("head"), signal.SIGKILL)
        wait_until(lambda: "HeadUnreachableError" in term.since(mark), 10, "outage shown")
        mark = len(term.read())
        wait_until(lambda: "4 servers found (4 healthy, 0 unhealthy)" in term.since(mark), 20, "recovered")
        assert term.proc.poll() is None  # an outage never ends the watch
        term.proc.send_signal(signal.SIGINT)
        assert term.proc.wait(10) == 0  # the last view was healthy
        assert "Traceback" not in term.read()
    finally:
        term.close()


def test_expect_and_watch_bad_values_are_usage_errors():
    res = cli("status", "--expect", "0", "--head", "http://127.0.0.1:9")
    assert res.returncode == 2 and "UsageError: --expect 0: expected a number of instances, 1 or more" in res.stderr
    res = cli("status", "--watch", "--json", "--head", "http://127.0.0.1:9")
    assert res.returncode == 2 and "UsageError: --watch shows a live table; it cannot be combined with --json" in res.stderr
    res = cli("status", "--watch", "--interval", "0", "--head", "http://127.0.0.1:9")
    assert res.returncode == 2 and "UsageError: --interval 0.0: refresh at most every 0.1 s" in res.stderr


def test_expect_in_json(separated):
    run = separated()
    res = cli("status", "--json", "--expect", "4", "--head", run.head_url)
    assert res.returncode == 0 and '"healthy": 4' in res.stdout and '"expect": 4' in res.stdout
    res = cli("status", "--json", "--expect", "9", "--head", run.head_url)
    assert res.returncode == 1 and '"ok": false' in res.stdout


def test_watch_piped_prints_each_refresh(separated):
    run = separated()
    proc = subprocess.Popen([sys.executable, "-m", "gymctl", "status", "--watch", "--interval", "0.3", "--head", run.head_url],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        seen = ""
        while seen.count("4 servers found (4 healthy") < 2 and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = seen + out
    assert proc.returncode == 0, out
    assert out.count("4 servers found (4 healthy, 0 unhealthy)") >= 2 and "Traceback" not in out
