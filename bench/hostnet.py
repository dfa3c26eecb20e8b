"""Test and bench hosts as Linux network namespaces on one private bridge, each with its own address (created and removed here).

The bridge lives in a namespace of its own, so the machine's firewall (Docker's FORWARD policy) never sees
the traffic between hosts; the test process gets one leg on the bridge (`OBSERVER`) to read what the hosts
serve. Every name starts with `PREFIX`; leftovers of a crashed run are removed before a new network is made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "gt10"
SUBNET = "10.213.7"  # a private /24 used by nothing else here
OBSERVER = f"{SUBNET}.254"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@dataclass
class Proc:
    """A process started inside a host's namespace; its output goes to `log`."""

    argv: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait()
        self.kill(signal.SIGKILL)  # anything it left in its group
        return self.popen.returncode

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited with {self.popen.returncode} before printing {text!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed within {timeout} s:\n{self.output()}")
            time.sleep(0.1)


@dataclass
class Host:
    name: str  # the namespace
    address: str
    veth: str  # the host's leg on the bridge, in the switch namespace (down = link cut)
    net: HostNet
    procs: list[Proc] = field(default_factory=list)

    def start(self, argv: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
        with open(log, "wb") as out:
            popen = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        proc = Proc(argv, popen, log)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)

    def cut(self) -> None:
        """Take the host off the network (its cable pulled: nothing is reset, packets just stop)."""
        sh("ip", "-n", self.net.switch, "link", "set", self.veth, "down")

    def reconnect(self) -> None:
        sh("ip", "-n", self.net.switch, "link", "set", self.veth, "up")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


class HostNet:
    """`hosts` namespaces on one bridge: host i gets SUBNET.(i+1); the test process gets OBSERVER."""

    def __init__(self, names: list[str]) -> None:
        self.switch = f"{PREFIX}-sw"
        self.names = names
        self.hosts: dict[str, Host] = {}

    def __enter__(self) -> HostNet:
        remove_leftovers()
        try:
            sh("ip", "netns", "add", self.switch)
            sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, short in enumerate(self.names):
                ns, veth = f"{PREFIX}-{short}", f"p-{short}"
                address = f"{SUBNET}.{i + 1}"
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", veth, "netns", self.switch)
                sh("ip", "-n", self.switch, "link", "set", veth, "master", "br0", "up")
                sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                self.hosts[short] = Host(ns, address, veth, self)
            # The observer: a leg from the machine's own namespace, so the test reads the hosts' servers directly.
            sh("ip", "link", "add", f"{PREFIX}-obs", "type", "veth", "peer", "name", "p-obs", "netns", self.switch)
            sh("ip", "-n", self.switch, "link", "set", "p-obs", "master", "br0", "up")
            sh("ip", "addr", "add", f"{OBSERVER}/24", "dev", f"{PREFIX}-obs")
            sh("ip", "link", "set", f"{PREFIX}-obs", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __getitem__(self, short: str) -> Host:
        return self.hosts[short]

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts.values():
            host.stop_all()
        remove_leftovers()


def remove_leftovers() -> None:
    """Every namespace and link this module makes (by prefix); processes still inside a namespace are killed first."""
    listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
    for line in listed:
        ns = line.split(" ")[0]
        if not ns.startswith(f"{PREFIX}-"):
            continue
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", f"{PREFIX}-obs", check=False)
